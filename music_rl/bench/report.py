"""``bench.json`` and the Markdown table of ``music-rl bench``.

``bench.json`` holds ``format_version``, ``created``, ``command`` (the ``music-rl bench`` command line),
``quick``, ``repeats``, ``only``, ``machine`` (:func:`machine`), ``sizes`` (:class:`music_rl.bench.sizes.Sizes`),
``results`` (one row per figure, :func:`make_row`; a failed measurement: ``id``, ``what``, ``error``) and
``wall_s``. Format 2 (``music-rl bench``) has the rows of format 1 (``scripts/bench.py`` before it became a
command); its ``command`` is a ``music-rl bench`` command line, (a) has no ``batched`` rows (that vec env is
gone) and (f)'s first forward path is ``policies.candidate_probabilities`` (was ``inference.policy_outputs``).

The table printed here has the columns of the table of docs/benchmarks.md, which ``music-rl tables`` renders from
``results/bench.json`` with the same cell formats (:mod:`music_rl.reports.tables.render`).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from music_rl.bench.sizes import Sizes
from music_rl.reports.tables.render import results_table
from music_rl.reports.tables.results import Column

FORMAT_VERSION = 2
PACKAGES = ("torch", "numpy", "scipy", "scikit-learn", "stable-baselines3", "gymnasium")
COLUMNS = (
    Column("#", "id"),
    Column("measurement", "what"),
    Column("median", "median", "sig3", unit="unit"),
    Column("min–max", "min", "sig3", to="max"),
    Column("n", "values", "count"),
    Column("peak RSS (MB)", "peak_rss_mb", "sig3"),
    Column("target", "target"),
    Column("met", "met", "verdict"),
    Column("load", "load_1min"),
    Column("detail", "detail"),
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
        met: bool = value <= self.limit if self.op == "<=" else value >= self.limit
        return met

    def __str__(self) -> str:
        what = "peak " if self.field == "peak_rss_mb" else ""
        return f"{what}{'≤' if self.op == '<=' else '≥'} {self.limit:g} {self.unit}".strip()


def make_row(mid: str, what: str, unit: str, values: Sequence[float], targets: Sequence[Target] = (),
             peak_rss_mb: float | None = None, detail: str = "", **params: Any) -> dict[str, Any]:
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


def machine(repo: Path) -> dict[str, Any]:
    """CPU model, cores, memory, versions, the code's commit and the load average: what the figures depend on."""
    from importlib import metadata

    from music_rl.runs.run_info import git_commit

    mem_kb = _proc_field("/proc/meminfo", "MemTotal").split()[0]
    return {
        "cpu_model": _proc_field("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "memory_gb": round(int(mem_kb) / 2**20, 1) if mem_kb.isdigit() else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        **{name: metadata.version(name) for name in PACKAGES},
        "git_commit": git_commit(repo),
        "load_average_start": load_average(),
    }


def _proc_field(path: str, key: str) -> str:
    """The value of the first ``key: value`` line of a /proc file, or ``unknown``."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def load_average() -> list[float]:
    """The 1-, 5- and 15-minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def new_report(command: list[str], quick: bool, repeats: int, only: list[str], sizes: Sizes,
               repo: Path) -> dict[str, Any]:
    """The report of a benchmark about to run (``results`` still empty)."""
    return {
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
        "quick": quick,
        "repeats": repeats,
        "only": only,
        "machine": machine(repo),
        "sizes": asdict(sizes),
        "results": [],
    }


def summary(report: dict[str, Any]) -> str:
    """The machine and load in one line, then the Markdown table of every row."""
    m = report["machine"]
    return (f"{m['cpu_model']}, {m['cores']} cores, {m['memory_gb']} GB; load average {m['load_average_start']} → "
            f"{m['load_average_end']}; {report['repeats']} repeats; {report['wall_s']:.0f} s\n\n"
            + results_table(COLUMNS, report["results"]))
