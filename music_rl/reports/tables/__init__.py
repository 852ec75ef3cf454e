"""The result tables of the documents, generated from ``results/*.json`` (``music-rl tables``,
:mod:`music_rl.cli.tables`): collect a results file from real outputs (:func:`run_collect`), render or check the
generated blocks of the documents (:func:`run_render`)."""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import TYPE_CHECKING

from music_rl.core.errors import ConfigError, ResultsError
from music_rl.reports.tables.results import Table, load_table

if TYPE_CHECKING:
    from music_rl.cli.tables import TablesConfig

NAME = re.compile(r"[\w-]+")


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
    from music_rl.reports.tables.collect import collect, load_spec

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
    from music_rl.core.atomic import write_text_atomic
    from music_rl.reports.tables.render import rewrite

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
