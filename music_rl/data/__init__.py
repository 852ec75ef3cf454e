"""Catalog and log I/O: track catalogs (synthetic or CSV), feedback logs read, written and imported, a run's
feedback store."""
