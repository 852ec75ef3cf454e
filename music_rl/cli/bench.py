"""``music-rl bench``: speed, memory and scale benchmarks of music-rl; writes ``bench.json``, prints a table.

    music-rl bench                               # (a)..(h); (i), the 18-job make sweep, is opt-in
    music-rl bench only=[a,b] repeats=5
    music-rl bench with_sweep=true               # everything, (i) included
    music-rl bench quick=true                    # tiny sizes: checks the benchmark, not the code's speed

The command (its config, app and ``main``); the measurements, their targets and ``bench.json`` are
:mod:`music_rl.bench`'s. Exit status 1 when a measurement failed (its row holds the error; the others are still
written).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from music_rl.bench import LONG, MEASUREMENTS, OPT_IN, measure
from music_rl.bench.report import load_average, new_report, summary
from music_rl.bench.runner import ROOT, Runner
from music_rl.bench.sizes import QUICK, Sizes
from music_rl.cli.app import App
from music_rl.cli.errors import fail, user_errors_exit
from music_rl.core.errors import ConfigError


@dataclass
class BenchConfig:
    """Arguments of ``music-rl bench``."""

    only: list[str] = field(default_factory=lambda: [m for m in MEASUREMENTS if m != OPT_IN and m not in LONG])
    """the measurements to run, e.g. only=[a,b] (a..m; by default all but i, make sweep, and l, m, the 10M-track
    index builds and scale curve: tens of minutes each, opt-in with only=[l] / only=[m])"""
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
    sizes: dict[str, Any] = field(default_factory=dict)
    """sizes to change (music_rl/bench/sizes.py), e.g. +sizes.recommend_tracks=10000000
    '+sizes.scale_tracks=[100000,1000000,10000000,100000000]'"""


app = App("bench", BenchConfig)


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


def with_sizes(sizes: Sizes, changes: dict[str, Any]) -> Sizes:
    """``sizes`` with the fields of ``changes`` replaced (lists become tuples); :class:`ConfigError` naming an
    unknown field."""
    known = {f.name: f for f in dataclasses.fields(Sizes)}
    unknown = [key for key in changes if key not in known]
    if unknown:
        raise ConfigError(f"sizes.{unknown[0]}: not a size of music_rl/bench/sizes.py (one of {', '.join(known)})")
    values: dict[str, Any] = {key: tuple(value) if isinstance(value, list | tuple) else value
                              for key, value in changes.items()}
    return dataclasses.replace(sizes, **values)


@hydra.main(version_base="1.3", config_path=app.config_path, config_name=app.name)
@user_errors_exit
def main(raw: DictConfig) -> None:
    """Run the chosen measurements; write bench.json; print the table. Exit 1 if a measurement failed."""
    from hydra.core.hydra_config import HydraConfig

    from music_rl.core.atomic import write_text_atomic

    args: BenchConfig = app.typed(raw)
    only = chosen(args)
    sizes = with_sizes(QUICK if args.quick else Sizes(), args.sizes)
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
