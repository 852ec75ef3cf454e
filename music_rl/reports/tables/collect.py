"""``music-rl tables collect``: a results file from real outputs, never from typed numbers.

A source is one of:

- a run folder (``metrics.json``): one row, the document ``{"metrics": <metrics.json>, "config":
  <.hydra/config.yaml>, "overrides": <.hydra/overrides.yaml as key: value>, "run_info": <run_info.json>}``;
- a sweep folder (``<job>/metrics.json``): one such row per job, in job order;
- a ``compare.csv`` or another CSV of ``music-rl compare`` (``compare_baseline.csv``, ``ope_accuracy.csv``): one
  row per CSV row, ``{"compare": {<column>: <value>}}``;
- a ``bench.json`` (``music-rl bench``): one row per result, the result itself (``id``, ``what``, ``median``...).

A row of the results file keeps only what the columns read (:func:`music_rl.reports.tables.results.excerpt`), with its
source; ``produced`` gathers the sources' commands, times, machines and code commits.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from music_rl.core.errors import ConfigError, ResultsError, RunFolderError
from music_rl.reports.overrides import job_overrides
from music_rl.reports.tables.results import Column, Produced, Table, excerpt, lookup

BENCH_FORMATS = (1, 2)  # bench.json format versions with the rows of music_rl.bench.report.make_row


@dataclass
class Source:
    """What one source gives: (label, document) per row, and its provenance."""

    rows: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    times: list[datetime] = field(default_factory=list)
    machines: list[str] = field(default_factory=list)
    code: list[str] = field(default_factory=list)

    def add(self, other: Source) -> None:
        """Append another source's rows and provenance."""
        self.rows += other.rows
        for name in ("commands", "times", "machines", "code"):
            getattr(self, name).extend(getattr(other, name))


def label(path: Path) -> str:
    """``path`` relative to the working folder when inside it (what a results file records)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _read_json(path: Path) -> Any:
    """A JSON file, or :class:`RunFolderError` naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunFolderError(f"{path}: unreadable or not JSON ({str(err).splitlines()[0]})") from None


def _read_yaml(path: Path) -> Any:
    """A YAML file (None when missing), or :class:`RunFolderError` naming it."""
    if not path.is_file():
        return None
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise RunFolderError(f"{path}: unreadable or not YAML ({str(err).splitlines()[0]})") from None


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)


def run_source(run_dir: Path, command: bool = True) -> Source:
    """A run folder (or a sweep's job): one row; its command unless ``command`` is false (a sweep's job)."""
    metrics = _read_json(run_dir / "metrics.json")
    info = _read_json(run_dir / "run_info.json") if (run_dir / "run_info.json").is_file() else {}
    doc = {"metrics": metrics, "config": _read_yaml(run_dir / ".hydra" / "config.yaml") or {},
           "overrides": job_overrides(run_dir), "run_info": info}
    typed = _read_yaml(run_dir / ".hydra" / "overrides.yaml") or []
    src = Source(rows=[(label(run_dir), doc)], times=[_mtime(run_dir / "metrics.json")],
                 commands=[" ".join(["music-rl train", *map(str, typed)])] if command else [])
    if info:
        versions = info.get("versions", {})
        src.machines.append(f"{info.get('platform', 'unknown platform')}; Python {versions.get('python', '?')}, "
                            f"torch {versions.get('torch', '?')}")
        src.code.append(str(info.get("git_commit", "unknown")))
    return src


def _job_order(job: Path) -> tuple[int, str]:
    number = job.name.split("_", 1)[0]
    return (int(number) if number.isdigit() else -1, job.name)


def sweep_command(sweep_dir: Path) -> str | None:
    """``music-rl train -m <overrides>`` of a sweep folder (its ``multirun.yaml``), or None."""
    saved = _read_yaml(sweep_dir / "multirun.yaml")
    task = lookup(saved, "hydra.overrides.task") if isinstance(saved, dict) else None
    return " ".join(["music-rl train -m", *map(str, task)]) if isinstance(task, list) else None


def sweep_source(sweep_dir: Path) -> Source:
    """A sweep folder: one row per job with a ``metrics.json``, in job order."""
    src = Source()
    jobs = sorted((p.parent for p in sweep_dir.glob("*/metrics.json")), key=_job_order)
    command = sweep_command(sweep_dir)
    for job in jobs:
        src.add(run_source(job, command=command is None))
    if command:
        src.commands.append(command)
    return src


