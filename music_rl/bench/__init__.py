"""The benchmark harness of ``music-rl bench`` (:mod:`music_rl.cli.bench`): speed, memory and scale figures of
music-rl, a development tool.

Measurements (targets in :data:`MEASUREMENTS`; docs/benchmarks.md describes the method and holds the figures):

a. PPO training throughput on MusicRec-v0 / on a null env (:mod:`music_rl.bench.throughput`);
b. the CPU cost of ``env.step`` (:mod:`music_rl.bench.env_step`);
c. the neighbour table build, d. VAE training per epoch, e. reward propagation (:mod:`music_rl.bench.build`);
f. one next-track recommendation from a loaded run folder (:mod:`music_rl.bench.inference`);
g. the default ``make train``, h. a 1M-track world end to end, i. ``make sweep`` (:mod:`music_rl.bench.end_to_end`);
j. the planning reference's score and cost per lookahead (:mod:`music_rl.bench.planner`);
k. the learnt listener's fit and PPO's speed against it (:mod:`music_rl.bench.learnt_listener`);
l. the neighbour index: exact, faiss and hnswlib tables, time, memory, recall (:mod:`music_rl.bench.index`);
m. the scale curve: a run end to end at every catalog size, each stage's growth exponent (:mod:`music_rl.bench.scale`).

Every stage runs in a fresh subprocess (:mod:`music_rl.bench.runner`), so its peak resident memory is its own.
Timings are repeated ``repeats`` times and reported as median and min–max; "load" is the 1-minute load
average when the stage ended. Inputs shared by stages are built once per run in the work folder
(:mod:`music_rl.bench.inputs`; ``workdir=`` keeps and reuses them). ``bench.json``: :mod:`music_rl.bench.report`.
A measurement that fails gives a row holding its error (:func:`measure`); the others still run.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from music_rl.bench import (
    build,
    end_to_end,
    env_step,
    index,
    inference,
    learnt_listener,
    planner,
    scale,
    throughput,
)
from music_rl.bench.runner import Runner, StageFailed

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
    "k": ("learnt listener: fit per 10k sessions, PPO speed against it (≥ 0.5 of parametric)", learnt_listener.bench_k),
    "l": ("neighbour index: exact vs faiss / hnswlib HNSW, time, memory, recall@32 (≥ 0.95)", index.bench_l),
    "m": ("scale curve: a run end to end at 100k, 1M, 10M tracks, each stage's growth exponent", scale.bench_m),
}
OPT_IN = "i"  # make sweep: with_sweep=true
LONG = ("l", "m")  # the 10M-track index builds and the scale curve (tens of minutes): only=[l] / only=[m]


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
