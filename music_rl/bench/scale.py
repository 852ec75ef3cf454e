"""(m) The scale curve: a run end to end at every catalog size of :attr:`Sizes.scale_tracks
<music_rl.bench.sizes.Sizes.scale_tracks>` (100k, 1M, 10M tracks; 100M with ``scale_tracks`` overridden), each
through ``scripts/train.py`` with the tiny budget of the issue (``vae.epochs=1 ppo.total_timesteps=2048``): the wall
time, CPU time and peak memory of the whole process (children reaped by it included), the wall time and the peak
memory so far of each stage (``run_info.json``), and for every stage the growth exponent ``b`` of ``time ~ N^b``:
the least-squares slope of log(CPU time) on log(N) over the sizes of at least 1M tracks (below, fixed costs
dominate); CPU time, which the machine's other load leaves alone (the neighbour stage's counts every thread).
An exponent above 1.15 is "faster than N log N" over this range (log N adds about 0.1 to the slope per decade).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from music_rl.bench.end_to_end import train
from music_rl.bench.report import Target, make_row
from music_rl.bench.runner import Runner

STAGES = ("catalog", "vae", "neighbours", "world", "ppo", "evaluation")  # world includes neighbours
N_LOG_N_SLOPE = 1.15  # the slope of N log N between 1M and 100M is about 1.1


def growth_exponent(sizes: list[int], seconds: list[float]) -> float | None:
    """The least-squares slope of log(seconds) on log(size), over the sizes of at least 1M tracks (the two
    smallest sizes when fewer than two reach 1M); None with fewer than two positive points."""
    points = [(n, t) for n, t in zip(sizes, seconds, strict=True) if t > 0]
    large = [p for p in points if p[0] >= 1_000_000]
    points = large if len(large) >= 2 else points
    if len(points) < 2:
        return None
    xs, ys = [math.log(n) for n, _ in points], [math.log(t) for _, t in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return None if var == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


def bench_m(r: Runner) -> list[dict[str, Any]]:
    """A run end to end at every size of the scale curve, then the growth exponent of every stage."""
    rows, measured = [], []
    for n in r.sizes.scale_tracks:
        overrides = [f"data.n_tracks={n}", *r.sizes.world_train]
        cost, run_dir = train(r, f"scale-{n}", overrides, timeout_s=r.timeout_s)
        info = json.loads((Path(run_dir) / "run_info.json").read_text())
        walls, cpus, peaks = info["wall_time_s"], info["cpu_time_s"], info.get("peak_rss_mb", {})
        measured.append((n, cpus))
        targets = {10_000_000: [Target("median", "<=", 180.0, "s"), Target("peak_rss_mb", "<=", 4096, "MB")],
                   100_000_000: [Target("median", "<=", 3600.0, "s"), Target("peak_rss_mb", "<=", 20480, "MB")]}
        rows.append(make_row(
            "m",
            f"run end to end, N={n:,} (1 VAE epoch, 1 PPO rollout + update, eval)",
            "s",
            [cost.wall_s],
            targets.get(n, []),
            peak_rss_mb=cost.peak_rss_mb,
            detail=f"CPU {cost.cpu_s:.0f} s; stage wall s / CPU s (peak MB so far): " + ", ".join(
                f"{s} {walls[s]:.1f} / {cpus[s]:.1f} ({peaks.get(s, 0):.0f})" for s in STAGES if s in walls),
            n_tracks=n,
            overrides=overrides,
            cpu_s=cost.cpu_s,
            stage_wall_s={s: walls.get(s) for s in STAGES},
            stage_cpu_s={s: cpus.get(s) for s in STAGES},
            stage_peak_rss_mb={s: peaks.get(s) for s in STAGES},
        ))
    sizes = [n for n, _ in measured]
    for stage in STAGES:
        times = [float(cpus.get(stage, 0.0)) for _, cpus in measured]
        slope = growth_exponent(sizes, times)
        if slope is None:
            continue
        rows.append(make_row(
            "m",
            f"growth exponent of stage {stage} (CPU time ~ N^b)",
            "b",
            [slope],
            [Target("median", "<=", N_LOG_N_SLOPE, "")],
            detail="CPU " + ", ".join(f"{n:,}: {t:.1f} s" for n, t in zip(sizes, times, strict=True)),
            stage=stage,
            sizes=sizes,
            seconds=times,
        ))
    return rows
