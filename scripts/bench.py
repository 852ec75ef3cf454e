#!/usr/bin/env python
"""Speed, memory and scale benchmarks of music-rl: writes ``bench.json`` and prints a Markdown table.

    python scripts/bench.py                       # (a)..(h); (i), the 18-job sweep, is opt-in
    python scripts/bench.py --only a,b --repeats 5
    python scripts/bench.py --with-sweep          # everything, (i) included (about 12 min more on 2 idle cores)
    python scripts/bench.py --quick               # tiny sizes: checks the benchmark, not the code's speed

Measurements (ids as in the benchmarks issue; targets in :data:`MEASUREMENTS`):

a. PPO training throughput (env steps/s) on MusicRec-v0 divided by the same PPO on a null env with the
   same spaces in SB3's stock wiring (DummyVecEnv over Monitor); both train side by side in one process,
   one rollout + update at a time, so a ratio is robust on a noisy machine. MusicRec-v0 runs in each
   ``ppo.vec_env`` (dummy, vectorized, batched; for the default candidates mode with 8 envs also subproc,
   and with 64 envs vectorized and batched, where stepping with numpy pays). The ratio is of steps per CPU
   second of the process (other processes' load does not enter it), except for subproc (wall clock: its
   envs run in worker processes);
b. the CPU cost of ``env.step`` per observation mode and reward source, resets timed apart (wall clock
   in the detail);
c. the neighbour table build (kd-tree, K = 32) on synthetic catalogs → PCA latents;
d. VAE training, seconds per epoch;
e. reward propagation: K-Means, probe selection and decay;
f. one next-track recommendation from a loaded run folder: the policy forward on the current
   observation, then the pick's candidates and observation (the run's env, propagated rewards);
g. the default ``make train`` (``scripts/train.py`` with the default config);
h. a 1M-track world end to end through ``scripts/train.py`` (one VAE epoch, one PPO rollout and update);
i. ``make sweep`` (18 jobs, joblib launcher).

Every stage runs in a fresh subprocess, so its peak resident memory (``ru_maxrss`` from ``os.wait4``, the
whole process: interpreter and imports included) is its own. Timings are repeated ``--repeats`` times and
reported as median and min–max; "load" is the 1-minute load average when the stage ended. Inputs shared
by stages (synthetic catalogs, a 1M-track world with a tiny PPO) are built once per run in the work
folder (``--workdir`` keeps and reuses them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FORMAT_VERSION = 1
SWEEP = (
    "vae.latent_dim=2,4,5",
    "reward.like_weight=10,100",
    "reward.decay=linear,exponential,gaussian",
    "env.reward_source=propagated",
)  # the overrides of `make sweep` (tests/test_bench.py checks)
TINY_TRAIN = (
    "data.n_tracks=1500",
    "vae.epochs=2",
    "ppo.total_timesteps=1024",
    "ppo.n_envs=2",
    "ppo.n_steps=256",
    "ppo.batch_size=256",
    "ppo.n_epochs=1",
    "eval.n_episodes=4",
    "eval.eval_freq=0",
    "eval.periodic_episodes=2",
    "ppo.progress_bar=false",
    "reward.n_clusters=8",
)


@dataclass(frozen=True)
class Sizes:
    """Problem sizes of every measurement (the issue's; :data:`QUICK` shrinks them for the smoke test)."""

    ppo_tracks: int = 20_000  # (a) the default catalog size
    ppo_n_envs: tuple[int, ...] = (1, 8)
    ppo_vec_envs: tuple[str, ...] = ("dummy", "vectorized", "batched")  # (a) for every mode and n_envs
    ppo_subproc: tuple[tuple[str, int], ...] = (("candidates", 8),)  # (a) (mode, n_envs) also in subproc
    ppo_many: tuple[tuple[str, int], ...] = (("candidates", 64),)  # (a) (mode, n_envs): vectorized vs batched
    ppo_rollouts: int = 3  # (a) rollouts + updates timed per measurement
    ppo: dict[str, int] = field(default_factory=dict)  # PPOConfig overrides (none: the defaults)
    step_tracks: tuple[int, ...] = (30_000, 1_000_000)
    step_count: int = 20_000  # (b) steps per timing
    table_tracks: tuple[int, ...] = (30_000, 300_000, 1_000_000)
    table_dims: tuple[int, ...] = (2, 4, 5)
    vae_rows: tuple[int, ...] = (30_000, 1_000_000)
    propagation_tracks: int = 1_000_000
    recommend_tracks: int = 1_000_000
    recommend_requests: int = 5_000  # (f) requests per timing
    prepared_ppo_steps: int = 2_048  # the tiny PPO of the prepared run folder
    train: tuple[str, ...] = ()  # (g) overrides: none, the default job
    world_tracks: int = 1_000_000  # (h)
    world_train: tuple[str, ...] = (
        "vae.epochs=1",
        "ppo.total_timesteps=2048",
        "eval.eval_freq=0",
        "ppo.progress_bar=false",
    )
    sweep: tuple[str, ...] = SWEEP


QUICK = Sizes(
    ppo_tracks=1_000,
    ppo_n_envs=(2,),
    ppo_rollouts=1,
    ppo={"n_steps": 64, "batch_size": 64, "n_epochs": 1},
    ppo_subproc=(),
    ppo_many=(),
    step_tracks=(2_000,),
    step_count=2_000,
    table_tracks=(2_000,),
    table_dims=(2, 5),
    vae_rows=(2_000,),
    propagation_tracks=2_000,
    recommend_tracks=2_000,
    recommend_requests=200,
    prepared_ppo_steps=128,
    train=TINY_TRAIN,
    world_tracks=2_000,
    world_train=TINY_TRAIN[1:],
    sweep=("vae.latent_dim=2,5", *TINY_TRAIN),
)


@dataclass
class Target:
    """A bound on one field of a result row: ``field op limit`` (op ``<=`` or ``>=``)."""

    field: str
    op: str
    limit: float
    unit: str

    def met(self, row: dict[str, Any]) -> bool | None:
        """Whether the row's field meets the bound (None when the field is missing)."""
        value = row.get(self.field)
        if value is None:
            return None
        return value <= self.limit if self.op == "<=" else value >= self.limit

    def __str__(self) -> str:
        what = "peak " if self.field == "peak_rss_mb" else ""
        return f"{what}{'≤' if self.op == '<=' else '≥'} {self.limit:g} {self.unit}".strip()


# ---------------------------------------------------------------------------------------------- results
def make_row(
    mid: str,
    what: str,
    unit: str,
    values: Sequence[float],
    targets: Sequence[Target] = (),
    peak_rss_mb: float | None = None,
    detail: str = "",
    **params: Any,
) -> dict[str, Any]:
    """One result: median and min–max of ``values``, the stage's peak memory, its targets and whether met."""
    vals = [float(v) for v in values]
    row: dict[str, Any] = {
        "id": mid,
        "what": what,
        "unit": unit,
        "median": statistics.median(vals),
        "min": min(vals),
        "max": max(vals),
        "values": vals,
        "detail": detail,
        "params": params,
        "peak_rss_mb": None if peak_rss_mb is None else round(peak_rss_mb, 1),
        "load_1min": round(os.getloadavg()[0], 2),
    }
    row["target"] = "; ".join(str(t) for t in targets)
    verdicts = [t.met(row) for t in targets]
    row["met"] = None if not targets or None in verdicts else all(verdicts)
    return row


def _fmt(value: float | None) -> str:
    """A number with about three significant digits."""
    if value is None:
        return "—"
    if value == 0 or 0.01 <= abs(value) < 1e5:
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return f"{value:.2e}"


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a Markdown table (median, min–max over repeats, peak memory, target, verdict)."""
    lines = [
        "| # | measurement | median | min–max | n | peak RSS (MB) | target | met | load | detail |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(
                f"| {r['id']} | {r['what']} | — | — | — | — | {r.get('target', '')} | error | — | {r['error']} |"
            )
            continue
        met = {True: "yes", False: "**no**", None: ""}[r["met"]]
        lines.append(
            f"| {r['id']} | {r['what']} | {_fmt(r['median'])} {r['unit']} | {_fmt(r['min'])}–"
            f"{_fmt(r['max'])} | {len(r['values'])} | {_fmt(r['peak_rss_mb'])} | {r['target']} | "
            f"{met} | {r['load_1min']} | {r['detail']} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, versions and the load average: what the figures depend on."""

    def proc_field(path: str, key: str) -> str:
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return "unknown"

    from importlib import metadata

    from agents.run_info import git_commit

    mem_kb = proc_field("/proc/meminfo", "MemTotal").split()[0]
    return {
        "cpu_model": proc_field("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "memory_gb": round(int(mem_kb) / 2**20, 1) if mem_kb.isdigit() else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        **{
            name: metadata.version(name)
            for name in ("torch", "numpy", "scipy", "scikit-learn", "stable-baselines3", "gymnasium")
        },
        "git_commit": git_commit(ROOT),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }


# ------------------------------------------------------------------------------------------ subprocesses
class StageFailed(RuntimeError):
    """A benchmark subprocess exited non-zero or timed out."""


@dataclass
class Measured:
    """What a subprocess (and its reaped children) cost: exit code, wall and CPU seconds, peak RSS (MB)."""

    code: int
    wall_s: float
    cpu_s: float
    peak_rss_mb: float


def run_measured(cmd: Sequence[str], log: Path, timeout_s: float) -> Measured:
    """Run ``cmd`` in ``ROOT`` (output to ``log``); its wall time and peak RSS from ``os.wait4``."""
    with open(log, "w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() - start > timeout_s:
                    raise TimeoutError
                time.sleep(0.05)
        except BaseException:  # timeout or Ctrl-C: stop the process group this call started
            os.killpg(proc.pid, signal.SIGKILL)
            _, status, usage = os.wait4(proc.pid, 0)
            if not isinstance(sys.exc_info()[1], TimeoutError):
                raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Measured(
        proc.returncode, time.perf_counter() - start, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024
    )


class Runner:
    """Starts child stages of this script and shared inputs in the work folder."""

    def __init__(self, workdir: Path, sizes: Sizes, repeats: int, timeout_s: float) -> None:
        self.workdir, self.sizes, self.repeats, self.timeout_s = workdir, sizes, repeats, timeout_s
        self.logs = workdir / "logs" / time.strftime("%Y%m%d-%H%M%S")
        self.logs.mkdir(parents=True, exist_ok=True)
        self._count = 0

    def child(self, task: str, **args: Any) -> tuple[dict[str, Any], Measured]:
        """Run ``task`` of :data:`TASKS` in a fresh interpreter; its JSON result and what it cost."""
        self._count += 1
        stem = self.logs / f"{self._count:02d}-{task}"
        result = stem.with_suffix(".json")
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            task,
            "--child-args",
            json.dumps(args),
            "--child-out",
            str(result),
        ]
        cost = run_measured(cmd, stem.with_suffix(".log"), self.timeout_s)
        if cost.code != 0 or not result.is_file():
            raise StageFailed(f"{task} exited {cost.code}; see {stem.with_suffix('.log')}")
        return json.loads(result.read_text()), cost

    def prepared(self, name: str, task: str, **args: Any) -> Path:
        """A shared input folder ``name``, built by ``task`` unless present (under a temp name, renamed)."""
        final = self.workdir / name
        if not final.is_dir():
            tmp = self.workdir / f"{name}.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            self.child(task, out=str(tmp), **args)
            tmp.rename(final)
        return final

    def catalog(self, n: int) -> Path:
        """Features and PCA latents (d = 2, 4, 5) of a synthetic catalog of ``n`` tracks."""
        return self.prepared(f"catalog-{n}", "prepare_catalog", n=n, dims=[2, 4, 5])

    def run_folder(self, n: int) -> Path:
        """A run folder over a synthetic ``n``-track world (PCA latents) with a tiny candidate_scorer PPO."""
        return self.prepared(f"run-{n}", "prepare_run", n=n, ppo=self.sizes.ppo, steps=self.sizes.prepared_ppo_steps)


# ------------------------------------------------------------------------------------- the measurements
def bench_a(r: Runner) -> list[dict[str, Any]]:
    """PPO throughput on MusicRec-v0 / on a null env, every observation mode, n_envs 1 and 8."""
    from envs.music_env import OBSERVATIONS

    s = r.sizes
    variants = [(obs, n, vec) for obs in OBSERVATIONS for n in s.ppo_n_envs for vec in s.ppo_vec_envs]
    variants += [(obs, n, "subproc") for obs, n in s.ppo_subproc]
    variants += [(obs, n, vec) for obs, n in s.ppo_many for vec in ("vectorized", "batched")]
    res, _ = r.child(
        "throughput", n=s.ppo_tracks, variants=variants, rollouts=s.ppo_rollouts, ppo=s.ppo, repeats=r.repeats
    )
    rows = []
    for m in res["measurements"]:
        wall = [a / b for a, b in zip(m["real"], m["null"], strict=True)]
        cpu = [a / b for a, b in zip(m["real_cpu"], m["null_cpu"], strict=True)]
        # In-process envs: steps per CPU second of the training process, immune to other processes' load.
        # Subproc: wall clock, since its envs spend CPU in worker processes.
        by_cpu = m["vec_env"] != "subproc"
        other = (
            f"wall clock {statistics.median(wall):.3f}: {statistics.median(m['real']):.0f} vs "
            f"{statistics.median(m['null']):.0f} steps/s"
            if by_cpu
            else f"{statistics.median(m['real']):.0f} vs {statistics.median(m['null']):.0f} steps/s"
        )
        rows.append(
            make_row(
                "a",
                f"PPO steps/s MusicRec / null, {m['observation']}, n_envs={m['n_envs']}, {m['vec_env']} "
                f"({'CPU time' if by_cpu else 'wall clock'})",
                "×",
                cpu if by_cpu else wall,
                [Target("median", ">=", 0.95, "")],
                detail=f"{m['policy']}; {other}",
                clock="cpu" if by_cpu else "wall",
                **{
                    k: m[k]
                    for k in (
                        "observation",
                        "n_envs",
                        "vec_env",
                        "policy",
                        "steps",
                        "real",
                        "null",
                        "real_cpu",
                        "null_cpu",
                    )
                },
            )
        )
    return rows


def bench_b(r: Runner) -> list[dict[str, Any]]:
    """Raw env.step per observation mode and reward source, per catalog size (CPU time: see detail)."""
    rows = []
    for n in r.sizes.step_tracks:
        res, cost = r.child("env_step", run=str(r.run_folder(n)), steps=r.sizes.step_count, repeats=r.repeats)
        for m in res["measurements"]:
            rows.append(
                make_row(
                    "b",
                    f"env.step, {m['observation']}, {m['reward_source']}, N={n:,} (CPU time)",
                    "µs",
                    m["cpu_us"],
                    [Target("median", "<=", 10.0, "µs")],
                    peak_rss_mb=cost.peak_rss_mb,
                    detail=f"wall clock {statistics.median(m['step_us']):.1f} µs; reset "
                    f"{statistics.median(m['reset_us']):.0f} µs; {m['episodes']} episodes per timing",
                    n_tracks=n,
                    **{k: m[k] for k in ("observation", "reward_source", "step_us", "reset_us", "episodes")},
                )
            )
    return rows


def bench_c(r: Runner) -> list[dict[str, Any]]:
    """Neighbour table build (K = 32) for every catalog size and latent width."""
    s = r.sizes
    rows = []
    for n in s.table_tracks:
        folder = r.catalog(n)
        for d in s.table_dims:
            res, cost = r.child("neighbours", latents=str(folder / f"latents-d{d}.npy"), k=32, repeats=r.repeats)
            targets = (
                [Target("median", "<=", 10.0, "s"), Target("peak_rss_mb", "<=", 1024, "MB")]
                if (n, d) == (max(s.table_tracks), 5)
                else []
            )
            rows.append(
                make_row(
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
                )
            )
    return rows


def bench_d(r: Runner) -> list[dict[str, Any]]:
    """VAE training seconds per epoch (default VAE config, early stopping off)."""
    rows = []
    for n in r.sizes.vae_rows:
        res, cost = r.child("vae", features=str(r.catalog(n) / "features.npy"), epochs=r.repeats)
        targets = [Target("median", "<=", 20.0, "s")] if n >= 1_000_000 else []
        rows.append(
            make_row(
                "d",
                f"VAE training, {n:,} rows",
                "s/epoch",
                res["epoch_s"],
                targets,
                peak_rss_mb=cost.peak_rss_mb,
                detail=f"CPU {statistics.median(res['epoch_cpu_s']):.2f} s/epoch; "
                f"{res['threads']} torch thread(s); first epoch {res['warmup_s']:.2f} s "
                "(warm-up, not counted)",
                n_rows=n,
                warmup_s=res["warmup_s"],
                cpu_s=res["epoch_cpu_s"],
            )
        )
    return rows


def bench_e(r: Runner) -> list[dict[str, Any]]:
    """Propagation at the largest size: K-Means + probe selection + decay."""
    n = r.sizes.propagation_tracks
    res, cost = r.child("propagation", latents=str(r.catalog(n) / "latents-d5.npy"), repeats=r.repeats)
    total = [a + b for a, b in zip(res["kmeans_s"], res["propagate_s"], strict=True)]
    kmeans, rest = statistics.median(res["kmeans_s"]), statistics.median(res["propagate_s"])
    return [
        make_row(
            "e",
            f"propagation (K-Means + decay), N={n:,}, d=5",
            "s",
            total,
            [Target("median", "<=", 30.0, "s")],
            peak_rss_mb=cost.peak_rss_mb,
            detail=f"K-Means {kmeans:.2f} s, probes + decay {rest * 1e3:.0f} ms, "
            f"{res['n_clusters']} clusters; CPU {statistics.median(res['cpu_s']):.2f} s "
            "(all threads)",
            n_tracks=n,
            **res,
        )
    ]


def bench_f(r: Runner) -> list[dict[str, Any]]:
    """Next-track recommendation latency from a loaded run folder."""
    n = r.sizes.recommend_tracks
    res, cost = r.child("recommend", run=str(r.run_folder(n)), requests=r.sizes.recommend_requests, repeats=r.repeats)
    rows = []
    for m in res["measurements"]:
        for q in ("p50", "p99"):
            targets = [Target("median", "<=", 2.0, "ms")] if q == "p99" else []
            cpu = statistics.median(m[f"cpu_{q}_ms"])
            rows.append(
                make_row(
                    "f",
                    f"next-track request, {m['path']}, N={n:,}: {q}",
                    "ms",
                    m[f"{q}_ms"],
                    targets,
                    peak_rss_mb=cost.peak_rss_mb,
                    n_tracks=n,
                    path=m["path"],
                    cpu_ms=m[f"cpu_{q}_ms"],
                    detail=f"{m['detail']}; wall clock; CPU time {q} {cpu:.3f} ms",
                )
            )
    rows.append(
        make_row(
            "f",
            f"inference.recommend() per step, N={n:,}",
            "ms",
            res["recommend_step_ms"],
            peak_rss_mb=cost.peak_rss_mb,
            detail="mean per step of a 20-step session (env + listener + labels)",
            n_tracks=n,
        )
    )
    return rows


def _train(
    r: Runner, name: str, overrides: Sequence[str], timeout_s: float, multirun: bool = False
) -> tuple[Measured, Path]:
    """Run ``scripts/train.py`` (``-m`` for a sweep) into a fresh folder of the work folder."""
    out = r.workdir / name
    shutil.rmtree(out, ignore_errors=True)
    where = f"hydra.sweep.dir={out}" if multirun else f"hydra.run.dir={out}"
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), *(["-m"] if multirun else []), *overrides, where]
    log = r.logs / f"{name}.log"
    cost = run_measured(cmd, log, timeout_s)
    if cost.code != 0:
        raise StageFailed(f"scripts/train.py {' '.join(overrides)} exited {cost.code}; see {log}")
    return cost, out


