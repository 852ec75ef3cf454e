"""A saved world's files read and checked (:meth:`envs.world.World.load`) and a world's parts checked against each
other (:class:`envs.world.World`): every array a chunk at a time, a memory map's read from its file, so that checking
a 100M-track world keeps none of its pages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from music_rl.core.arrays import SCATTER_ROWS, map_npy, scan_npy
from music_rl.core.errors import RunFolderError
from music_rl.data.catalog import FEATURES

if TYPE_CHECKING:
    from envs.world import World

FORMAT_VERSION = 1
META_KEYS = ("format_version", "like_weight", "early_skip_penalty", "early_skip_threshold", "listener_config",
             "listeners_seed", "served_listener", "train_listeners", "heldout_listeners", "latent_source")


class WorldMismatch(ValueError):
    """A world's parts do not line up: ``file`` (as saved) and ``what`` differs."""

    def __init__(self, file: str, what: str) -> None:
        super().__init__(f"{file}: {what}")
        self.file, self.what = file, what

def mismatch(world: World) -> tuple[str, str] | None:
    """The first file whose content does not line up with tracks.csv and the other arrays, and how."""
    tracks = world.tracks
    if len(tracks.columns) == 0 or tracks.columns[0] != "track_id":
        first = tracks.columns[0] if len(tracks.columns) else None
        return "tracks.csv", f"first column is {first!r}, not 'track_id'"
    n = len(tracks)
    if n < 2:
        return "tracks.csv", f"{n} tracks, at least 2 needed"
    if not tracks["track_id"].is_unique:
        dup = tracks["track_id"][tracks["track_id"].duplicated()].iloc[0]
        return "tracks.csv", f"track_id {dup!r} appears more than once"
    d = world.latents.shape[1] if world.latents.ndim == 2 else -1
    c = world.centroids.shape[0] if world.centroids.ndim == 2 else -1
    expected = {
        "features": ((n, len(FEATURES)), "f"), "latents": ((n, d), "f"), "neighbours": ((n, None), "i"),
        "clusters": ((n,), "i"), "centroids": ((c, d), "f"), "reward_table": ((n,), "f"),
    }
    for name, (shape, kind) in expected.items():
        arr = getattr(world, name)
        want = tuple("K" if s is None else s for s in shape)
        if arr.ndim != len(shape) or any(s not in (None, a) for a, s in zip(arr.shape, shape, strict=True)):
            return f"{name}.npy", f"shape {arr.shape}, expected {want} (tracks.csv has {n} rows)"
        if arr.dtype.kind not in {"f": "f", "i": "iu"}[kind]:
            return f"{name}.npy", f"dtype {arr.dtype}, expected {'integers' if kind == 'i' else 'floats'}"
    if d < 1 or c < 1 or world.neighbours.shape[1] < 1:
        return "latents.npy", (f"latent width {d}, {c} centroids, {world.neighbours.shape[1]} neighbours: "
                               "all must be >= 1")
    low, high = _range(world.neighbours)
    if low < 0 or high >= n:
        return "neighbours.npy", f"track indices outside 0..{n - 1}"
    if world.clusters.min() < 0 or world.clusters.max() >= c:
        return "clusters.npy", f"cluster labels outside 0..{c - 1} ({c} centroids)"
    for name in ("features", "latents", "reward_table"):
        if not all(np.isfinite(part).all() for part in _parts(getattr(world, name))):
            return f"{name}.npy", "holds NaN or infinite values"
    return None


def _parts(array: np.ndarray) -> Iterator[np.ndarray]:
    """An array a chunk at a time: a memory map's read from its file (no page of it stays in this process)."""
    if isinstance(array, np.memmap) and array.filename is not None and Path(array.filename).is_file():
        yield from scan_npy(array.filename, SCATTER_ROWS * 16)
    else:
        yield array


def _range(array: np.ndarray) -> tuple[int, int]:
    """The smallest and the largest entry of an integer array (or memory map)."""
    parts = [(int(p.min()), int(p.max())) for p in _parts(array) if p.size]
    return min(p[0] for p in parts), max(p[1] for p in parts)


def read_array(path: Path) -> np.ndarray:
    """One .npy array, without pickles."""
    if not path.is_file():
        raise RunFolderError(f"{path}: missing")
    try:
        return map_npy(path)
    except (OSError, ValueError, EOFError) as err:
        raise RunFolderError(f"{path}: not a readable .npy array ({str(err).splitlines()[0]})") from None


def read_meta(path: Path) -> dict[str, Any]:
    """meta.json, checked for its format version and keys."""
    if not path.is_file():
        raise RunFolderError(f"{path}: missing")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise RunFolderError(f"{path}: unreadable JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        version = meta.get("format_version") if isinstance(meta, dict) else None
        raise RunFolderError(f"{path}: format_version={version!r}, this code reads "
                             f"format_version={FORMAT_VERSION}")
    missing = [key for key in META_KEYS if key not in meta]
    if missing:
        raise RunFolderError(f"{path}: missing keys {', '.join(missing)}")
    return meta
