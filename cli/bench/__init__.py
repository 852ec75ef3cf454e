"""``music-rl bench``: speed, memory and scale benchmarks of music-rl; writes ``bench.json``, prints a table.

    music-rl bench                               # (a)..(h); (i), the 18-job make sweep, is opt-in
    music-rl bench only=[a,b] repeats=5
    music-rl bench with_sweep=true               # everything, (i) included
    music-rl bench quick=true                    # tiny sizes: checks the benchmark, not the code's speed

Measurements (targets in :data:`MEASUREMENTS`; docs/benchmarks.md describes the method and holds the figures):

a. PPO training throughput on MusicRec-v0 / on a null env (:mod:`cli.bench.throughput`);
b. the CPU cost of ``env.step`` (:mod:`cli.bench.env_step`);
c. the neighbour table build, d. VAE training per epoch, e. reward propagation (:mod:`cli.bench.build`);
f. one next-track recommendation from a loaded run folder (:mod:`cli.bench.inference`);
g. the default ``make train``, h. a 1M-track world end to end, i. ``make sweep`` (:mod:`cli.bench.end_to_end`);
j. the planning reference's score and cost per lookahead (:mod:`cli.bench.planner`).

Every stage runs in a fresh subprocess (:mod:`cli.bench.runner`), so its peak resident memory is its own.
Timings are repeated ``repeats`` times and reported as median and min–max; "load" is the 1-minute load
average when the stage ended. Inputs shared by stages are built once per run in the work folder
(:mod:`cli.bench.inputs`; ``workdir=`` keeps and reuses them). ``bench.json``: :mod:`cli.bench.report`.
Exit status 1 when a measurement failed (its row holds the error; the others are still written).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from cli.app import App
from cli.bench import build, end_to_end, env_step, inference, planner, throughput
from cli.bench.report import load_average, new_report, summary
from cli.bench.runner import ROOT, Runner, StageFailed
from cli.bench.sizes import QUICK, Sizes
from cli.errors import fail, user_errors_exit
from envs.errors import ConfigError

Bench = Callable[[Runner], list[dict[str, Any]]]
MEASUREMENTS: dict[str, tuple[str, Bench]] = {
    "a": ("PPO throughput ratio vs a null env (≥ 0.95)", throughput.bench_a),
    "b": ("raw env step (≤ 10 µs)", env_step.bench_b),
    "c": ("neighbour table build (1M × d=5: ≤ 10 s, ≤ 1 GB)", build.bench_c),
    "d": ("VAE seconds per epoch (1M rows ≤ 20 s)", build.bench_d),
    "e": ("propagation at 1M (≤ 30 s)", build.bench_e),
    "f": ("recommendation latency, 1M catalog (p99 ≤ 2 ms)", inference.bench_f),
    "g": ("default make train (≤ 5 min, ≤ 2 GB)", end_to_end.bench_g),
    "h": ("1M-track world end to end (≤ 4 GB)", end_to_end.bench_h),
    "i": ("make sweep, 18 jobs (≤ 30 min)", end_to_end.bench_i),
    "j": ("planner lookahead: score and cost per session", planner.bench_j),
}
OPT_IN = "i"


@dataclass
class BenchConfig:
    """Arguments of ``music-rl bench``."""

    only: list[str] = field(default_factory=lambda: [m for m in MEASUREMENTS if m != OPT_IN])
    """the measurements to run, e.g. only=[a,b] (a..i; by default all but i, make sweep, which is opt-in)"""
    with_sweep: bool = False
    """also run (i), make sweep (18 trainings of the default budget)"""
    repeats: int = 3
    """timings per measurement (g, h, i run once)"""
    quick: bool = False
    """tiny sizes: a smoke test of the benchmark itself, not of the code's speed"""
    out: str = "bench.json"
    """the result file"""
    workdir: str | None = None
    """keep the shared inputs (synthetic catalogs, worlds, run folders) and the logs here, and reuse them;
    null: a temporary folder, removed at the end"""
    timeout: float = 3600.0
    """seconds allowed per stage (i: 4 hours)"""


app = App("bench", BenchConfig, "speed, memory and scale benchmarks -> bench.json")


def chosen(args: BenchConfig) -> list[str]:
    """The measurements to run, in order (:class:`ConfigError` naming a bad key)."""
    unknown = [m for m in args.only if m not in MEASUREMENTS]
    if unknown:
        raise ConfigError(f"only=[{','.join(args.only)}]: unknown measurement {unknown[0]!r}; "
                          f"choose from {', '.join(MEASUREMENTS)}")
    if args.repeats < 1:
        raise ConfigError(f"repeats={args.repeats}: must be an integer >= 1")
    if args.timeout <= 0:
        raise ConfigError(f"timeout={args.timeout}: must be > 0 seconds")
    wanted = set(args.only) | ({OPT_IN} if args.with_sweep else set())
    return [m for m in MEASUREMENTS if m in wanted]


def measure(runner: Runner, only: list[str]) -> list[dict[str, Any]]:
    """The result rows of every chosen measurement; a failed one gives a row with its error."""
    rows: list[dict[str, Any]] = []
    for mid in only:
        title, bench = MEASUREMENTS[mid]
        print(f"[bench] ({mid}) {title} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            rows.extend(bench(runner))
        except StageFailed as err:
            rows.append({"id": mid, "what": title, "error": str(err)})
        print(f"[bench] ({mid}) done in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return rows


@hydra.main(version_base="1.3", config_path=app.config_path, config_name=app.name)
@user_errors_exit
def main(raw: DictConfig) -> None:
    """Run the chosen measurements; write bench.json; print the table. Exit 1 if a measurement failed."""
    from hydra.core.hydra_config import HydraConfig

    from envs.atomic import write_text_atomic

    args: BenchConfig = app.typed(raw)
    only = chosen(args)
    sizes = QUICK if args.quick else Sizes()
    command = ["music-rl", "bench", *HydraConfig.get().overrides.task]
    report = new_report(command, args.quick, args.repeats, only, sizes, ROOT)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="music-rl-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        report["results"] = measure(Runner(workdir, sizes, args.repeats, args.timeout), only)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    report["machine"]["load_average_end"] = load_average()
    report["wall_s"] = round(time.perf_counter() - started, 1)
    write_text_atomic(args.out, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(summary(report))
    failed = [f"({r['id']}) {r['error']}" for r in report["results"] if "error" in r]
    if failed:
        fail(f"{len(failed)} measurement(s) failed: {'; '.join(failed)}", status=1)


if __name__ == "__main__":
    app.run(main)