def _stages(run_dir: Path) -> str:
    """The stage wall times of a run's run_info.json, as text."""
    times = json.loads((run_dir / "run_info.json").read_text())["wall_time_s"]
    return ", ".join(f"{k} {v:.1f} s" for k, v in times.items())


def bench_g(r: Runner) -> list[dict[str, Any]]:
    """The default ``make train``: wall time and peak memory (run once: it takes minutes)."""
    cost, run_dir = _train(r, "train-default", r.sizes.train, timeout_s=r.timeout_s)
    return [
        make_row(
            "g",
            "default make train" + (" (quick: tiny config)" if r.sizes.train else ""),
            "s",
            [cost.wall_s],
            [Target("median", "<=", 300.0, "s"), Target("peak_rss_mb", "<=", 2048, "MB")],
            peak_rss_mb=cost.peak_rss_mb,
            detail=f"CPU {cost.cpu_s:.0f} s; {_stages(run_dir)}",
            overrides=list(r.sizes.train),
            cpu_s=cost.cpu_s,
        )
    ]


def bench_h(r: Runner) -> list[dict[str, Any]]:
    """A 1M-track world end to end through scripts/train.py (run once)."""
    n = r.sizes.world_tracks
    overrides = [f"data.n_tracks={n}", *r.sizes.world_train]
    cost, run_dir = _train(r, "train-world", overrides, timeout_s=r.timeout_s)
    return [
        make_row(
            "h",
            f"world end to end, N={n:,} (1 VAE epoch, 1 PPO rollout + update, eval)",
            "s",
            [cost.wall_s],
            [Target("peak_rss_mb", "<=", 4096, "MB")],
            peak_rss_mb=cost.peak_rss_mb,
            detail=f"CPU {cost.cpu_s:.0f} s; {_stages(run_dir)}",
            overrides=overrides,
            cpu_s=cost.cpu_s,
        )
    ]


