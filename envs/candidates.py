"""The candidate index: the k nearest unplayed tracks of the current track, in latent space.

The heavy work happens once per run: :func:`build_neighbour_table` stores the ``K`` nearest other
tracks of every track (a kd-tree query). Every env step then only scans one row of that table
(microseconds); when a session has played most of a row, :class:`CandidateIndex` falls back to an
exact search over all unplayed tracks.

With ``env.action=latent`` the action is a point of the latent space rather than a candidate:
:meth:`CandidateIndex.nearest_unplayed` finds the unplayed track nearest to an arbitrary point (a kd-tree over
the latents, built on first use).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.spatial import cKDTree

from music_rl.core.arrays import NpyBuilder
from music_rl.core.errors import ConfigError

_QUERY_CHUNK = 65536  # rows per kd-tree query: caps the (chunk, K + 1) float64/int64 buffers at ~35 MB
_POINT_QUERY = 32  # neighbours of a point asked first by nearest_unplayed (about the cost of 1; more than a
# default session excludes), multiplied by 8 while all of them are played


def neighbour_tree(Z: np.ndarray) -> cKDTree:
    """The kd-tree of the neighbour table over the latents (N, d), N >= 2 (a float64 copy: 8 d + 8 bytes a track)."""
    Z = np.asarray(Z)
    if Z.ndim != 2 or Z.shape[0] < 2:
        raise ValueError(f"Z must have shape (N, d) with N >= 2, got {Z.shape}")
    return cKDTree(np.asarray(Z, dtype=np.float64), leafsize=32, balanced_tree=False, compact_nodes=False)


def query_shards(tree: cKDTree, shard_rows: int) -> list[np.ndarray]:
    """The rows of the catalog in the tree's leaf order, cut into shards of at most ``shard_rows``: each shard is
    spatially compact, which queries about 3x faster than row order. The same tree gives the same shards."""
    order = np.asarray(tree.indices)
    return [order[start:start + shard_rows] for start in range(0, len(order), shard_rows)]


def query_rows(tree: cKDTree, rows: np.ndarray, n_neighbours: int, workers: int = -1) -> np.ndarray:
    """The ``n_neighbours`` nearest other tracks of each of ``rows`` (clipped to N - 1), nearest first, ties by
    index: int32 (len(rows), K), on ``workers`` threads (-1: every core). One row's answer does not depend on the
    other rows asked with it, so any cut of the catalog into shards, on any machine, gives the same table."""
    k = min(int(n_neighbours), tree.n - 1)
    out = np.empty((len(rows), k), dtype=np.int32)
    threads = (os.cpu_count() or 1) if workers == -1 else max(int(workers), 1)
    # our own threads, each querying a slice on one: a signal (Ctrl-C) between chunks then leaves no query thread
    # running while the interpreter exits (scipy's workers=-1 threads did, and the exit crashed)
    with ThreadPoolExecutor(threads) as pool:
        for start in range(0, len(rows), _QUERY_CHUNK):
            part = rows[start:start + _QUERY_CHUNK]
            slices = [s for s in np.array_split(part, threads) if len(s)]
            answers = list(pool.map(lambda s: tree.query(tree.data[s], k=k + 1, workers=1), slices))
            dist = np.concatenate([a[0] for a in answers]).reshape(len(part), k + 1)
            idx = np.concatenate([a[1] for a in answers]).reshape(len(part), k + 1)
            out[start:start + len(part)] = _drop_self_and_order_ties(dist, idx, part)
    return out


def build_neighbour_table(Z: np.ndarray, n_neighbours: int, shard_rows: int = 1_000_000) -> np.ndarray:
    """Return the ``n_neighbours`` nearest other tracks of every track, nearest first.

    Euclidean distance in latent space, computed with a kd-tree (``scipy.spatial.cKDTree``, all cores),
    queried shard by shard (:func:`fill_neighbour_table`). A track is never its own neighbour, even when other
    tracks share its latent exactly (self is removed by index, not by dropping the first column). Equal distances
    within a row are ordered by track index. ``n_neighbours`` is clipped to ``N - 1``.

    Args:
        Z: latents, shape (N, d), N >= 2.
        n_neighbours: K, the number of neighbours kept per track (>= 1).
        shard_rows: rows per shard (``world.chunk_rows``); the table does not depend on it.

    Returns:
        int32 array of shape (N, min(K, N - 1)); row i lists the neighbours of track i.
    """
    if n_neighbours < 1:
        raise ValueError(f"n_neighbours must be >= 1, got {n_neighbours}")
    tree = neighbour_tree(Z)
    table = np.empty((tree.n, min(int(n_neighbours), tree.n - 1)), dtype=np.int32)
    fill_neighbour_table(tree, table, shard_rows)
    return table


def fill_neighbour_table(tree: cKDTree, out: np.ndarray | NpyBuilder, shard_rows: int) -> None:
    """Write the table of :func:`build_neighbour_table` (``out.shape[1]`` neighbours a track) into ``out``: an
    (N, K) int32 array, or an ``.npy`` file built in parts (:class:`music_rl.core.arrays.NpyBuilder`), whose
    memory then follows ``shard_rows``."""
    for rows in query_shards(tree, shard_rows):
        out[rows] = query_rows(tree, rows, out.shape[1])


def _drop_self_and_order_ties(dist: np.ndarray, idx: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Remove each row's own index from a (n, K + 1) kNN result (the last column when absent).

    Rows with equal distances are re-sorted by (distance, index) so the table does not depend on the
    kd-tree's internal tie order.
    """
    drop = idx == rows[:, None]
    drop[:, -1] |= ~drop.any(axis=1)  # self beyond the K + 1 results (many exact duplicates)
    keep = ~drop
    n, k = idx.shape[0], idx.shape[1] - 1
    idx = idx[keep].reshape(n, k)
    dist = dist[keep].reshape(n, k)
    tied = np.flatnonzero((dist[:, 1:] == dist[:, :-1]).any(axis=1))
    if tied.size:
        order = np.lexsort((idx[tied], dist[tied]), axis=-1)
        idx[tied] = np.take_along_axis(idx[tied], order, axis=1)
    return idx


