"""Markdown tables: the one writer of every table the project prints or writes (a run's results, ``music-rl
compare``, the generated blocks of ``music-rl tables``, ``music-rl bench``, ``music-rl simulate``).

The cells arrive as text: each table formats its own figures (three decimals and an en dash in the run and sweep
tables, :func:`music_rl.reports.tables.render.cell`'s formats in the generated ones); this module only lays them
out, one line per row, so every table has the same shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_row(cells: Iterable[str]) -> str:
    """One row: ``| a | b |``."""
    return "| " + " | ".join(cells) + " |"


def markdown_header(header: Sequence[str]) -> str:
    """The header row and the line under it (for a table printed row by row as its rows come)."""
    return markdown_row(header) + "\n" + "|---" * len(header) + "|"


def markdown_table(header: Sequence[str], rows: Iterable[Iterable[str]]) -> str:
    """A whole table: the header, then one line per row of cells."""
    return "\n".join([markdown_header(header), *(markdown_row(row) for row in rows)])
