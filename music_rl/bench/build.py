"""(c), (d), (e): building a world's parts at scale, on synthetic catalogs → physical normalisation → PCA
latents (:func:`music_rl.bench.inputs.catalog`).

c. the neighbour table (kd-tree, K = 32) for every catalog size and latent width;
d. VAE training, seconds per epoch (default VAE config, early stopping off, a warm-up epoch not counted);
e. reward propagation at the largest size: K-Means, then probe selection and decay.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from music_rl.bench.inputs import catalog
from music_rl.bench.report import Target, make_row
from music_rl.bench.runner import Runner

NEIGHBOURS = 32


def bench_c(r: Runner) -> list[dict[str, Any]]:
    """Neighbour table build (K = 32) for every catalog size and latent width; the targets on the largest at
    d = 5."""
    s = r.sizes
    rows = []
    for n in s.table_tracks:
        folder = catalog(r, n)
        for d in s.table_dims:
            res, cost = r.child(task_neighbours, latents=str(folder / f"latents-d{d}.npy"), k=NEIGHBOURS,
                                repeats=r.repeats)
            targets = ([Target("median", "<=", 10.0, "s"), Target("peak_rss_mb", "<=", 1024, "MB")]
                       if (n, d) == (max(s.table_tracks), 5) else [])
            rows.append(make_row(
                "c",
                f"neighbour table, N={n:,}, d={d}",
                "s",
                res["seconds"],
                targets,
                peak_rss_mb=cost.peak_rss_mb,
                detail=f"CPU {statistics.median(res['cpu_s']):.2f} s (all threads); "
                f"process RSS before the build {res['rss_before_mb']:.0f} MB",
                n_tracks=n,
                latent_dim=d,
                rss_before_mb=res["rss_before_mb"],
                cpu_s=res["cpu_s"],
            ))
    return rows


def bench_d(r: Runner) -> list[dict[str, Any]]:
    """VAE training seconds per epoch (default VAE config, early stopping off)."""
    rows = []
    for n in r.sizes.vae_rows:
        res, cost = r.child(task_vae, features=str(catalog(r, n) / "features.npy"), epochs=r.repeats)
        targets = [Target("median", "<=", 20.0, "s")] if n >= 1_000_000 else []
        rows.append(make_row(
            "d",
            f"VAE training, {n:,} rows",
            "s/epoch",
            res["epoch_s"],
            targets,
            peak_rss_mb=cost.peak_rss_mb,
            detail=f"CPU {statistics.median(res['epoch_cpu_s']):.2f} s/epoch; {res['threads']} torch thread(s); "
            f"first epoch {res['warmup_s']:.2f} s (warm-up, not counted)",
            n_rows=n,
            warmup_s=res["warmup_s"],
            cpu_s=res["epoch_cpu_s"],
        ))
    return rows


def bench_e(r: Runner) -> list[dict[str, Any]]:
    """Propagation at the largest size: K-Means + probe selection + decay."""
    n = r.sizes.propagation_tracks
    res, cost = r.child(task_propagation, latents=str(catalog(r, n) / "latents-d5.npy"), repeats=r.repeats)
    total = [a + b for a, b in zip(res["kmeans_s"], res["propagate_s"], strict=True)]
    kmeans, rest = statistics.median(res["kmeans_s"]), statistics.median(res["propagate_s"])
    return [make_row(
        "e",
        f"propagation (K-Means + decay), N={n:,}, d=5",
        "s",
        total,
        [Target("median", "<=", 30.0, "s")],
        peak_rss_mb=cost.peak_rss_mb,
        detail=f"K-Means {kmeans:.2f} s, probes + decay {rest * 1e3:.0f} ms, {res['n_clusters']} clusters; "
        f"CPU {statistics.median(res['cpu_s']):.2f} s (all threads)",
        n_tracks=n,
        **res,
    )]


def _rss_mb() -> float:
    """This process's peak resident memory so far, in MB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def task_neighbours(latents: str, k: int, repeats: int) -> dict[str, Any]:
    """Wall and CPU seconds of build_neighbour_table on saved latents."""
    from envs.candidates import build_neighbour_table

    Z = np.load(latents)
    before = _rss_mb()
    seconds, cpu_s = [], []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        build_neighbour_table(Z, k)
        seconds.append(time.perf_counter() - start)
        cpu_s.append(time.process_time() - cpu)
    return {"seconds": seconds, "cpu_s": cpu_s, "rss_before_mb": before}


def task_vae(features: str, epochs: int) -> dict[str, Any]:
    """Seconds per epoch of LatentEncoder.fit (default config, no early stop), after a warm-up epoch."""
    import torch

    from vae.config import VAEConfig
    from vae.encoder import LatentEncoder

    X = np.load(features)
    cfg = VAEConfig(epochs=epochs + 1, patience=epochs + 2)
    stamps = [(time.perf_counter(), time.process_time())]
    LatentEncoder(cfg, seed=0).fit(X, on_epoch=lambda epoch, metrics: stamps.append((time.perf_counter(),
                                                                                      time.process_time())))
    seconds, cpu_s = np.diff(np.array(stamps), axis=0).T.tolist()
    threads = cfg.num_threads or torch.get_num_threads()
    return {"epoch_s": seconds[1:], "epoch_cpu_s": cpu_s[1:], "warmup_s": seconds[0], "threads": threads}


def task_propagation(latents: str, repeats: int) -> dict[str, Any]:
    """K-Means, then probe selection + propagation of random probe rewards (default reward config)."""
    from envs.rewards import RewardConfig, fit_clusters, propagate, select_probes

    Z = np.load(latents)
    cfg = RewardConfig()
    kmeans_s, propagate_s, cpu_s = [], [], []
    for rep in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        labels, centroids = fit_clusters(Z, cfg.n_clusters, seed=rep)
        mid = time.perf_counter()
        probes = select_probes(Z, labels, centroids, cfg.probes_per_cluster, cfg.probe_selection)
        rewards = np.random.default_rng(rep).uniform(0.0, 1.0 + cfg.like_weight, size=probes.size)
        propagate(Z, labels, centroids, probes, rewards, cfg)
        kmeans_s.append(mid - start)
        propagate_s.append(time.perf_counter() - mid)
        cpu_s.append(time.process_time() - cpu)
    return {"kmeans_s": kmeans_s, "propagate_s": propagate_s, "cpu_s": cpu_s, "n_clusters": cfg.n_clusters}
