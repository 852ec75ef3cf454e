"""(l) The neighbour index: the exact kd-tree table against the approximate HNSW tables (``world.index``).

For every catalog size of :attr:`Sizes.index_tracks` (synthetic catalog, PCA latents, d = 5, K = 32) and every
index (exact: :func:`envs.candidates.build_neighbour_table`; faiss, hnsw:
:func:`envs.ann_index.approximate_neighbour_table`, every core), one stage builds and queries the whole table in a
fresh subprocess: its wall and CPU seconds (the build and the queries together: what a world pays for its table)
and its peak RSS. Each is run once (a 10M-track HNSW build takes many minutes).

Recall@32 is the mean over rows of ``|approximate row ∩ exact row| / 32``. The exact rows come from a shared input
built once per size (``index-truth-<N>``): every row up to :data:`FULL_RECALL_MAX` tracks (the exact table
itself), above it a random sample of :data:`SAMPLE_ROWS` rows whose exact neighbours are found by a kd-tree query of
those rows only (so no two 10M tables are ever held). The recall is computed after the timed part, from the table
the stage built.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from music_rl.bench.inputs import catalog
from music_rl.bench.report import Target, make_row
from music_rl.bench.runner import Runner, StageFailed

NEIGHBOURS = 32
LATENT_DIM = 5
KINDS = ("exact", "faiss", "hnsw")
FULL_RECALL_MAX = 1_000_000  # up to this many tracks, recall over every row
SAMPLE_ROWS = 100_000  # above it, over this many random rows
RECALL_TARGET = 0.95


def bench_l(r: Runner) -> list[dict[str, Any]]:
    """Build + query seconds, CPU seconds and peak RSS of each index, and the approximate ones' recall@32."""
    rows: list[dict[str, Any]] = []
    for n in r.sizes.index_tracks:
        whats = {kind: f"neighbour index {kind}, N={n:,}, d={LATENT_DIM}, K={NEIGHBOURS}" for kind in KINDS}
        try:  # a failed stage gives its rows an error; the other sizes and indexes still run
            latents = str(catalog(r, n) / f"latents-d{LATENT_DIM}.npy")
            truth = r.prepared(f"index-truth-{n}", task_truth, latents=latents, k=NEIGHBOURS, seed=0)
        except StageFailed as err:
            rows.extend({"id": "l", "what": what, "error": str(err)} for what in whats.values())
            continue
        for kind, what in whats.items():
            try:
                res, cost = r.child(task_index, latents=latents, kind=kind, k=NEIGHBOURS, truth=str(truth))
            except StageFailed as err:
                rows.append({"id": "l", "what": what, "error": str(err)})
                continue
            params = {"n_tracks": n, "latent_dim": LATENT_DIM, "index": kind, "recall": res["recall"],
                      "recall_rows": res["recall_rows"], "cpu_s": res["cpu_s"], "threads": res["threads"],
                      "rss_before_mb": res["rss_before_mb"]}
            rows.append(make_row(
                "l", f"{what}: build + query", "s", [res["seconds"]], peak_rss_mb=cost.peak_rss_mb,
                detail=f"recall@{NEIGHBOURS} {res['recall']:.4f} over {res['recall_rows']:,} rows; "
                f"CPU {res['cpu_s']:.3g} s ({res['threads']} threads); "
                f"process RSS before the build {res['rss_before_mb']:.0f} MB", **params))
            if kind != "exact":
                rows.append(make_row(
                    "l", f"{what}: recall@{NEIGHBOURS}", "recall", [res["recall"]],
                    [Target("median", ">=", RECALL_TARGET, "")],
                    detail=f"over {res['recall_rows']:,} rows against the exact table", **params))
    return rows


def task_truth(out: str, latents: str, k: int, seed: int) -> dict[str, Any]:
    """The exact neighbours of every row (N <= FULL_RECALL_MAX) or of SAMPLE_ROWS random rows: rows.npy,
    table.npy."""
    Z = np.load(latents)
    n = Z.shape[0]
    if n <= FULL_RECALL_MAX:
        from envs.candidates import build_neighbour_table

        rows = np.arange(n)
        table = build_neighbour_table(Z, k)
    else:
        rows = np.sort(np.random.default_rng(seed).choice(n, SAMPLE_ROWS, replace=False))
        table = _kd_rows(Z, rows, k)
    folder = Path(out)
    folder.mkdir(parents=True)
    np.save(folder / "rows.npy", rows)
    np.save(folder / "table.npy", table)
    return {}


def _kd_rows(Z: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """The exact k nearest other tracks of ``rows`` (a kd-tree over every track, queried for those rows only; self
    removed by index, the (k + 1)-th kept when self is not among the first k + 1)."""
    from scipy.spatial import cKDTree

    data = np.ascontiguousarray(Z, dtype=np.float64)
    tree = cKDTree(data, leafsize=32, balanced_tree=False, compact_nodes=False)
    _, idx = tree.query(data[rows], k=k + 1, workers=-1)
    keep = idx != rows[:, None]
    keep[:, -1] &= ~keep.all(axis=1)  # self found: drop it; not found: drop the last result
    table: np.ndarray = idx[keep].reshape(rows.size, k).astype(np.int32)
    return table


def recall(table: np.ndarray, truth: np.ndarray) -> float:
    """Mean over rows of ``|table row ∩ truth row| / K`` (rows without repeated entries), in blocks."""
    k = truth.shape[1]
    hits = 0
    for start in range(0, truth.shape[0], 65_536):
        both = np.sort(np.concatenate([table[start : start + 65_536], truth[start : start + 65_536]], axis=1), axis=1)
        hits += int((both[:, 1:] == both[:, :-1]).sum())
    return float(hits / (truth.shape[0] * k))


def _rss_mb() -> float:
    """This process's peak resident memory so far, in MB."""
    import resource

    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def task_index(latents: str, kind: str, k: int, truth: str) -> dict[str, Any]:
    """Wall and CPU seconds of one index's whole table, then its recall@k against the exact rows of ``truth``."""
    import os

    Z = np.load(latents)
    before = _rss_mb()
    start, cpu = time.perf_counter(), time.process_time()
    if kind == "exact":
        from envs.candidates import build_neighbour_table

        table = build_neighbour_table(Z, k)
    else:
        from envs.ann_index import approximate_neighbour_table

        table = approximate_neighbour_table(Z, k, kind, seed=0)
    seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    rows = np.load(Path(truth) / "rows.npy")
    exact = np.load(Path(truth) / "table.npy", mmap_mode="r")
    return {"seconds": seconds, "cpu_s": cpu_s, "rss_before_mb": before, "threads": len(os.sched_getaffinity(0)),
            "recall": recall(table[rows], np.asarray(exact)), "recall_rows": int(rows.size)}
