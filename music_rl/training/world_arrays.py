"""The world's per-track arrays built out of core, straight into the run's ``world/`` folder: the normalised
features of a synthetic catalog (drawn part by part), the VAE's latents (encoded shard by shard) and the neighbour
table (queried shard by shard), each an ``.npy`` file written in parts and read back as a memory map
(:mod:`music_rl.core.arrays`), so that the memory of a stage follows ``world.chunk_rows`` rather than the catalog.

``world.build=ray`` computes the encoding and the neighbour table over the same shards on Ray
(:mod:`music_rl.training.ray_build`); ``world.index`` chooses the neighbour index (:mod:`envs.ann_index` for the
approximate ones).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from envs.candidates import fill_neighbour_table, neighbour_tree
from envs.world_config import BuildEngine, IndexKind, WorldConfig
from music_rl.core.arrays import build_npy, chunks, map_npy
from music_rl.data.catalog import FEATURES, DataConfig, Normaliser, synthetic_chunks
from music_rl.training.ray_build import encode_in_shards, ray_encode, ray_neighbour_table, ray_session
from vae.encoder import LatentEncoder

log = logging.getLogger(__name__)


def synthetic_features(data: DataConfig, path: Path) -> tuple[pd.DataFrame, Normaliser, np.ndarray]:
    """The synthetic catalog's tracks, its normaliser and its normalised features, written to ``path`` part by
    part (:func:`music_rl.data.catalog.synthetic_chunks`) and returned as a memory map. The tracks' text columns are
    categorical, gathered as codes; the ids one Arrow array (:func:`synthetic_ids`): about 26 bytes a track, never
    twice. A ``minmax`` normalisation reads the parts twice: its ranges first."""
    normaliser = Normaliser(data.normalisation)
    n = data.n_tracks
    if data.normalisation == "minmax":
        bounds = [np.vstack([p.raw.min(axis=0), p.raw.max(axis=0)]) for p in synthetic_chunks(n, data.seed)]
        normaliser.fit(np.vstack(bounds))  # the catalog's min and max are those of its parts' minima and maxima
    codes: dict[str, list[np.ndarray]] = {}
    categories: dict[str, pd.Index] = {}
    with build_npy(path, (n, len(FEATURES)), np.float32) as out:
        start = 0
        for part in synthetic_chunks(n, data.seed):
            out.write(start, normaliser.transform(part.raw))
            start += len(part.raw)
            for name in part.tracks.columns[1:]:  # name, artist, genre: the same categories in every part
                codes.setdefault(name, []).append(part.tracks[name].cat.codes.to_numpy())
                categories[name] = part.tracks[name].cat.categories
    tracks = pd.DataFrame({"track_id": synthetic_ids(n)} | {
        name: pd.Categorical.from_codes(np.concatenate(parts), categories[name]) for name, parts in codes.items()})
    return tracks, normaliser, map_npy(path)


def synthetic_ids(n: int) -> pd.Series:
    """``syn00000000`` .. the ids of a synthetic catalog of ``n`` tracks (those of
    :func:`music_rl.data.catalog.synthetic_chunks`), as one Arrow string array built from digits, not from Python
    strings (a second for 100M tracks)."""
    width = max(8, len(str(max(n - 1, 0))))
    text = np.empty((n, 3 + width), dtype=np.uint8)
    text[:, :3] = np.frombuffer(b"syn", dtype=np.uint8)
    value = np.arange(n, dtype=np.int64)
    for column in range(3 + width - 1, 2, -1):
        text[:, column] = ord("0") + value % 10
        value //= 10
    offsets = np.arange(0, (n + 1) * (3 + width), 3 + width, dtype=np.int64)
    array = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text.reshape(-1)))
    return pd.Series(pd.arrays.ArrowStringArray(array))


def stored_features(features: np.ndarray, path: Path, chunk_rows: int) -> np.ndarray:
    """Features read whole (a CSV or Parquet catalog) written to ``path`` and returned as a memory map."""
    with build_npy(path, features.shape, np.float32) as out:
        for part in chunks(len(features), chunk_rows):
            out.write(part.start, features[part])
    return map_npy(path)


def training_rows(n_tracks: int, sample_rows: int, seed: int) -> np.ndarray | None:
    """The rows the VAE and K-Means are fitted on: None (every row) for a catalog of at most ``sample_rows``
    tracks, else ``sample_rows`` distinct rows drawn with ``seed``, sorted."""
    if n_tracks <= sample_rows:
        return None
    return np.sort(np.random.default_rng(seed).choice(n_tracks, size=sample_rows, replace=False))


def encode_latents(world: WorldConfig, encoder: LatentEncoder, features: np.ndarray, path: Path) -> np.ndarray:
    """Every track's latents, shard by shard (``world.chunk_rows``; on Ray with ``world.build=ray``), written to
    ``path`` and returned as a memory map."""
    with build_npy(path, (len(features), encoder.cfg.latent_dim), np.float32) as out:
        if world.build == BuildEngine.ray:
            with ray_session(world.ray):
                ray_encode(encoder, features, out, world.chunk_rows)
        else:
            encode_in_shards(encoder, features, out, world.chunk_rows)
    return map_npy(path)


def neighbour_table(world: WorldConfig, latents: np.ndarray, n_neighbours: int, path: Path,
                    seed: int) -> np.ndarray:
    """The neighbour table of ``world.index`` (exact: a kd-tree, shard by shard, on Ray with ``world.build=ray``;
    faiss, hnsw: approximate), written to ``path`` and returned as a memory map."""
    n = len(latents)
    k = min(int(n_neighbours), n - 1)
    # the exact table arrives in the kd-tree's leaf order (on Ray too: every tree of the same latents has it)
    tree = neighbour_tree(latents) if world.index == IndexKind.exact else None
    with build_npy(path, (n, k), np.int32, order=None if tree is None else np.asarray(tree.indices)) as out:
        if world.index != IndexKind.exact:
            from envs.ann_index import approximate_neighbour_table

            table = approximate_neighbour_table(np.asarray(latents), k, str(world.index), seed, world.chunk_rows)
            for part in chunks(n, world.chunk_rows):
                out.write(part.start, table[part])
        elif world.build == BuildEngine.ray:
            del tree  # the driver needed its order only: the actors build their own
            with ray_session(world.ray):
                ray_neighbour_table(np.asarray(latents), k, out, world.chunk_rows)
        else:
            assert tree is not None
            fill_neighbour_table(tree, out, world.chunk_rows)
    return map_npy(path)
