"""Parquet catalogs (``data=parquet data.path=<file>``): the columns of a Spotify-features CSV in one Parquet file,
read batch by batch (:func:`load_parquet`).

The schema detection and ``data.columns`` mapping are :mod:`music_rl.data.catalog_schema`'s, the validation,
repairs and problem lines :mod:`music_rl.data.catalog_csv`'s (one implementation of each rule for both files);
problem lines name rows (``row 7``: the seventh track of the file) where a CSV's name lines. Only the columns the
catalog keeps are read, :data:`BATCH_ROWS` rows at a time, so the memory read beyond the kept arrays (the raw
features, the metadata as text) is one batch's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from music_rl.core.errors import CatalogError, ConfigError, not_a
from music_rl.data.catalog import FEATURES, Catalog, DataConfig
from music_rl.data.catalog_csv import (
    PARQUET_MAGIC,
    ROWS,
    Faults,
    check_features,
    finish,
    metadata,
    parse_text_column,
)
from music_rl.data.catalog_schema import repeated_columns, resolve_columns

log = logging.getLogger(__name__)

BATCH_ROWS = 1 << 17  # rows read at a time: about 12 MB of features, whatever the file's row groups


def _first_line(err: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _is_text(kind: pa.DataType) -> bool:
    """A string type, or a dictionary of strings."""
    if pa.types.is_dictionary(kind):
        return _is_text(kind.value_type)
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind))


def _is_number(kind: pa.DataType) -> bool:
    """An integer, floating point, decimal or boolean type (or a dictionary of one), or a column of nulls only."""
    if pa.types.is_dictionary(kind):
        return _is_number(kind.value_type)
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
                or pa.types.is_boolean(kind) or pa.types.is_null(kind))


def _is_list_of_text(kind: pa.DataType) -> bool:
    """A list of strings, e.g. a track's artists (read as ``A, B``, as the CSV reader reads ``['A', 'B']``)."""
    return bool((pa.types.is_list(kind) or pa.types.is_large_list(kind)) and _is_text(kind.value_type))