def bench_i(r: Runner) -> list[dict[str, Any]]:
    """``make sweep``: the joblib launcher's 18 jobs (run once, opt-in)."""
    cost, sweep_dir = _train(r, "sweep", r.sizes.sweep, timeout_s=4 * 3600, multirun=True)
    jobs = sum(1 for _ in sweep_dir.glob("*/metrics.json"))
    return [
        make_row(
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
        )
    ]


MEASUREMENTS: dict[str, tuple[str, Callable[[Runner], list[dict[str, Any]]]]] = {
    "a": ("PPO throughput ratio vs a null env (≥ 0.95)", bench_a),
    "b": ("raw env step (≤ 10 µs)", bench_b),
    "c": ("neighbour table build (1M × d=5: ≤ 10 s, ≤ 1 GB)", bench_c),
    "d": ("VAE seconds per epoch (1M rows ≤ 20 s)", bench_d),
    "e": ("propagation at 1M (≤ 30 s)", bench_e),
    "f": ("recommendation latency, 1M catalog (p99 ≤ 2 ms)", bench_f),
    "g": ("default make train (≤ 5 min, ≤ 2 GB)", bench_g),
    "h": ("1M-track world end to end (≤ 4 GB)", bench_h),
    "i": ("make sweep, 18 jobs (≤ 30 min)", bench_i),
}
DEFAULT_ONLY = "abcdefgh"


