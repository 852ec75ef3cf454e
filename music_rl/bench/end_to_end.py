"""(g), (h), (i): whole trainings through ``scripts/train.py``, each timed once (they take minutes).

g. the default ``make train`` (the default config; quick: ``+experiment=tiny``);
h. a world of :attr:`Sizes.world_tracks <music_rl.bench.sizes.Sizes.world_tracks>` tracks end to end: catalog → VAE
   (one epoch) → neighbours → K-Means + propagation → one PPO rollout and update → evaluation → run folder;
i. ``make sweep``'s command line (joblib launcher), opt-in; its peak RSS is the largest process's.

Wall time, CPU time (the script and its reaped children) and peak RSS of the whole script; the stages' wall
times come from the run's ``run_info.json``.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from music_rl.bench.report import Target, make_row
from music_rl.bench.runner import ROOT, Measured, Runner

SWEEP_TIMEOUT_S = 4 * 3600.0


def train(r: Runner, name: str, overrides: Sequence[str], timeout_s: float,
          multirun: bool = False) -> tuple[Measured, Path]:
    """Run ``scripts/train.py`` (``-m`` for a sweep) into a fresh folder ``name`` of the work folder."""
    out = r.workdir / name
    shutil.rmtree(out, ignore_errors=True)
    where = f"hydra.sweep.dir={out}" if multirun else f"hydra.run.dir={out}"
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), *(["-m"] if multirun else []), *overrides, where]
    return r.script(name, cmd, timeout_s), out


def stages(run_dir: Path) -> str:
    """The stage wall times of a run's run_info.json, as text."""
    times = json.loads((run_dir / "run_info.json").read_text())["wall_time_s"]
    return ", ".join(f"{k} {v:.1f} s" for k, v in times.items())


def bench_g(r: Runner) -> list[dict[str, Any]]:
    """The default ``make train``: wall time and peak memory (run once)."""
    cost, run_dir = train(r, "train-default", r.sizes.train, timeout_s=r.timeout_s)
    return [make_row(
        "g",
        "default make train" + (" (quick: tiny config)" if r.sizes.train else ""),
        "s",
        [cost.wall_s],
        [Target("median", "<=", 300.0, "s"), Target("peak_rss_mb", "<=", 2048, "MB")],
        peak_rss_mb=cost.peak_rss_mb,
        detail=f"CPU {cost.cpu_s:.0f} s; {stages(run_dir)}",
        overrides=list(r.sizes.train),
        cpu_s=cost.cpu_s,
    )]


def bench_h(r: Runner) -> list[dict[str, Any]]:
    """A large world end to end through scripts/train.py (run once)."""
    n = r.sizes.world_tracks
    overrides = [f"data.n_tracks={n}", *r.sizes.world_train]
    cost, run_dir = train(r, "train-world", overrides, timeout_s=r.timeout_s)
    return [make_row(
        "h",
        f"world end to end, N={n:,} (1 VAE epoch, 1 PPO rollout + update, eval)",
        "s",
        [cost.wall_s],
        [Target("peak_rss_mb", "<=", 4096, "MB")],
        peak_rss_mb=cost.peak_rss_mb,
        detail=f"CPU {cost.cpu_s:.0f} s; {stages(run_dir)}",
        overrides=overrides,
        cpu_s=cost.cpu_s,
    )]


def bench_i(r: Runner) -> list[dict[str, Any]]:
    """``make sweep``: the joblib launcher's jobs (run once, opt-in)."""
    cost, sweep_dir = train(r, "sweep", r.sizes.sweep, timeout_s=SWEEP_TIMEOUT_S, multirun=True)
    jobs = sum(1 for _ in sweep_dir.glob("*/metrics.json"))
    return [make_row(
        "i",
        f"make sweep ({jobs} jobs, joblib, n_jobs=2)",
        "s",
        [cost.wall_s],
        [Target("median", "<=", 1800.0, "s")],
        peak_rss_mb=cost.peak_rss_mb,
        detail=f"{cost.wall_s / max(jobs, 1):.0f} s per job; CPU {cost.cpu_s:.0f} s; peak RSS: the largest process",
        cpu_s=cost.cpu_s,
        overrides=list(r.sizes.sweep),
        jobs=jobs,
    )]