def _has_text_form(kind: pa.DataType) -> bool:
    """Whether a column of this type is kept as text: anything Arrow casts to a string, and lists of strings."""
    if _is_list_of_text(kind):
        return True
    try:
        pa.array([], type=kind).cast(pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return False
    return True


def _as_text(column: pa.Array) -> pd.Series:
    """A column as pandas text (the CSV reader's ``str``); a null is NaN, as an empty CSV cell is ``""``."""
    if _is_list_of_text(column.type):
        import pyarrow.compute as pc

        column = pc.binary_join(column, ", ")
    if not _is_text(column.type) or pa.types.is_dictionary(column.type):
        column = column.cast(pa.string())
    text: pd.Series = column.to_pandas()
    return text


def _features(column: pa.Array, feature: str) -> tuple[np.ndarray, np.ndarray]:
    """A feature column's values (NaN where not a number) and which are empty (null, NaN; in a text column also
    ``""``, ``NA``...): typed numbers as they are, text parsed as the CSV reader parses a cell."""
    if _is_number(column.type):
        values = np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
        return values, np.isnan(values)
    return parse_text_column(column.cast(pa.string()).to_pandas(), feature)


def _shown(cells: list[pa.Array]) -> Callable[[int, int], str]:
    """The text a problem line shows for row i of feature column j: the value as Python writes it (``0.0``,
    ``12``, a string as it is), as a CSV written by pandas has it."""
    return lambda i, j: str(cells[j][i].as_py())


def _open(path: Path) -> pq.ParquetFile:
    """The file opened as Parquet, or a :class:`CatalogError` saying why it is not one."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if not head:
        raise CatalogError(f"{path}: empty file (0 bytes), not a Parquet file")
    if not head.startswith(PARQUET_MAGIC):
        hint = "; a CSV file? read it with data=csv" if b"\0" not in head else ""
        raise CatalogError(f"{path}: not a Parquet file (it does not begin with the bytes PAR1){hint}")
    try:  # pre_buffer (Arrow's default) would keep every row group read in a cache: memory would follow the file
        return pq.ParquetFile(path, pre_buffer=False)
    except (pa.ArrowException, OSError) as err:
        raise CatalogError(f"{path}: a damaged or truncated Parquet file ({_first_line(err)})") from None


def _batches(file: pq.ParquetFile, columns: list[str], path: Path) -> Iterator[pa.RecordBatch]:
    """The file's rows, :data:`BATCH_ROWS` at a time, only ``columns``; a page Arrow cannot read is a
    :class:`CatalogError`."""
    batches = file.iter_batches(batch_size=BATCH_ROWS, columns=columns, use_threads=True)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (pa.ArrowException, OSError) as err:
            raise CatalogError(f"{path}: a damaged Parquet file ({_first_line(err)})") from None
        yield batch


def _columns_to_read(path: Path, fields: dict[str, pa.DataType], mapping: dict[str, str]) -> list[str]:
    """The columns kept, in the file's order: the features (numbers or text, else :class:`CatalogError`), the
    metadata mapped, and the other columns that have a text form (the others are left out, logged)."""
    features = {mapping[f]: f for f in FEATURES}
    keep, left_out = [], []
    for name, kind in fields.items():
        if name in features:
            if not (_is_number(kind) or _is_text(kind)):
                raise CatalogError(f"{path}: column {name!r}"
                                   f"{'' if name == features[name] else f' ({features[name]})'} holds {kind} "
                                   "values, not numbers or text")
            keep.append(name)
        elif _has_text_form(kind):
            keep.append(name)
        elif name in mapping.values():
            ours = next(o for o, theirs in mapping.items() if theirs == name)
            raise CatalogError(f"{path}: column {name!r} ({ours}) holds {kind} values, which have no text form")
        else:
            left_out.append(f"{name} ({kind})")
    if left_out:
        log.info("%s: columns without a text form left out of the metadata: %s", path, ", ".join(left_out))
    return keep


def load_parquet(cfg: DataConfig, min_tracks: int) -> Catalog:
    """Read, repair and validate a Parquet catalog (see :func:`music_rl.data.catalog.load_catalog`): the CSV
    reader's schemas, ``data.columns``, repairs and problem lines (rows numbered from 1), read in batches."""
    if not cfg.path:
        raise ConfigError("data.path=None: a Parquet path is required when data.source=parquet")
    path = Path(cfg.path)
    if not path.is_file():
        folder = "; a folder of Parquet files is not read: give one file" if path.is_dir() else ""
        raise CatalogError(f"{path}: {not_a(path, 'regular file')} (data.path={cfg.path!r}){folder}")
    with _open(path) as file:
        names = list(file.schema_arrow.names)
        columns = list(dict.fromkeys(names))  # a name written twice: once
        schema, mapping, missing = resolve_columns(columns, dict(cfg.columns))
        if missing:
            raise CatalogError(f"{path}: schema {schema}: missing required {'; '.join(missing)}; the file has "
                               f"{len(columns)} column{'' if len(columns) == 1 else 's'}: {', '.join(columns[:30])}")
        problems = repeated_columns(path, names, mapping)
        n_read = int(file.metadata.num_rows)
        if n_read == 0:
            raise CatalogError(f"{path}: no track rows (a Parquet file of 0 rows; columns: {', '.join(columns[:30])})")
        fields = {name: file.schema_arrow.field(names.index(name)).type for name in columns}
        read = _columns_to_read(path, fields, mapping)
        log.info("%s: schema %s, Parquet, %d rows in %d row groups; columns used: %s", path, schema, n_read,
                 file.metadata.num_row_groups,
                 ", ".join(f"{ours}={theirs}" if ours != theirs else ours for ours, theirs in mapping.items()))
        text_columns = [name for name in read if name not in {mapping[f] for f in FEATURES}]
        raw = np.empty((n_read, len(FEATURES)))  # filled batch by batch with the kept rows
        numbers = np.empty(n_read, dtype=np.int64)
        faults, parts, kept, offset = Faults(path, ROWS), [], 0, 0
        for batch in _batches(file, read, path):
            n = batch.num_rows
            if offset + n > n_read:
                raise CatalogError(f"{path}: a damaged Parquet file (more rows than the {n_read} its footer "
                                   "counts)")
            at: dict[str, int] = {}
            for i, name in enumerate(batch.schema.names):
                at.setdefault(name, i)  # a name written twice: the first column, as the CSV reader keeps
            rows = np.arange(offset + 1, offset + n + 1, dtype=np.int64)
            cells = [batch.column(at[mapping[f]]) for f in FEATURES]
            values = np.empty((n, len(FEATURES)))
            empty = np.empty((n, len(FEATURES)), dtype=bool)
            for j, feature in enumerate(FEATURES):
                values[:, j], empty[:, j] = _features(cells[j], feature)
            keep = ~check_features(values, empty, rows, mapping, _shown(cells), faults)
            k = int(keep.sum())
            raw[kept:kept + k], numbers[kept:kept + k] = values[keep], rows[keep]
            mask = pa.array(keep)
            try:
                text = pd.DataFrame({name: _as_text(batch.column(at[name]).filter(mask)) for name in text_columns})
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                raise CatalogError(f"{path}: a column cannot be read as text ({_first_line(err)})") from None
            if not text_columns:
                text = pd.DataFrame(index=pd.RangeIndex(k))
            parts.append(metadata(text, mapping, rows[keep], faults))
            kept, offset = kept + k, offset + n
        if offset != n_read:
            raise CatalogError(f"{path}: a damaged Parquet file ({offset} rows read, its footer counts {n_read})")
    tracks = pd.concat(parts, ignore_index=True)
    return finish(path, cfg, min_tracks, schema, mapping, tracks, raw[:kept], numbers[:kept],
                  problems + faults.lines(), n_read, ROWS)
