"""Arrays larger than memory: ``.npy`` files written in parts and read as memory maps.

A world's per-track arrays (features, latents, the neighbour table, clusters, the reward table) follow the
catalog's size; built in chunks into an :class:`NpyBuilder` and read back with :func:`map_npy`, the memory a stage
holds follows its chunk rather than the catalog. A builder writes under a temporary name and renames the file
only once every part is written (:mod:`music_rl.core.atomic`), so a reader never sees a half-written array.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from music_rl.core.atomic import atomic_path

# A shard of scattered row writes maps its file anew (the pages it touched leave the process once unmapped):
# 65,536 rows touch at most 256 MB of pages, whatever the catalog's size.
SCATTER_ROWS = 65536


class NpyBuilder:
    """An ``.npy`` file of a known shape and dtype, written part by part.

    Contiguous row ranges are written with plain file writes (nothing stays mapped); scattered rows through a
    memory map opened for that write only. The file is complete once every row has been written once.
    """

    def __init__(self, tmp: Path, shape: tuple[int, ...], dtype: np.dtype | type) -> None:
        self.path, self.shape, self.dtype = Path(tmp), tuple(int(s) for s in shape), np.dtype(dtype)
        array = np.lib.format.open_memmap(self.path, mode="w+", dtype=self.dtype, shape=self.shape)
        self.offset = int(array.offset)
        del array  # the header written, the file sized (sparse until written)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def write(self, start: int, values: np.ndarray) -> None:
        """Rows ``start .. start + len(values)``."""
        values = np.ascontiguousarray(values, dtype=self.dtype)
        if values.shape[1:] != self.shape[1:] or start < 0 or start + len(values) > self.shape[0]:
            raise ValueError(f"rows {start}..{start + len(values)} of shape {values.shape} do not fit {self.shape}")
        with open(self.path, "r+b") as fh:
            fh.seek(self.offset + start * self.row_bytes)
            fh.write(values.tobytes())

    def __setitem__(self, rows: slice | np.ndarray, values: np.ndarray) -> None:
        """``builder[a:b] = values`` (:meth:`write`) or ``builder[rows] = values`` (:meth:`scatter`), as for an
        array."""
        if isinstance(rows, slice):
            start, stop, step = rows.indices(self.shape[0])
            if step != 1 or stop - start != len(values):
                raise ValueError(f"rows {rows} do not match {len(values)} values")
            self.write(start, values)
        else:
            self.scatter(np.asarray(rows), np.asarray(values))

    def scatter(self, rows: np.ndarray, values: np.ndarray) -> None:
        """Rows ``rows`` (any order) set to ``values``, a map of the file per :data:`SCATTER_ROWS` rows."""
        for start in range(0, len(rows), SCATTER_ROWS):
            mapped = np.memmap(self.path, dtype=self.dtype, mode="r+", offset=self.offset, shape=self.shape)
            mapped[rows[start:start + SCATTER_ROWS]] = values[start:start + SCATTER_ROWS]
            del mapped  # unmapped, not synced: the kernel writes the pages back; the builder fsyncs once, at the end


    def finish(self) -> None:
        """Called once every row is written, before the file takes its name (nothing to do here)."""


class PermutedNpyBuilder(NpyBuilder):
    """An ``.npy`` file whose rows arrive in blocks of another order (a kd-tree's leaf order): each block is written
    where it falls in that order into a staging file (plain writes), then the rows are put in place, a chunk of the
    output at a time (:meth:`finish`). Scattering the blocks straight into the file would write each of its pages
    back to disk again and again (every block touches most pages of a large table).

    Args:
        tmp: the output file; the staging file is ``tmp`` + ``.staged``.
        shape, dtype: the output's.
        order: ``order[p]`` is the row that position ``p`` of the arrival order holds (a permutation of the rows).
    """

    def __init__(self, tmp: Path, shape: tuple[int, ...], dtype: np.dtype | type, order: np.ndarray) -> None:
        super().__init__(tmp, shape, dtype)
        self.order = np.asarray(order)
        self.position = np.empty(len(self.order), dtype=np.int64)
        self.position[self.order] = np.arange(len(self.order))
        self.staged = NpyBuilder(Path(f"{tmp}.staged"), shape, dtype)

    def __setitem__(self, rows: slice | np.ndarray, values: np.ndarray) -> None:
        """``builder[rows] = values`` for a block of rows that are consecutive in the arrival order."""
        rows = np.arange(self.shape[0])[rows] if isinstance(rows, slice) else np.asarray(rows)
        start = int(self.position[rows[0]]) if len(rows) else 0
        if not np.array_equal(self.order[start:start + len(rows)], rows):
            raise ValueError("rows that are not a block of the arrival order")
        self.staged.write(start, values)

    def finish(self) -> None:
        """The staged rows put in place, a chunk of the output at a time; the staging file removed."""
        try:
            for part in chunks(self.shape[0], SCATTER_ROWS):  # a chunk's rows fall anywhere: as many pages mapped
                staged = np.memmap(self.staged.path, dtype=self.dtype, mode="r", offset=self.staged.offset,
                                   shape=self.shape)
                self.write(part.start, staged[self.position[part]])
                del staged
        finally:
            self.staged.path.unlink(missing_ok=True)


@contextmanager
def build_npy(path: str | os.PathLike[str], shape: tuple[int, ...], dtype: np.dtype | type,
              order: np.ndarray | None = None) -> Iterator[NpyBuilder]:
    """An :class:`NpyBuilder` (a :class:`PermutedNpyBuilder` when the rows arrive in ``order``) whose file becomes
    ``path`` (atomically) when the block ends without an error."""
    with atomic_path(path) as tmp:
        builder = NpyBuilder(tmp, shape, dtype) if order is None else PermutedNpyBuilder(tmp, shape, dtype, order)
        try:
            yield builder
            builder.finish()
        finally:
            if isinstance(builder, PermutedNpyBuilder):
                builder.staged.path.unlink(missing_ok=True)


def map_npy(path: str | os.PathLike[str]) -> np.ndarray:
    """An ``.npy`` file as a read-only memory map (no pickles): its pages are read when used."""
    array: np.ndarray = np.load(path, mmap_mode="r", allow_pickle=False)
    return array


def chunks(n: int, size: int) -> Iterator[slice]:
    """``slice(start, stop)`` over ``0 .. n`` in steps of ``size``."""
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def scan_npy(path: str | os.PathLike[str], rows: int) -> Iterator[np.ndarray]:
    """The rows of an ``.npy`` file, ``rows`` at a time, read with plain file reads (nothing stays mapped)."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"{path}: .npy format {version}, this reader takes 1.0 and 2.0")
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(fh)
        if fortran:
            raise ValueError(f"{path}: a Fortran-ordered array; this reader takes C order")
        width = int(np.prod(shape[1:], dtype=np.int64))
        for part in chunks(int(shape[0]), rows):
            count = (part.stop - part.start) * width
            yield np.fromfile(fh, dtype=dtype, count=count).reshape((part.stop - part.start, *shape[1:]))
