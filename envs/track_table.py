"""A world's track table at any size: ``tracks.csv`` written and read in Arrow's columnar form, and the track ids
as a compact sequence (:class:`TrackIds`: about 20 bytes a track, where a list of Python strings takes about 70).
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import SupportsIndex, overload

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from music_rl.core.atomic import atomic_path
from music_rl.core.errors import RunFolderError

_BATCH = 65536  # rows a Python-level iteration converts at a time
_WRITE_ROWS = 1_000_000  # rows of tracks.csv converted to text at a time


class TrackIds(Sequence[str]):
    """The track ids of a catalog, row i = track i: a read-only sequence of str backed by one Arrow array.

    ``ids[i]`` costs about a microsecond; :meth:`index` and ``in`` use a hash index built on first use
    (:meth:`to_index`).
    """

    def __init__(self, ids: pd.Series | Sequence[str]) -> None:
        array = pa.array(ids, type=pa.large_string()) if not isinstance(ids, pd.Series) \
            else pa.array(ids.astype(str), type=pa.large_string())
        self._ids: pa.LargeStringArray = array
        self._index: pd.Index | None = None

    def __len__(self) -> int:
        return len(self._ids)

    @overload
    def __getitem__(self, i: SupportsIndex) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: SupportsIndex | slice) -> str | list[str]:
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self._ids))
            values: list[str] = self._ids[start:stop].to_pylist()
            return values[::step]
        n, j = len(self._ids), operator.index(i)
        if not -n <= j < n:
            raise IndexError(f"track row {i} outside 0..{n - 1}")
        value: str = self._ids[j % n].as_py()
        return value

    def __iter__(self) -> Iterator[str]:
        for start in range(0, len(self._ids), _BATCH):
            yield from self._ids[start:start + _BATCH].to_pylist()

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and self.find(value) >= 0

    def find(self, value: str) -> int:
        """The first row of track id ``value``, -1 when none: a scan in Arrow (about 50 ms at 10M tracks, no index
        built), or the hash index when :meth:`to_index` has built it."""
        if self._index is not None:
            return int(self._index.get_indexer(pd.Index([value]))[0])
        return int(pc.index(self._ids, pa.scalar(value, type=pa.large_string())).as_py())

    def index(self, value: object, start: int = 0, stop: int | None = None) -> int:
        """The row of track id ``value`` (ValueError when it is not a track id here, as ``list.index``)."""
        row = self.find(value) if isinstance(value, str) else -1
        if row < 0 or row < start or (stop is not None and row >= stop):
            raise ValueError(f"{value!r} is not a track id of this catalog")
        return row

    def to_index(self) -> pd.Index:
        """The ids as a ``pandas.Index`` (built once): ``get_indexer`` joins a log to the catalog's rows."""
        if self._index is None:
            self._index = pd.Index(pd.array(self._ids, dtype=pd.StringDtype("pyarrow")))
        return self._index


def write_tracks(tracks: pd.DataFrame, path: Path) -> None:
    """``tracks.csv``, atomically: every column as text (each value quoted), written by Arrow, a million rows at a
    time (about 0.15 s a million)."""
    schema = pa.schema([(str(name), pa.large_string()) for name in tracks.columns])
    with atomic_path(path) as tmp, pa_csv.CSVWriter(tmp, schema, write_options=pa_csv.WriteOptions(
            quoting_style="needed", batch_size=_BATCH)) as writer:
        for start in range(0, max(len(tracks), 1), _WRITE_ROWS):
            part = tracks.iloc[start:start + _WRITE_ROWS].astype(str)
            writer.write_table(pa.Table.from_pandas(part, preserve_index=False).cast(schema))


def read_tracks(path: Path) -> pd.DataFrame:
    """tracks.csv with every column as text and every 'NA' kept as a string."""
    if not path.is_file():
        raise RunFolderError(f"{path}: missing")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise RunFolderError(f"{path}: unreadable CSV ({str(err).splitlines()[0]})") from None
