"""The results files of ``music-rl tables``: ``results/<table>.json``, one per generated table.

A results file holds where its figures come from (``produced``), how the table shows them (``columns``) and
the figures themselves (``rows``: excerpts of the sources, one per table row)::

    {
      "format_version": 1,
      "table": "online_seeds",
      "produced": {"commands": ["music-rl train seed=0", ...], "when": "2025-05-02 10:14 … 10:31 UTC",
                   "machines": ["Linux-6.8-x86_64; Python 3.11.7, torch 2.3.0"], "code": ["55097b1"]},
      "columns": [
        {"header": "seed", "key": "config.seed"},
        {"header": "normalized_score", "key": "metrics.normalized_score", "format": ".2f"},
        {"header": "ppo mean_reward (95% CI)", "key": "metrics.policies.ppo.mean_reward", "format": ".3f",
         "ci": "metrics.policies.ppo.mean_reward_ci95"}
      ],
      "rows": [
        {"source": "outputs/runs/2025-05-02/10-14-07", "config": {"seed": 0},
         "metrics": {"normalized_score": 1.34, "policies": {"ppo": {"mean_reward": 1.359, ...}}}}
      ]
    }

A column: ``header``; ``key``, the key path of the value in a row (``a.b.c``; a key holding dots, such as an
override ``env.observation``, is matched whole: ``overrides.env.observation``); optional ``format`` (a Python
format spec such as ``.2f``, or ``sig3``: about three significant digits, ``verdict``: true yes / false
**no** / null empty, ``count``: the length of a list); optional ``ci`` (key path of a 95% half-width, shown
``v ± ci``), ``unit`` (key path of a unit shown after the value) and ``to`` (key path of the end of a range,
shown ``v–to``), ``summary`` (``mean`` or ``median``: a last row gives that statistic of the column's values
over the rows, e.g. over seeds). ``produced`` may carry a ``note`` (shown under the table). A row's ``source``
names where it came from (a run folder, a sweep's job, a bench.json, or a note such as "transcribed from ...").
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from music_rl.core.atomic import write_text_atomic
from music_rl.core.errors import ResultsError

FORMAT_VERSION = 1
NAMED_FORMATS = ("sig3", "verdict", "count")
SUMMARIES = ("mean", "median")  # a column's optional summary row: the statistic of its values over the rows


def check_format(fmt: str, where: str) -> None:
    """:class:`ResultsError` unless ``fmt`` is a named format, empty, or a Python format spec for numbers."""
    if fmt in NAMED_FORMATS or not fmt:
        return
    try:
        format(1.5, fmt)
    except (ValueError, TypeError):
        raise ResultsError(f"{where}: format {fmt!r}: not a Python format spec for numbers (such as .2f) nor "
                           f"one of {', '.join(NAMED_FORMATS)}") from None


@dataclass(frozen=True)
class Column:
    """One column of a table: its header, the key path of its value and how to show it."""

    header: str
    key: str
    format: str = ""
    ci: str | None = None
    unit: str | None = None
    to: str | None = None
    summary: str | None = None

    def paths(self) -> list[str]:
        """Every key path the column reads."""
        return [p for p in (self.key, self.ci, self.unit, self.to) if p]

    def to_dict(self) -> dict[str, str]:
        """The column as stored (empty options left out)."""
        return {k: v for k, v in asdict(self).items() if v}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Column:
        """A column from its stored form (:class:`ResultsError` naming ``where`` when malformed)."""
        names = [f.name for f in fields(cls)]
        if not isinstance(data, dict) or not {"header", "key"} <= data.keys():
            raise ResultsError(f"{where}: a column is an object with at least header and key; got {data!r}")
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ResultsError(f"{where}: column {data['header']!r}: unknown field {unknown[0]!r}; "
                               f"fields: {', '.join(names)}")
        if not all(isinstance(v, str) for v in data.values()):
            raise ResultsError(f"{where}: column {data['header']!r}: every field is a string; got {data!r}")
        check_format(data.get("format", ""), f"{where}: column {data['header']!r}")
        if data.get("summary", "mean") not in SUMMARIES:
            raise ResultsError(f"{where}: column {data['header']!r}: summary {data['summary']!r}: one of "
                               f"{', '.join(SUMMARIES)}")
        return cls(**data)


@dataclass
class Produced:
    """Where the figures come from: the commands, when, on which machine(s), from which code."""

    commands: list[str] = field(default_factory=list)
    when: str = ""
    machines: list[str] = field(default_factory=list)
    code: list[str] = field(default_factory=list)
    note: str = ""


@dataclass
class Table:
    """One results file: the table's name, provenance, columns and rows."""

    name: str
    produced: Produced
    columns: list[Column]
    rows: list[dict[str, Any]]

    def dumps(self) -> str:
        """The file's text: indented, one column and one row per line (short diffs), UTF-8 as is."""
        produced = {k: v for k, v in asdict(self.produced).items() if v}
        head = json.dumps({"format_version": FORMAT_VERSION, "table": self.name, "produced": produced},
                          indent=2, ensure_ascii=False)[:-2]

        def one_per_line(items: list[Any]) -> str:
            return "[\n" + ",\n".join(f"    {json.dumps(x, ensure_ascii=False)}" for x in items) + "\n  ]"

        return (f"{head},\n  \"columns\": {one_per_line([c.to_dict() for c in self.columns])},\n"
                f"  \"rows\": {one_per_line(self.rows)}\n}}\n")

    def save(self, results_dir: Path) -> Path:
        """Write ``<results_dir>/<name>.json`` atomically; its path."""
        path = results_dir / f"{self.name}.json"
        results_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, self.dumps())
        return path


