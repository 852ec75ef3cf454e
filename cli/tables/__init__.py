"""``music-rl tables``: the result tables of the documents (README.md, docs/), generated from ``results/*.json``.

    music-rl tables                                   # rewrite every generated block; print the ones that changed
    music-rl tables check=true                        # exit 2 naming the blocks that differ from results/
    music-rl tables collect name=online_seeds sources=[outputs/runs/A,outputs/runs/B]
    music-rl tables collect name=bench sources=[bench.json]
    music-rl tables collect name=new_table sources=[outputs/sweeps/S] spec=my_columns.yaml

``collect`` writes ``results/<name>.json`` from real outputs (run folders, sweep folders, compare.csv,
bench.json: :mod:`cli.tables.collect`), with the columns of the existing file, or of ``spec`` for a new table
or new columns. Rendering replaces what is between ``<!-- results:<name> -->`` and ``<!-- /results:<name> -->``
wherever the markers are in the documents (:mod:`cli.tables.render`). The file format and how to add a table:
docs/guides/tables.md and :mod:`cli.tables.results`.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import hydra
from omegaconf import DictConfig

from cli.app import App
from cli.errors import user_errors_exit
from cli.tables.results import Table, load_table
from envs.errors import ConfigError, ResultsError

NAME = re.compile(r"[\w-]+")


class Action(StrEnum):
    """What ``music-rl tables`` does."""

    render = "render"
    collect = "collect"


@dataclass
class TablesConfig:
    """Arguments of ``music-rl tables``."""

    action: Action = Action.render
    """render: rewrite the generated blocks of the documents from the results files | collect: write
    results/<name>.json from sources; a bare argument stands for it (music-rl tables collect ...)"""
    check: bool = False
    """render: write nothing; exit 2 naming the blocks that differ from their results files"""
    name: str | None = None
    """collect: the table (results/<name>.json, marker <!-- results:<name> -->)"""
    sources: list[str] = field(default_factory=list)
    """collect: run folders, sweep folders, compare.csv or bench.json files, one table row per run, job,
    configuration or result, in this order"""
    spec: str | None = None
    """collect: a YAML file of the table's columns (docs/guides/tables.md), for a new table or to change its columns;
    null: the columns of the existing results/<name>.json"""
    results_dir: str = "results"
    """the folder of the results files"""
    documents: list[str] = field(default_factory=lambda: ["README.md", "BENCHMARKS.md", "docs/**/*.md"])
    """the documents whose generated blocks are rendered: file names (each must exist) or glob patterns (** for
    any folders below; a pattern may match nothing)"""


app = App("tables", TablesConfig, "the result tables of README.md and docs/ from the result files in results/",
          positional="action")


def load_tables(results_dir: Path) -> dict[str, Table]:
    """Every results file of ``results_dir``, by table name."""
    return {path.stem: load_table(path) for path in sorted(results_dir.glob("*.json"))}


def document_paths(patterns: list[str]) -> list[Path]:
    """The documents named by ``patterns``, each once, in order: a file name (:class:`ConfigError` when it is
    missing) or a glob pattern such as ``docs/**/*.md`` (its matches sorted)."""
    paths: list[Path] = []
    for pattern in patterns:
        if any(c in pattern for c in "*?["):
            matches = [Path(p) for p in sorted(glob.glob(pattern, recursive=True)) if Path(p).is_file()]
        elif Path(pattern).is_file():
            matches = [Path(pattern)]
        else:
            raise ConfigError(f"documents: {pattern}: no such file")
        paths += [p for p in matches if p not in paths]
    return paths


def run_collect(args: TablesConfig) -> None:
    """Write ``results/<name>.json`` from the sources."""
    from cli.tables.collect import collect, load_spec

    if not args.name:
        raise ConfigError("name: required: music-rl tables collect name=<table> sources=[...]")
    if not NAME.fullmatch(args.name):
        raise ConfigError(f"name={args.name}: a table's name is letters, digits, _ and - (it names a file and a "
                          "marker)")
    existing = Path(args.results_dir) / f"{args.name}.json"
    if args.spec is not None:
        columns = load_spec(Path(args.spec))
    elif existing.is_file():
        columns = load_table(existing).columns
    else:
        raise ConfigError(f"name={args.name}: {existing} does not exist yet: give its columns with spec=<file.yaml> "
                          "(docs/guides/tables.md)")
    table = collect(args.name, [Path(s) for s in args.sources], columns)
    path = table.save(Path(args.results_dir))
    print(f"{path}: {len(table.rows)} rows from {len(args.sources)} source(s); `music-rl tables` renders it")


def run_render(args: TablesConfig) -> None:
    """Rewrite (or, with ``check``, compare) every generated block of the documents."""
    from cli.tables.render import rewrite
    from envs.atomic import write_text_atomic

    results_dir = Path(args.results_dir)
    tables = load_tables(results_dir)
    rewritten, changed, used = {}, [], set()
    for path in document_paths(args.documents):
        doc = str(path)
        text = path.read_text(encoding="utf-8")
        new, blocks, stale = rewrite(text, doc, tables, str(results_dir))
        if stale:
            rewritten[path] = new
        changed += [f"{doc}:{b.line} results:{b.name}" for b in stale]
        used |= {b.name for b in blocks}
    orphans = sorted(set(tables) - used)
    if orphans:
        raise ResultsError(f"{results_dir / orphans[0]}.json: no <!-- results:{orphans[0]} --> marker in "
                           f"{', '.join(args.documents)} (add one where the table belongs, or delete the file)")
    if args.check:
        if changed:
            raise ResultsError(f"stale generated blocks: {', '.join(changed)} (they differ from {results_dir}/: "
                               "run music-rl tables)")
        print(f"{len(used)} table(s) up to date")
        return
    for path, text in rewritten.items():
        write_text_atomic(path, text)
    print("\n".join(f"updated {c}" for c in changed) if changed else f"no block changed ({len(used)} table(s))")


@hydra.main(version_base="1.3", config_path=app.config_path, config_name=app.name)
@user_errors_exit
def main(raw: DictConfig) -> None:
    """Collect a results file, or render (or check) the generated blocks."""
    args: TablesConfig = app.typed(raw)
    if args.action is Action.collect:
        if args.check:
            raise ConfigError("check=true: a key of render (music-rl tables check=true), not of collect")
        run_collect(args)
    else:
        if args.name or args.sources or args.spec:
            raise ConfigError("name, sources and spec are keys of collect: music-rl tables collect name=... "
                              "sources=[...]")
        run_render(args)


if __name__ == "__main__":
    app.run(main)
