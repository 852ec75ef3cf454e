"""Approximate neighbour tables (``world.index=faiss`` or ``hnsw``): an HNSW graph instead of the exact kd-tree.

:func:`approximate_neighbour_table` returns a table with the contract of
:func:`envs.candidates.build_neighbour_table` (int32 (N, min(K, N - 1)), nearest first, no self, no duplicates,
every entry a valid track), but each row holds the ``K`` nearest tracks an HNSW search found, not necessarily the
exact ones (recall@32 and cost: ``music-rl bench 'only=[l]'``, :mod:`music_rl.bench.index`).

Both libraries build the same kind of graph (HNSW, ``M = 32`` links per node, 64 on the bottom layer) with the same
search widths: ``efConstruction = 40`` and ``efSearch = max(48, K + 1)``. At 1M tracks, d = 5 (the bench's
synthetic catalog, PCA latents) they gave recall@32 0.999 (faiss) and 0.993 (hnswlib) with
efConstruction = efSearch = 40, and efConstruction = 32 still 0.999 / 0.985; widening efSearch to 64 or 100 adds
under 0.001 while queries cost 1.1-2x more, so the build width is the lever and 40 keeps a margin over the
required 0.95 for larger catalogs. efSearch = 48 leaves room above the K + 1 = 33 results asked.

The packages are the optional extra ``ann`` (``pip install -e ".[ann]"``: faiss-cpu, hnswlib), imported here only
when asked for.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import numpy as np

from music_rl.core.errors import ConfigError

HNSW_M = 32  # links per node (2 * M on the bottom layer)
EF_CONSTRUCTION = 40  # candidate list while building: recall@32 0.993 (hnswlib) / 0.999 (faiss) at 1M, d = 5
EF_SEARCH = 48  # candidate list while querying, at least K + 1
_PACKAGES = {"faiss": ("faiss", "faiss-cpu"), "hnsw": ("hnswlib", "hnswlib")}  # kind: (module, pip name)
_POST_ROWS = 65_536  # rows per block of the clean-up of a query chunk (masks and sorts stay ~10 MB)


def approximate_neighbour_table(Z: np.ndarray, n_neighbours: int, kind: str, seed: int,
                                chunk_rows: int = 1_000_000, *, threads: int | None = None) -> np.ndarray:
    """Return about the ``n_neighbours`` nearest other tracks of every track, nearest first, from an HNSW graph.

    The graph (``M = 32``, ``efConstruction = 40``; the module's docstring says why) is built by faiss-cpu's
    ``IndexHNSWFlat`` (``kind="faiss"``) or hnswlib (``kind="hnsw"``) over float32 latents, squared Euclidean
    distance. Tracks are added in a random order drawn from ``seed`` (a catalog sorted by genre or by feature would
    otherwise build a poor graph: inserting nearby tracks together costs recall), ``chunk_rows`` at a time. Every
    track is then queried for ``K + 1`` results (``efSearch = max(48, K + 1)``), ``chunk_rows`` at a time, in
    Morton (Z-order) order of the latents so that consecutive queries walk the same part of the graph (about 3x
    faster than row order); query buffers follow the chunk.

    Each row keeps, in the order of the search's distances (equal distances: lower index first), the first ``K``
    results that are a valid track index (faiss pads with -1), not the track itself (removed by index, as in the
    exact table, even when other tracks share its latent) and not already in the row. A row left with fewer than
    ``K`` such results (a search that found too few, e.g. many exact duplicates cut off from the graph) is replaced
    by its exact row: a brute-force search over every track, float64 distances, ties by index, as
    :func:`envs.candidates.build_neighbour_table` would give it. So every row is complete and deterministic given
    the search's results; that fallback costs O(N) per such row (meant for rare rows).

    Determinism: the graph's random levels come from ``seed`` (hnswlib's ``random_seed``; faiss's
    ``hnsw.rng``), and so does the insertion order. With ``threads=1`` both libraries build the same graph on
    every run, so the table is a function of ``(Z, K, kind, seed, chunk_rows)``. With several threads hnswlib's
    build is not deterministic (threads insert concurrently; the graph depends on their timing), nor is faiss's
    lock-based build (faiss-cpu 1.15 and older: threads insert concurrently under locks), so tables may differ in a
    few rows from run to run (on 2 busy cores, repeated faiss builds matched; that is not a guarantee). A faiss that
    exposes ``hnsw_deterministic_build`` (faiss's source has it, faiss-cpu 1.15.1 does not; untested here) gets it
    switched on for the build, which makes the graph independent of the thread count. Queries are deterministic
    either way.

    Args:
        Z: latents, shape (N, d), N >= 2.
        n_neighbours: K, the number of neighbours kept per track (>= 1); clipped to ``N - 1``.
        kind: ``"faiss"`` or ``"hnsw"`` (``world.index``).
        seed: seed of the insertion order and of the graph's levels.
        chunk_rows: rows added, then queried, per call of the library (>= 1).
        threads: threads of the build and the queries (set explicitly for the call; faiss's OpenMP setting is
            restored after); None: every core this process may use.

    Returns:
        int32 array of shape (N, min(K, N - 1)); row i lists the neighbours of track i.

    Raises:
        ConfigError: unknown ``kind``, or its package is not installed
            (``world.index=faiss needs faiss-cpu: pip install -e ".[ann]"``).
    """
    if kind not in _PACKAGES:
        raise ConfigError(f"world.index={kind}: approximate_neighbour_table takes faiss or hnsw "
                          "(exact: envs.candidates.build_neighbour_table)")
    module, pip_name = _PACKAGES[kind]
    try:
        lib: Any = importlib.import_module(module)
    except ImportError:
        raise ConfigError(f'world.index={kind} needs {pip_name}: pip install -e ".[ann]"') from None
    Z = np.asarray(Z)
    if Z.ndim != 2 or Z.shape[0] < 2:
        raise ValueError(f"Z must have shape (N, d) with N >= 2, got {Z.shape}")
    if n_neighbours < 1:
        raise ValueError(f"n_neighbours must be >= 1, got {n_neighbours}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    n = Z.shape[0]
    k = min(int(n_neighbours), n - 1)
    n_threads = int(threads) if threads is not None else len(os.sched_getaffinity(0))
    if n_threads < 1:
        raise ValueError(f"threads must be >= 1 or None, got {threads}")
    # insertion order: a seeded permutation; int32 labels while they fit (half the memory of int64)
    perm = np.random.default_rng(seed).permutation(n).astype(np.int32 if n < 2**31 else np.int64)
    search = _faiss_search if kind == "faiss" else _hnsw_search
    table = np.empty((n, k), dtype=np.int32)
    search(lib, Z, perm, k, seed, chunk_rows, n_threads, table)
    return table


def _faiss_search(faiss: Any, Z: np.ndarray, perm: np.ndarray, k: int, seed: int, chunk_rows: int,
                  threads: int, table: np.ndarray) -> None:
    """Build faiss's IndexHNSWFlat over ``Z[perm]`` and fill ``table``."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    deterministic = _faiss_deterministic_build(faiss, True)
    try:
        index = faiss.IndexHNSWFlat(Z.shape[1], HNSW_M)
        index.hnsw.rng = faiss.RandomGenerator(int(seed) % 2**31)
        index.hnsw.efConstruction = EF_CONSTRUCTION
        for start in range(0, Z.shape[0], chunk_rows):
            index.add(np.ascontiguousarray(Z[perm[start : start + chunk_rows]], dtype=np.float32))
        index.hnsw.efSearch = max(EF_SEARCH, k + 1)

        def query(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            dist, pos = index.search(np.ascontiguousarray(Z[rows], dtype=np.float32), k + 1)
            return dist, np.where(pos >= 0, perm[np.maximum(pos, 0)], -1)  # positions of perm -> track ids

        _query_all(Z, k, chunk_rows, query, table)
    finally:
        faiss.omp_set_num_threads(before)
        if deterministic is not None:
            _faiss_deterministic_build(faiss, deterministic)


def _faiss_deterministic_build(faiss: Any, value: bool) -> bool | None:
    """Set faiss's ``hnsw_deterministic_build`` (not in faiss-cpu 1.15.1); its previous value, or None when this
    faiss has no such switch."""
    try:
        previous = bool(faiss.cvar.hnsw_deterministic_build)
        faiss.cvar.hnsw_deterministic_build = value
    except AttributeError:
        return None
    return previous


def _hnsw_search(hnswlib: Any, Z: np.ndarray, perm: np.ndarray, k: int, seed: int, chunk_rows: int,
                 threads: int, table: np.ndarray) -> None:
    """Build an hnswlib index over ``Z`` (labels: track ids, added in ``perm`` order) and fill ``table``."""
    n, d = Z.shape
    index = hnswlib.Index(space="l2", dim=d)
    index.init_index(max_elements=n, ef_construction=EF_CONSTRUCTION, M=HNSW_M, random_seed=int(seed) % 2**31)
    for start in range(0, n, chunk_rows):
        ids = perm[start : start + chunk_rows]
        index.add_items(np.ascontiguousarray(Z[ids], dtype=np.float32), ids.astype(np.int64), num_threads=threads)
    index.set_ef(max(EF_SEARCH, k + 1))

    def query(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _hnsw_query(index, np.ascontiguousarray(Z[rows], dtype=np.float32), k + 1, threads)

    _query_all(Z, k, chunk_rows, query, table)


def _hnsw_query(index: Any, X: np.ndarray, k: int, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """hnswlib's ``knn_query`` of the rows of ``X``: (distances, labels as int64). hnswlib raises when a query
    finds fewer than ``k`` results; the block is then split in halves until the failing queries are single rows,
    which come back as -1 labels (completed exactly by the caller)."""
    try:
        labels, dist = index.knn_query(X, k=k, num_threads=threads)
    except RuntimeError:
        if X.shape[0] == 1:
            return np.full((1, k), np.inf, dtype=np.float32), np.full((1, k), -1, dtype=np.int64)
        half = X.shape[0] // 2
        (d0, l0), (d1, l1) = _hnsw_query(index, X[:half], k, threads), _hnsw_query(index, X[half:], k, threads)
        return np.concatenate([d0, d1]), np.concatenate([l0, l1])
    return dist, labels.view(np.int64)  # uint64 labels < N: the same bits, no copy


def _query_all(Z: np.ndarray, k: int, chunk_rows: int, query: Any, table: np.ndarray) -> None:
    """Query every track, ``chunk_rows`` at a time in Morton order, and write its cleaned row into ``table``."""
    order = morton_order(Z)
    for start in range(0, Z.shape[0], chunk_rows):
        rows = order[start : start + chunk_rows]
        dist, idx = query(rows)
        for sub in range(0, rows.size, _POST_ROWS):
            block = slice(sub, sub + _POST_ROWS)
            table[rows[block]] = _clean_rows(Z, rows[block], dist[block], idx[block], k)


def _clean_rows(Z: np.ndarray, rows: np.ndarray, dist: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
    """The table rows of ``rows`` from a (n, K + 1) search result: the first ``k`` valid, distinct, non-self
    results, ties by index; rows with fewer are replaced by their exact row (:func:`exact_rows`)."""
    n = Z.shape[0]
    valid = (idx >= 0) & (idx < n) & (idx != rows[:, None])
    # later copies of an index within a row (a stable sort keeps the nearer one first)
    by_index = np.argsort(idx, axis=1, kind="stable")
    sorted_idx = np.take_along_axis(idx, by_index, axis=1)
    repeat = np.zeros_like(valid)
    repeat[:, 1:] = sorted_idx[:, 1:] == sorted_idx[:, :-1]
    duplicate = np.empty_like(valid)
    np.put_along_axis(duplicate, by_index, repeat, axis=1)
    valid &= ~duplicate
    take = valid & (np.cumsum(valid, axis=1) <= k)
    full = take.sum(axis=1) == k
    out = np.empty((rows.size, k), dtype=np.int32)
    kept_idx = idx[full][take[full]].reshape(-1, k)
    kept_dist = dist[full][take[full]].reshape(-1, k)
    order = np.lexsort((kept_idx, kept_dist), axis=-1)  # by distance, then index
    out[full] = np.take_along_axis(kept_idx, order, axis=1)
    short = np.flatnonzero(~full)
    if short.size:
        out[short] = exact_rows(Z, rows[short], k)
    return out


def exact_rows(Z: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """The exact ``k`` nearest other tracks of each track of ``rows`` by brute force (float64 squared distances
    over every track, ties by index): the rows of :func:`envs.candidates.build_neighbour_table`. O(N) per row."""
    out = np.empty((rows.size, k), dtype=np.int32)
    for r, i in enumerate(rows.tolist()):
        dist = np.zeros(Z.shape[0], dtype=np.float64)
        for j in range(Z.shape[1]):
            dist += (Z[:, j].astype(np.float64) - float(Z[i, j])) ** 2
        dist[i] = np.inf
        kth = np.partition(dist, k - 1)[k - 1]
        near = np.flatnonzero(dist <= kth)
        out[r] = near[np.lexsort((near, dist[near]))[:k]]
    return out


def morton_order(Z: np.ndarray) -> np.ndarray:
    """Track indices sorted by the Morton (Z-order) code of their latents: nearby tracks mostly end up nearby.

    Each coordinate is quantised on its own range to ``min(16, 63 // d)`` bits (the first 63 coordinates when
    d > 63) and the bits are interleaved into one uint64 code; ties keep index order.
    """
    n, d = Z.shape
    dims = min(d, 63)
    bits = min(16, 63 // dims)
    top = float(2**bits - 1)
    quantised = np.empty((n, dims), dtype=np.uint16)
    for j in range(dims):
        col = Z[:, j].astype(np.float64)
        lo, hi = float(col.min()), float(col.max())
        scale = top / (hi - lo) if hi > lo else 0.0
        quantised[:, j] = np.clip(np.nan_to_num((col - lo) * scale), 0, top).astype(np.uint16)
    code = np.zeros(n, dtype=np.uint64)
    one = np.uint64(1)
    for b in range(bits - 1, -1, -1):
        for j in range(dims):
            code <<= one
            code |= (quantised[:, j] >> b).astype(np.uint64) & one
    return np.argsort(code, kind="stable")
