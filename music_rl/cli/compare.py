"""``music-rl compare``: the jobs of a sweep side by side, one row per configuration, replicates aggregated.

    music-rl compare outputs/sweeps/<date>/<time>          # the same: sweep_dir=outputs/sweeps/<date>/<time>

Jobs that differ only in ``seed`` and ``listeners.seed`` are replicates of one configuration (a seed picks a
listener too). Per configuration: the mean of every metric with its 95% Student-t interval; the interquartile mean
(IQM) of normalized_score with its 95% stratified-bootstrap interval; ``poi_best``, the probability that the best
configuration (the highest IQM) scores higher than this one on the same replicate, with its paired-bootstrap
interval (Agarwal et al., NeurIPS 2021; :mod:`music_rl.reports.aggregate`). Notes follow the table: undefined
scores left out, fewer than 5 replicates (when the IQM and the intervals say little).

Prints a Markdown table sorted by IQM, writes ``compare.csv`` (one row per configuration), ``compare_jobs.csv``
(one row per job) and ``compare.png`` (normalized_score per configuration: the mean and the IQM with their
intervals, greedy marked) into the sweep folder.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import hydra
from omegaconf import MISSING, DictConfig

from music_rl.cli.app import App
from music_rl.cli.errors import user_errors_exit
from music_rl.core.errors import ConfigError, RunFolderError, not_a


@dataclass
class CompareConfig:
    """Arguments of ``music-rl compare``."""

    sweep_dir: str = MISSING
    """the sweep folder (outputs/sweeps/<date>/<time>); a bare argument stands for it"""
    baseline: list[str] = field(default_factory=list)
    """compare every configuration with a baseline, paired by seed: the baseline's key:value pairs, e.g.
    [experiment:defaults_v1]; the mean difference in normalized_score and the ratio of PPO's wall time, with
    95% intervals (compare_baseline.csv)"""


app = App("compare", CompareConfig, positional="sweep_dir")


@hydra.main(version_base="1.3", config_path=app.config_path, config_name=app.name)
@user_errors_exit
def main(raw: DictConfig) -> None:
    """Collect, aggregate, print and save."""
    from music_rl.core.atomic import atomic_path
    from music_rl.reports.ope_accuracy import ope_accuracy, ope_pairs
    from music_rl.reports.sweep import (
        against_baseline,
        aggregate,
        collect_sweep,
        frame_markdown,
        markdown,
        score_chart,
    )

    args: CompareConfig = app.typed(raw)
    sweep = Path(args.sweep_dir)
    check_sweep_folder(sweep)
    baseline = baseline_pairs(args.baseline)  # refused before any file is written
    jobs, skipped = collect_sweep(sweep)
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)
    table, notes = aggregate(jobs)
    against = against_baseline(jobs, baseline) if baseline else None  # refused before any file is written
    print(markdown(table))
    for note in notes:
        print(f"note: {note}")
    with atomic_path(sweep / "compare.csv") as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(sweep / "compare_jobs.csv") as tmp:
        jobs.to_csv(tmp, index=False)
    with atomic_path(sweep / "compare.png") as tmp:
        score_chart(table, tmp)
    extra = {"compare_baseline.csv": against,
             "ope_accuracy.csv": ope_accuracy(ope_pairs(sweep))}
    for name, frame in extra.items():
        if frame is not None and not frame.empty:
            print(f"\n{name}:\n{frame_markdown(frame)}")
            with atomic_path(sweep / name) as tmp:
                frame.to_csv(tmp, index=False)
    print(f"\n{len(jobs)} jobs ({len(skipped)} skipped), {len(table)} configurations -> {sweep / 'compare.csv'}, "
          f"{sweep / 'compare.png'}")


def check_sweep_folder(sweep: Path) -> None:
    """Refuse a ``sweep_dir`` that is not a folder (naming what it is) or that is a single run's folder."""
    if sweep.exists() and not sweep.is_dir():
        raise RunFolderError(f"sweep_dir={str(sweep)!r}: {not_a(sweep, 'folder')}")
    if (sweep / "metrics.json").is_file():
        raise RunFolderError(f"sweep_dir={str(sweep)!r}: a single run's folder (metrics.json), not a sweep's: compare "
                             "reads the folder of a sweep (music-rl train -m ...); music-rl evaluate reads a run")


def baseline_pairs(items: list[str]) -> dict[str, str]:
    """``baseline=[key:value, ...]`` as key → value; :class:`ConfigError` for an item that is not a pair."""
    pairs = [item.partition(":") for item in items]
    if any(not sep or not key for key, sep, _ in pairs):
        raise ConfigError(f"baseline={items}: give key:value pairs, e.g. [experiment:defaults_v1]")
    return {key: value for key, _, value in pairs}


if __name__ == "__main__":
    app.run(main)
