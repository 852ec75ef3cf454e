"""The disk a run's world would take, from its config and its catalog's size, against the free space of the run
folder's file system: checked before any work, so a catalog larger than the disk can hold is one line and exit 2,
never a full disk halfway through a build.

The world's per-track arrays (``world/``: features 11 float32, latents d float32, the neighbour table
``env.n_neighbours`` int32, twice while it is built, clusters and the reward table one int32 and one float32) and its
``tracks.csv`` (the catalog's text columns, each quoted) follow the catalog; the rest of a run folder (models,
checkpoints, logs, TensorBoard) is a fixed allowance. A file catalog's size: a Parquet file's row count from its
footer, a CSV file's lines counted (a second a gigabyte).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from music_rl.core.errors import ConfigError
from music_rl.memory_budget import N_FEATURES, shown

if TYPE_CHECKING:
    from music_rl.config import TrainConfig

FIXED_BYTES = 50_000_000  # models, checkpoints, logs, TensorBoard, feedback files: a tiny run folder is ~2 MB
CHECKED_FROM = 100_000_000  # a smaller world is left to the writes, which refuse a full disk in one line each
SYNTHETIC_TEXT_BYTES = 56  # a synthetic track's row of tracks.csv: "syn00000000","Golden Heart","Artist 1","pop"
_COUNT_BLOCK = 1 << 24


def catalog_size(cfg: TrainConfig) -> tuple[int, int]:
    """The catalog's number of tracks and the bytes of text each brings to ``tracks.csv`` (a file's: its own
    bytes a row, an upper bound)."""
    data = cfg.data
    if data.source == "synthetic" or not data.path:
        return data.n_tracks, SYNTHETIC_TEXT_BYTES
    path = Path(data.path)
    size = path.stat().st_size
    if data.source == "parquet":
        import pyarrow.parquet as pq

        try:
            rows = int(pq.ParquetFile(path).metadata.num_rows)
        except Exception:  # noqa: BLE001  # an unreadable file is refused, in one line, by the reader
            return 0, 0
        return rows, 2 * size // max(rows, 1) + 16  # decompressed text: twice the compressed bytes, at most
    lines = 0
    with open(path, "rb") as fh:
        while block := fh.read(_COUNT_BLOCK):
            lines += block.count(b"\n")
    return max(lines - 1, 0), size // max(lines, 1) + 8


def world_bytes(cfg: TrainConfig, n_tracks: int, text_bytes: int) -> int:
    """The bytes of a run folder's world for ``n_tracks`` tracks, plus the fixed allowance."""
    per_track = 4 * (N_FEATURES + cfg.vae.latent_dim + 2 * cfg.env.n_neighbours + 2) + text_bytes  # the table twice
    # while it is built: staged in the kd-tree's order, then put in place (music_rl.core.arrays.PermutedNpyBuilder)
    return FIXED_BYTES + n_tracks * per_track


def check_disk(cfg: TrainConfig, run_dir: Path) -> None:
    """Raise :class:`ConfigError` when the run's world (of at least :data:`CHECKED_FROM` bytes) would not fit on the
    free space of ``run_dir``'s file system (the nearest existing folder above it): one line with the need, the room
    and the keys that drive it."""
    n_tracks, text = catalog_size(cfg)
    need = world_bytes(cfg, n_tracks, text)
    if need < CHECKED_FROM:
        return
    folder = Path(run_dir).resolve()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if need <= free:
        return
    source = f"data.n_tracks={n_tracks}" if cfg.data.source == "synthetic" else f"data.path={cfg.data.path} " \
        f"({n_tracks} tracks)"
    raise ConfigError(f"this run's world needs about {shown(need)} of disk and {folder} has {shown(free)} free: "
                      f"{source}, env.n_neighbours={cfg.env.n_neighbours}; free some space, write the run "
                      "elsewhere (hydra.run.dir=...) or use a smaller catalog")
