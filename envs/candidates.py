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

import numpy as np
from scipy.spatial import cKDTree

from music_rl.core.errors import ConfigError

_QUERY_CHUNK = 65536  # rows per kd-tree query: caps the (chunk, K + 1) float64/int64 buffers at ~35 MB
_POINT_QUERY = 32  # neighbours of a point asked first by nearest_unplayed (about the cost of 1; more than a
# default session excludes), multiplied by 8 while all of them are played


def build_neighbour_table(Z: np.ndarray, n_neighbours: int) -> np.ndarray:
    """Return the ``n_neighbours`` nearest other tracks of every track, nearest first.

    Euclidean distance in latent space, computed with a kd-tree (``scipy.spatial.cKDTree``, all cores),
    queried in chunks to cap memory. A track is never its own neighbour, even when other tracks share
    its latent exactly (self is removed by index, not by dropping the first column). Equal distances
    within a row are ordered by track index. ``n_neighbours`` is clipped to ``N - 1``.

    Args:
        Z: latents, shape (N, d), N >= 2.
        n_neighbours: K, the number of neighbours kept per track (>= 1).

    Returns:
        int32 array of shape (N, min(K, N - 1)); row i lists the neighbours of track i.
    """
    Z = np.asarray(Z)
    if Z.ndim != 2 or Z.shape[0] < 2:
        raise ValueError(f"Z must have shape (N, d) with N >= 2, got {Z.shape}")
    if n_neighbours < 1:
        raise ValueError(f"n_neighbours must be >= 1, got {n_neighbours}")
    n = Z.shape[0]
    k = min(int(n_neighbours), n - 1)
    data = np.ascontiguousarray(Z, dtype=np.float64)
    tree = cKDTree(data, leafsize=32, balanced_tree=False, compact_nodes=False)
    # Query in the tree's leaf order: each chunk is spatially compact, which is ~3x faster than row order.
    order = tree.indices
    table = np.empty((n, k), dtype=np.int32)
    for start in range(0, n, _QUERY_CHUNK):
        rows = order[start : start + _QUERY_CHUNK]
        dist, idx = tree.query(data[rows], k=k + 1, workers=-1)
        table[rows] = _drop_self_and_order_ties(dist, idx, rows)
    return table


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
        self._Z = np.ascontiguousarray(Z, dtype=np.float64)
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
        diff = self._Z[pool] - self._Z[current]
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
            self._tree = cKDTree(self._Z, leafsize=32, balanced_tree=False, compact_nodes=False)
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
        diff = self._Z[pool] - point
        dist = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        best = int(np.argmin(dist))  # the first minimum: the lowest index among equals
        return int(pool[best]), float(dist[best])