# ----------------------------------------------------------------------------- child tasks (subprocess)
def _rss_mb() -> float:
    """This process's peak resident memory so far, in MB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def task_prepare_catalog(out: str, n: int, dims: list[int]) -> dict[str, Any]:
    """Synthetic catalog → physical normalisation → features.npy and PCA latents-d{d}.npy."""
    from envs.catalog import Normaliser, synthetic_catalog
    from envs.world import pca_latents

    folder = Path(out)
    folder.mkdir(parents=True)
    catalog = synthetic_catalog(n, seed=0)
    features = Normaliser("physical").fit(catalog.raw).transform(catalog.raw)
    np.save(folder / "features.npy", features)
    for d in dims:
        np.save(folder / f"latents-d{d}.npy", pca_latents(features, d))
    return {}


def task_prepare_run(out: str, n: int, ppo: dict[str, int], steps: int) -> dict[str, Any]:
    """A run folder (.hydra/config.yaml, world/, ppo.zip): PCA-latent world, a tiny candidate_scorer PPO."""
    import torch
    from omegaconf import OmegaConf

    from agents.config import TrainConfig
    from agents.ppo import PPOConfig, build_model, make_vec_env
    from envs.world import synthetic_world

    torch.set_num_threads(1)
    folder = Path(out)
    cfg = TrainConfig()
    cfg.data.n_tracks = n
    cfg.ppo = PPOConfig(**ppo, total_timesteps=steps, progress_bar=False)
    world = synthetic_world(n, cfg.vae.latent_dim, seed=0, env_cfg=cfg.env)
    world.save(folder / "world")
    venv = make_vec_env(world, cfg.env, None, cfg.ppo.n_envs, "dummy", seed=0)
    model = build_model(cfg.ppo, cfg.env, venv, world, seed=0)
    model.learn(steps)
    model.save(folder / "ppo.zip")
    (folder / ".hydra").mkdir()
    OmegaConf.save(OmegaConf.structured(cfg), folder / ".hydra" / "config.yaml")
    return {}


class NullEnv(gym.Env):
    """MusicRec-v0's spaces and session length with a trivially cheap step: the throughput baseline of (a).

    Observations are constant zeros, rewards zero; an episode is truncated after ``length`` steps.
    """

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, length: int) -> None:
        super().__init__()
        self.observation_space, self.action_space, self._length = observation_space, action_space, length
        self._obs = np.zeros(observation_space.shape, dtype=np.float32)
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """Start an episode: the zero observation."""
        super().reset(seed=seed)
        self._t = 0
        return self._obs.copy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Zero reward, the zero observation; truncated after ``length`` steps."""
        self._t += 1
        return self._obs.copy(), 0.0, False, self._t >= self._length, {}