def compare_source(path: Path) -> Source:
    """A ``compare.csv``: one row per configuration, numbers as numbers; provenance from its sweep's jobs."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            table = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise RunFolderError(f"{path}: unreadable CSV ({err})") from None
    sweep = sweep_source(path.parent) if any(path.parent.glob("*/metrics.json")) else Source()
    rows = [(f"{label(path)}:{i + 2}", {"compare": {k: _number(v) for k, v in row.items()}})
            for i, row in enumerate(table)]
    return Source(rows, [*sweep.commands, f"music-rl compare {label(path.parent)}"], [_mtime(path)],
                  sweep.machines, sweep.code)


def _number(text: str) -> Any:
    """A CSV cell as int, float, None (empty) or the text."""
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def bench_source(path: Path) -> Source:
    """A ``bench.json``: one row per result; its command, time and machine."""
    report = _read_json(path)
    if not isinstance(report, dict) or report.get("format_version") not in BENCH_FORMATS:
        raise RunFolderError(f"{path}: not a bench.json of format {' or '.join(map(str, BENCH_FORMATS))} "
                             "(music-rl bench writes one)")
    m = report.get("machine", {})
    machine = (f"{m.get('cpu_model', 'unknown CPU')}, {m.get('cores', '?')} cores, {m.get('memory_gb', '?')} GB; "
               f"{m.get('platform', '?')}; Python {m.get('python', '?')}, torch {m.get('torch', '?')}")
    created = datetime.strptime(report["created"], "%Y-%m-%dT%H:%M:%S%z") if "created" in report else _mtime(path)
    command = report.get("command", [])
    return Source([(label(path), row) for row in report.get("results", [])],
                  [" ".join(command) if isinstance(command, list) else str(command)], [created], [machine],
                  [str(m.get("git_commit", "unknown"))])


def read_source(path: Path) -> Source:
    """The rows and provenance of one source (:class:`RunFolderError` when it is none of the four kinds)."""
    if path.is_file() and path.suffix == ".json":
        return bench_source(path)
    if path.is_file() and path.suffix == ".csv":
        return compare_source(path)
    if (path / "metrics.json").is_file():
        return run_source(path)
    if path.is_dir() and any(path.glob("*/metrics.json")):
        return sweep_source(path)
    raise RunFolderError(f"sources: {path}: not a run folder (metrics.json), a sweep folder (<job>/metrics.json), "
                         "a compare.csv or a bench.json" + ("" if path.exists() else "; no such file or folder"))


def _distinct(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _when(times: list[datetime]) -> str:
    """The time span of the sources, to the minute, in UTC."""
    first, last = (t.astimezone(UTC).strftime("%Y-%m-%d %H:%M") for t in (min(times), max(times)))
    return f"{first} UTC" if first == last else f"{first} … {last} UTC"


def load_spec(path: Path) -> list[Column]:
    """The columns of a new table from a YAML file ``columns: [{header, key, format, ci, unit, to}, ...]``."""
    data = _read_yaml(path) if path.is_file() else None
    if not isinstance(data, dict) or not isinstance(data.get("columns"), list) or not data["columns"]:
        raise ConfigError(f"spec={path}: not a YAML file with a non-empty list 'columns' "
                          "(each: header, key, optional format, ci, unit, to, summary; docs/guides/tables.md)")
    return [Column.from_dict(c, f"spec={path}") for c in data["columns"]]


def collect(name: str, sources: list[Path], columns: list[Column]) -> Table:
    """The results file ``name`` from ``sources``: one row per source row, the excerpt its columns read."""
    if not sources:
        raise ConfigError("sources: give the run folders, sweep folders, compare.csv or bench.json files: "
                          "sources=[outputs/runs/<date>/<time>,...]")
    src = Source()
    for source in sources:
        src.add(read_source(source))
    if not src.rows:
        raise RunFolderError(f"sources: {', '.join(map(str, sources))}: no row found (an empty bench.json?)")
    for column in columns:
        for path in column.paths():
            if all(lookup(doc, path) is None for _, doc in src.rows):
                keys = sorted({k for _, doc in src.rows for k in doc})
                raise ResultsError(f"column {column.header!r}: {path!r} is in none of the {len(src.rows)} source "
                                   f"rows (their top-level keys: {', '.join(keys)})")
    paths = [p for c in columns for p in c.paths()]
    rows = [{"source": where, **excerpt(doc, paths)} for where, doc in src.rows]
    produced = Produced(_distinct(src.commands), _when(src.times), _distinct(src.machines), _distinct(src.code))
    return Table(name, produced, columns, rows)
