#!/usr/bin/env python
"""Compare the jobs of a sweep: one row per configuration, seeds aggregated as mean ± 95% CI.

    python scripts/compare.py outputs/sweeps/<date>/<time>

Prints a Markdown table sorted by normalized_score, writes ``compare.csv`` (one row per configuration),
``compare_jobs.csv`` (one row per job) and ``compare.png`` (normalized_score per configuration, greedy marked)
into the sweep folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

from _entry import user_errors_exit

from agents.report import aggregate, collect_sweep, markdown, score_chart
from envs.atomic import atomic_path
from envs.errors import ConfigError


@user_errors_exit
def main(argv: list[str]) -> None:
    """Collect, aggregate, print and save."""
    if len(argv) != 1:
        raise ConfigError("usage: scripts/compare.py <sweep folder>")
    sweep = Path(argv[0])
    jobs = collect_sweep(sweep)
    table = aggregate(jobs)
    print(markdown(table))
    with atomic_path(sweep / "compare.csv") as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(sweep / "compare_jobs.csv") as tmp:
        jobs.to_csv(tmp, index=False)
    with atomic_path(sweep / "compare.png") as tmp:
        score_chart(table, tmp)
    print(
        f"\n{len(jobs)} jobs, {len(table)} configurations -> {sweep / 'compare.csv'}, {sweep / 'compare.png'}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