def task_throughput(
    n: int, variants: list[list[Any]], rollouts: int, ppo: dict[str, int], repeats: int
) -> dict[str, Any]:
    """(a): steps/s of PPO.learn on MusicRec-v0 (each variant) and on the null env, per wall and CPU second.

    Both models train side by side, one rollout + update at a time in ABBA order; a repeat's rate is its
    median chunk's.
    """
    import torch
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    from agents.ppo import PPOConfig, build_model, make_vec_env
    from envs.music_env import EnvConfig, MusicRecEnv
    from envs.world import synthetic_world

    torch.set_num_threads(1)  # as agents.pipeline.run
    world = synthetic_world(n, 5, seed=0)

    def venv(kind: str, vec_env: str, env_cfg: EnvConfig, n_env: int) -> Any:
        if kind == "null":
            probe = MusicRecEnv(world, env_cfg)
            spaces = (probe.observation_space, probe.action_space, env_cfg.session_length)
            null = DummyVecEnv([lambda: Monitor(NullEnv(*spaces))] * n_env)
            null.seed(0)
            return null
        return make_vec_env(world, env_cfg, None, n_env, vec_env, seed=0)

    measurements = []
    for observation, n_env, vec_env in variants:
        env_cfg = EnvConfig(observation=observation)
        policy = "mlp" if observation == "seed" else "candidate_scorer"
        cfg = PPOConfig(policy=policy, progress_bar=False, **ppo)
        chunk = cfg.n_steps * n_env  # one rollout and one update
        models = {
            kind: build_model(cfg, env_cfg, venv(kind, vec_env, env_cfg, n_env), world, seed=0)
            for kind in ("real", "null")
        }
        for model in models.values():
            model.learn(chunk)  # warm-up: first calls, allocations
        rates: dict[str, list[float]] = {key: [] for key in ("real", "null", "real_cpu", "null_cpu")}
        for rep in range(repeats):
            wall: dict[str, list[float]] = {"real": [], "null": []}
            cpu: dict[str, list[float]] = {"real": [], "null": []}
            for r in range(rollouts):  # alternate chunk by chunk, ABBA: load changes hit both alike
                for kind in ("real", "null") if (rep * rollouts + r) % 2 == 0 else ("null", "real"):
                    w0, c0 = time.perf_counter(), time.process_time()
                    models[kind].learn(chunk, reset_num_timesteps=False)
                    wall[kind].append(time.perf_counter() - w0)
                    cpu[kind].append(time.process_time() - c0)
            for kind in ("real", "null"):
                rates[kind].append(chunk / statistics.median(wall[kind]))
                rates[f"{kind}_cpu"].append(chunk / statistics.median(cpu[kind]))
        for model in models.values():
            model.env.close()
        measurements.append(
            {
                "observation": observation,
                "n_envs": n_env,
                "vec_env": vec_env,
                "policy": policy,
                "steps": chunk * rollouts,
                **rates,
            }
        )
    return {"measurements": measurements}


