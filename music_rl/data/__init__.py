"""Catalog and log I/O: track catalogs (synthetic, or CSV: ``catalog_schema`` reads the header, ``catalog_csv``
the rows), feedback logs (``feedback``: the format and its one reader and writer; ``mssd``: the MSSD's logs
translated; ``log_import``: a user's log joined to the catalog; ``feedback_store``: a run's append-only log)."""