def load_table(path: Path) -> Table:
    """A results file, checked (:class:`ResultsError` naming the file and what is wrong)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ResultsError(f"{path}: unreadable ({err.strerror or err})") from None
    except UnicodeDecodeError as err:  # no strerror
        raise ResultsError(f"{path}: unreadable ({err})") from None
    except json.JSONDecodeError as err:
        raise ResultsError(f"{path}: not JSON (line {err.lineno}: {err.msg})") from None
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        version = data.get("format_version") if isinstance(data, dict) else None
        raise ResultsError(f"{path}: format_version {version!r}; this version reads {FORMAT_VERSION}")
    missing = [k for k in ("table", "produced", "columns", "rows") if k not in data]
    if missing:
        raise ResultsError(f"{path}: no {missing[0]!r}; a results file holds table, produced, columns and rows")
    if data["table"] != path.stem:
        raise ResultsError(f"{path}: table {data['table']!r} in a file named {path.name} (they must agree)")
    if not isinstance(data["rows"], list) or not all(isinstance(r, dict) for r in data["rows"]):
        raise ResultsError(f"{path}: rows must be a list of objects")
    if not isinstance(data["columns"], list) or not data["columns"]:
        raise ResultsError(f"{path}: columns must be a non-empty list")
    try:
        produced = Produced(**data["produced"])
    except TypeError as err:
        raise ResultsError(f"{path}: produced: {err}; fields: commands, when, machines, code, note") from None
    columns = [Column.from_dict(c, str(path)) for c in data["columns"]]
    return Table(data["table"], produced, columns, data["rows"])


# ----------------------------------------------------------------------------------------------- key paths
def resolve(doc: Any, path: str) -> list[str | int] | None:
    """The keys that lead to ``path`` in nested dicts (a key holding dots matched whole, the longest first) and
    lists (a part that is an index, ``normalized_score.2``), or None when it is not there."""
    if isinstance(doc, list):
        first, _, rest = path.partition(".")
        if not first.isdigit() or int(first) >= len(doc):
            return None
        tail = resolve(doc[int(first)], rest) if rest else []
        return None if tail is None else [int(first), *tail]
    if not isinstance(doc, dict):
        return None
    if path in doc:
        return [path]
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:cut])
        if head in doc:
            tail = resolve(doc[head], ".".join(parts[cut:]))
            if tail is not None:
                return [head, *tail]
    return None


def lookup(doc: Any, path: str) -> Any:
    """The value at key path ``path`` of ``doc``, or None."""
    keys = resolve(doc, path)
    if keys is None:
        return None
    for key in keys:
        doc = doc[key]
    return doc


def excerpt(doc: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """The part of ``doc`` that holds the values at ``paths`` (same nesting; non-finite numbers as null)."""
    out: dict[str, Any] = {}
    value: Any  # a dict, a list or a leaf along the key path
    for path in paths:
        keys = resolve(doc, path)
        if keys is None:
            continue
        node, value = out, doc
        for key in keys[:-1]:  # a list's index is kept as a key ("2"), which the same path resolves
            node, value = node.setdefault(str(key), {}), value[key]
        node[str(keys[-1])] = finite(value[keys[-1]])
    return out


def finite(value: Any) -> Any:
    """``value`` with NaN and infinities (which JSON cannot hold) as None, in lists too."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value
