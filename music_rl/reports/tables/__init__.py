"""The result tables of the documents, generated from ``results/*.json`` (``music-rl tables``,
:mod:`music_rl.cli.tables`): collect a results file from real outputs (:func:`run_collect`), render or check the
generated blocks of the documents (:func:`run_render`)."""

from __future__ import annotations

import glob
import re
from pathlib import Path

from music_rl.core.errors import ConfigError, ResultsError
from music_rl.reports.tables.results import Table, load_table

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


def run_collect(name: str | None, sources: list[str], spec: str | None, results_dir: str) -> None:
    """Write ``<results_dir>/<name>.json`` from the sources, with the columns of ``spec`` (a YAML file) or, without
    one, of the existing file (``music-rl tables collect``: the arguments are its keys)."""
    from music_rl.reports.tables.collect import collect, load_spec

    if not name:
        raise ConfigError("name: required: music-rl tables collect name=<table> sources=[...]")
    if not NAME.fullmatch(name):
        raise ConfigError(f"name={name}: a table's name is letters, digits, _ and - (it names a file and a "
                          "marker)")
    existing = Path(results_dir) / f"{name}.json"
    if spec is not None:
        columns = load_spec(Path(spec))
    elif existing.is_file():
        columns = load_table(existing).columns
    else:
        raise ConfigError(f"name={name}: {existing} does not exist yet: give its columns with spec=<file.yaml> "
                          "(docs/guides/tables.md)")
    table = collect(name, [Path(s) for s in sources], columns)
    path = table.save(Path(results_dir))
    print(f"{path}: {len(table.rows)} rows from {len(sources)} source(s); `music-rl tables` renders it")


def run_render(documents: list[str], results_dir: str, check: bool) -> None:
    """Rewrite (or, with ``check``, compare) every generated block of the documents (file names or glob patterns)
    from the results files of ``results_dir`` (``music-rl tables``: the arguments are its keys)."""
    from music_rl.core.atomic import write_text_atomic
    from music_rl.reports.tables.render import rewrite

    folder = Path(results_dir)
    tables = load_tables(folder)
    rewritten, changed, used = {}, [], set()
    for path in document_paths(documents):
        doc = str(path)
        text = path.read_text(encoding="utf-8")
        new, blocks, stale = rewrite(text, doc, tables, str(folder))
        if stale:
            rewritten[path] = new
        changed += [f"{doc}:{b.line} results:{b.name}" for b in stale]
        used |= {b.name for b in blocks}
    orphans = sorted(set(tables) - used)
    if orphans:
        raise ResultsError(f"{folder / orphans[0]}.json: no <!-- results:{orphans[0]} --> marker in "
                           f"{', '.join(documents)} (add one where the table belongs, or delete the file)")
    if check:
        if changed:
            raise ResultsError(f"stale generated blocks: {', '.join(changed)} (they differ from {folder}/: "
                               "run music-rl tables)")
        print(f"{len(used)} table(s) up to date")
        return
    for path, text in rewritten.items():
        write_text_atomic(path, text)
    print("\n".join(f"updated {c}" for c in changed) if changed else f"no block changed ({len(used)} table(s))")