def task_env_step(run: str, steps: int, repeats: int) -> dict[str, Any]:
    """(b): µs per env.step (random actions; resets timed apart) per observation mode and reward source."""
    from envs.music_env import OBSERVATIONS, REWARD_SOURCES, EnvConfig, MusicRecEnv
    from envs.world import World

    world = World.load(Path(run) / "world")
    measurements = []
    for observation in OBSERVATIONS:
        for source in REWARD_SOURCES:
            env = MusicRecEnv(world, EnvConfig(observation=observation, reward_source=source))
            actions = np.random.default_rng(0).integers(env.action_space.n, size=steps).tolist()
            env.reset(seed=0)
            _time_steps(env, actions[: steps // 10])  # warm-up: the listener's session table, caches
            step_us, cpu_us, reset_us, episodes = [], [], [], 0
            for _ in range(repeats):
                wall, cpu, reset, episodes = _time_steps(env, actions)
                step_us.append(wall)
                cpu_us.append(cpu)
                reset_us.append(reset)
            measurements.append(
                {
                    "observation": observation,
                    "reward_source": source,
                    "step_us": step_us,
                    "cpu_us": cpu_us,
                    "reset_us": reset_us,
                    "episodes": episodes,
                }
            )
    return {"measurements": measurements}


def _time_steps(env: Any, actions: list[int]) -> tuple[float, float, float, int]:
    """Step ``env`` through ``actions``: µs per step without resets (wall, CPU), µs per reset, episodes."""
    clock, step, reset = time.perf_counter, env.step, env.reset
    in_resets, in_resets_cpu, episodes = 0.0, 0.0, 0
    start, start_cpu = clock(), time.thread_time()
    for a in actions:
        _, _, terminated, truncated, _ = step(a)
        if terminated or truncated:
            t0, c0 = clock(), time.thread_time()
            reset()
            in_resets += clock() - t0
            in_resets_cpu += time.thread_time() - c0
            episodes += 1
    total, total_cpu = clock() - start, time.thread_time() - start_cpu
    per_step = 1e6 / len(actions)
    return (
        (total - in_resets) * per_step,
        (total_cpu - in_resets_cpu) * per_step,
        in_resets / max(episodes, 1) * 1e6,
        episodes,
    )


def task_neighbours(latents: str, k: int, repeats: int) -> dict[str, Any]:
    """(c): wall and CPU seconds of build_neighbour_table on saved latents."""
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
    """(d): seconds per epoch of LatentEncoder.fit (default config, no early stop), after a warm-up epoch."""
    import torch

    from vae.config import VAEConfig
    from vae.encoder import LatentEncoder

    X = np.load(features)
    cfg = VAEConfig(epochs=epochs + 1, patience=epochs + 2)
    stamps = [(time.perf_counter(), time.process_time())]
    LatentEncoder(cfg, seed=0).fit(
        X, on_epoch=lambda epoch, metrics: stamps.append((time.perf_counter(), time.process_time()))
    )
    seconds, cpu_s = np.diff(np.array(stamps), axis=0).T.tolist()
    threads = cfg.num_threads or torch.get_num_threads()
    return {"epoch_s": seconds[1:], "epoch_cpu_s": cpu_s[1:], "warmup_s": seconds[0], "threads": threads}


def task_propagation(latents: str, repeats: int) -> dict[str, Any]:
    """(e): K-Means, then probe selection + propagation of random probe rewards (default reward config)."""
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


def task_recommend(run: str, requests: int, repeats: int) -> dict[str, Any]:
    """(f): per-request latency along 20-track sessions walked by the policy in the run's env.

    A request is the policy forward on the current observation (each path below) and the env step to the
    pick: its k nearest unplayed candidates and its observation, ready for the next request. Session
    starts (resets) are not timed.
    """
    import dataclasses

    import torch

    from agents.inference import load_run, policy_outputs, recommend
    from envs.music_env import MusicRecEnv

    torch.set_num_threads(1)  # as agents.pipeline.run
    loaded = load_run(run)
    policy = loaded.policy
    policy.set_training_mode(False)
    env = MusicRecEnv(
        loaded.world,
        dataclasses.replace(loaded.cfg.env, reward_source="propagated", session_length=20, start_track=None),
    )
    n = env.world.latents.shape[0]

    def via_outputs(obs: np.ndarray) -> int:
        return int(np.argmax(policy_outputs(policy, obs)[0]))

    def lean(obs: np.ndarray) -> int:
        with torch.inference_mode():
            return int(policy.mlp_extractor.forward_actor(torch.from_numpy(obs).unsqueeze(0)).argmax())

    paths = {
        "inference.policy_outputs": (via_outputs, "inference.policy_outputs (probs + value) + env step"),
        "lean actor forward": (lean, "scorer logits only (torch.inference_mode) + env step"),
    }
    rng = np.random.default_rng(0)
    measurements = []
    for name, (pick, detail) in paths.items():
        obs, _ = env.reset(seed=0)
        pick(obs)  # warm-up
        quantiles: dict[str, list[float]] = {f"{p}{q}_ms": [] for p in ("p", "cpu_p") for q in (50, 99)}
        for _ in range(repeats):
            wall, cpu = np.empty(requests), np.empty(requests)
            for i in range(requests):
                c0, t0 = time.thread_time(), time.perf_counter()
                obs, _, terminated, truncated, _ = env.step(pick(obs))
                wall[i], cpu[i] = time.perf_counter() - t0, time.thread_time() - c0
                if terminated or truncated:
                    obs, _ = env.reset(options={"start_track": int(rng.integers(n))})
            for prefix, lat in (("", wall), ("cpu_", cpu)):
                for q in (50, 99):
                    quantiles[f"{prefix}p{q}_ms"].append(float(np.percentile(lat, q)) * 1e3)
        measurements.append({"path": name, "detail": detail, **quantiles})
    step_ms = []
    for rep in range(repeats):
        start = time.perf_counter()
        recommend(loaded, start=int(rng.integers(n)), length=20, seed=rep)
        step_ms.append((time.perf_counter() - start) / 20 * 1e3)
    return {"measurements": measurements, "recommend_step_ms": step_ms}


TASKS: dict[str, Callable[..., dict[str, Any]]] = {
    "prepare_catalog": task_prepare_catalog,
    "prepare_run": task_prepare_run,
    "throughput": task_throughput,
    "env_step": task_env_step,
    "neighbours": task_neighbours,
    "vae": task_vae,
    "propagation": task_propagation,
    "recommend": task_recommend,
}


# ------------------------------------------------------------------------------------------------ main
def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--only", default=None, help=f"measurements to run, e.g. a,b,c (default: {','.join(DEFAULT_ONLY)}; i is opt-in)"
    )
    p.add_argument("--with-sweep", action="store_true", help="also run (i), make sweep (about 12 min more)")
    p.add_argument("--repeats", type=int, default=3, help="timings per measurement (default 3)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the benchmark itself")
    p.add_argument("--out", default=str(ROOT / "bench.json"), help="result file (default: bench.json)")
    p.add_argument("--workdir", default=None, help="keep shared inputs and logs here and reuse them")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per stage (default 3600)")
    p.add_argument("--child", choices=sorted(TASKS), help=argparse.SUPPRESS)
    p.add_argument("--child-args", default="{}", help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    only = (args.only or DEFAULT_ONLY + ("i" if args.with_sweep else "")).replace(",", "").replace(" ", "")
    unknown = sorted(set(only) - set(MEASUREMENTS))
    if unknown:
        p.error(f"--only {args.only!r}: unknown measurement {unknown[0]!r}; choose from {', '.join(MEASUREMENTS)}")
    if args.repeats < 1:
        p.error(f"--repeats {args.repeats}: must be an integer >= 1")
    args.only = [m for m in MEASUREMENTS if m in only]
    return args


def run_child(task: str, args_json: str, out: str) -> None:
    """Child mode: run one task, write its JSON result."""
    result = TASKS[task](**json.loads(args_json))
    Path(out).write_text(json.dumps(result))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen measurements; write bench.json; print the Markdown table. Exit 1 if a stage failed."""
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.child:
        run_child(args.child, args.child_args, args.child_out)
        return 0
    sizes = QUICK if args.quick else Sizes()
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="music-rl-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    runner = Runner(workdir, sizes, args.repeats, args.timeout)
    report: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": [Path(sys.executable).name, "scripts/bench.py", *(argv or sys.argv[1:])],
        "quick": args.quick,
        "repeats": args.repeats,
        "only": args.only,
        "machine": machine(),
        "sizes": asdict(sizes),
        "results": [],
    }
    started = time.perf_counter()
    try:
        for mid in args.only:
            title, bench = MEASUREMENTS[mid]
            print(f"[bench] ({mid}) {title} ... load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            try:
                report["results"].extend(bench(runner))
            except StageFailed as err:
                report["results"].append({"id": mid, "what": title, "error": str(err)})
            print(f"[bench] ({mid}) done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    report["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    report["wall_s"] = round(time.perf_counter() - started, 1)
    from envs.atomic import write_text_atomic

    write_text_atomic(Path(args.out), json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    print(
        f"{m['cpu_model']}, {m['cores']} cores, {m['memory_gb']} GB; load average "
        f"{m['load_average_start']} → {m['load_average_end']}; {args.repeats} repeats; "
        f"{report['wall_s']:.0f} s\n"
    )
    print(markdown_table(report["results"]))
    return 1 if any("error" in r for r in report["results"]) else 0


if __name__ == "__main__":
    sys.exit(main())