class CandidateIndex:
    """The ``k`` nearest unplayed tracks of a track: a neighbour-table scan with an exact fallback.

    Args:
        Z: latents, shape (N, d); used by the exact fallback.
        table: neighbour table from :func:`build_neighbour_table`, shape (N, K).
        k: number of candidates per step (config key ``env.k``), 1 <= k <= N - 1.
    """

    def __init__(self, Z: np.ndarray, table: np.ndarray, k: int = 4) -> None:
        Z = np.asarray(Z)
        table = np.asarray(table)
        if Z.ndim != 2 or table.ndim != 2 or table.shape[0] != Z.shape[0]:
            raise ValueError(f"Z (N, d) and table (N, K) must share N, got {Z.shape} and {table.shape}")
        n = Z.shape[0]
        if not 1 <= k <= n - 1:
            raise ConfigError(f"env.k={k}: must be between 1 and the number of tracks - 1 ({n - 1})")
        self.k = int(k)
        self.n_tracks = n
        self._Z = Z  # float32 (a memory map of a large world): rows converted to float64 where read
        self._table = np.ascontiguousarray(table, dtype=np.int32)  # no copy of a contiguous table
        self._tree: cKDTree | None = None  # over every track, for nearest_unplayed (built on first use)

    def candidates(self, current: int, played: np.ndarray) -> np.ndarray:
        """Return the ``k`` nearest tracks to ``current`` that are neither ``current`` nor played.

        Args:
            current: index of the current track.
            played: boolean mask (N,), True for tracks the caller excludes (owned by the caller).

        Returns:
            int64 array (k,), nearest first (equal distances: lower index first).

        Raises:
            ValueError: fewer than ``k`` tracks of the catalog are unplayed (the env prevents it with
                ``session_length + k <= N``).
        """
        current = int(current)
        found: list[int] = []
        for j in self._table[current].tolist():  # a plain loop beats a vectorised mask for K ~ 32
            if j != current and not played[j]:
                found.append(j)
                if len(found) == self.k:
                    return np.array(found, dtype=np.int64)
        return self._exact(current, played)

    def _exact(self, current: int, played: np.ndarray) -> np.ndarray:
        """Exact search over every unplayed track: the k nearest, ties by index."""
        unplayed = ~played
        unplayed[current] = False
        pool = np.flatnonzero(unplayed)
        if pool.size < self.k:
            raise ValueError(
                f"only {pool.size} unplayed tracks left, {self.k} candidates needed "
                f"(keep session_length + k <= {self.n_tracks})"
            )
        diff = np.asarray(self._Z[pool], dtype=np.float64) - np.asarray(self._Z[current], dtype=np.float64)
        dist = np.einsum("ij,ij->i", diff, diff)
        kth = np.partition(dist, self.k - 1)[self.k - 1]
        near = np.flatnonzero(dist <= kth)
        order = np.lexsort((pool[near], dist[near]))[: self.k]
        return pool[near[order]]

    def nearest_unplayed(self, point: np.ndarray, played: np.ndarray) -> tuple[int, float]:
        """The unplayed track nearest to an arbitrary ``point`` of the latent space, and its distance.

        A kd-tree query of the 32 nearest tracks (as fast as one; more than a default session ever excludes);
        when all of them are played (or the last one ties with the best unplayed one), the query widens
        eightfold (256, 2048, ...) until it finds one; once it would cover the catalog, an exact search over
        every unplayed track. Equal distances: the lower index.

        Args:
            point: (d,) coordinates, in the latents' space.
            played: boolean mask (N,), True for tracks the caller excludes (owned by the caller).

        Raises:
            ValueError: every track is played.
        """
        if self._tree is None:
            self._tree = neighbour_tree(self._Z)
        point = np.asarray(point, dtype=np.float64)
        n, width = self.n_tracks, _POINT_QUERY
        while width < n:
            dist, idx = self._tree.query(point, k=width)
            free = ~played[idx]
            if free.any():
                best = dist[free].min()
                if best < dist[-1]:  # every track at that distance was returned
                    tied = idx[free & (dist == best)]
                    return int(tied.min()), float(best)
            width *= 8
        pool = np.flatnonzero(~played)
        if not pool.size:
            raise ValueError("every track is played: no track left to recommend")
        diff = np.asarray(self._Z[pool], dtype=np.float64) - point
        dist = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        best = int(np.argmin(dist))  # the first minimum: the lowest index among equals
        return int(pool[best]), float(dist[best])
