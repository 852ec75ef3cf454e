"""``music-rl tables``: the result tables of the documents (README.md, docs/), generated from ``results/*.json``.

    music-rl tables                                   # rewrite every generated block; print the ones that changed
    music-rl tables check=true                        # exit 2 naming the blocks that differ from results/
    music-rl tables collect name=online_seeds sources=[outputs/runs/A,outputs/runs/B]
    music-rl tables collect name=bench sources=[bench.json]
    music-rl tables collect name=new_table sources=[outputs/sweeps/S] spec=my_columns.yaml

``collect`` writes ``results/<name>.json`` from real outputs (run folders, sweep folders, compare.csv,
bench.json: :mod:`music_rl.reports.tables.collect`), with the columns of the existing file, or of ``spec`` for a
new table or new columns. Rendering replaces what is between ``<!-- results:<name> -->`` and
``<!-- /results:<name> -->`` wherever the markers are in the documents (:mod:`music_rl.reports.tables.render`). The
file format and how to add a table: docs/guides/tables.md and :mod:`music_rl.reports.tables.results`. This module is
the command (its config, app and ``main``); the work is :mod:`music_rl.reports.tables`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import hydra
from omegaconf import DictConfig

from music_rl.cli.app import App
from music_rl.cli.errors import user_errors_exit
from music_rl.core.errors import ConfigError
from music_rl.reports.tables import run_collect, run_render


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


app = App("tables", TablesConfig, positional="action")


@hydra.main(version_base="1.3", config_path=app.config_path, config_name=app.name)
@user_errors_exit
def main(raw: DictConfig) -> None:
    """Collect a results file, or render (or check) the generated blocks."""
    args: TablesConfig = app.typed(raw)
    if args.action is Action.collect:
        if args.check:
            raise ConfigError("check=true: a key of render (music-rl tables check=true), not of collect")
        run_collect(args.name, args.sources, args.spec, args.results_dir)
    else:
        if args.name or args.sources or args.spec:
            raise ConfigError("name, sources and spec are keys of collect: music-rl tables collect name=... "
                              "sources=[...]")
        run_render(args.documents, args.results_dir, args.check)


if __name__ == "__main__":
    app.run(main)
