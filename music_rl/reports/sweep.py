"""A sweep's report (``music-rl compare``): its finished jobs collected, grouped into configurations over their
replicates with interval estimates (:mod:`music_rl.reports.aggregate`), compared with the best configuration or a
baseline, as Markdown tables and a chart."""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from music_rl.core.errors import RunFolderError
from music_rl.evaluation.evaluate import normalized_score
from music_rl.reports.aggregate import MIN_REPLICATES, improvement_interval, iqm_interval, t_interval
from music_rl.reports.markdown import markdown_table
from music_rl.reports.overrides import HOW_KEYS, job_overrides

# jobs that differ only in these are replicates of one configuration (a seed picks a listener too)
REPLICATE_KEYS = ("seed", "listeners.seed")
# the scores of a job: per configuration, the mean and its 95% interval, and the IQM and its bootstrap interval;
# the probability of improvement on the first (normalized_score_catalog: 1 = the catalog oracle, every action
# formulation on one scale)
SCORES = ("normalized_score", "normalized_score_catalog", "normalized_score_planner")
# per configuration, the mean and its 95% interval of each of these; a job reports them all (compare_jobs.csv).
# ppo_*: the learnt policy's, policies.<algo> (PPO's unless the run's algo is another); the share of its tracks
# outside the k candidates only where a job has a latent action (0 for a discrete one, by construction); the
# learner's training time (wall and CPU: run_info.json's stage of its algo) and the job's (every stage's wall time)
OUTSIDE = "ppo_outside_candidates_rate"
TIMES = ("ppo_seconds", "ppo_cpu_seconds", "job_seconds")
COMPARED = (*SCORES, "greedy_normalized_score", "ppo_mean_reward", "ppo_like_rate", OUTSIDE, *TIMES)
JOB_METRICS = (*COMPARED, "ppo_skip_rate", "ppo_coverage")
# per configuration, from the best configuration (the highest IQM of SCORES[0]): P(best > it) on the same
# replicates, its interval, and how many replicates the two share
POI = "poi_best"


def _job_row(job: Path) -> dict[str, Any]:
    """One finished job's overrides and final metrics; ValueError (why) for an unfinished or broken one."""
    metrics_path = job / "metrics.json"
    if not metrics_path.is_file():
        failed = job / "failed.json"
        why = json.loads(failed.read_text()).get("error", "") if failed.is_file() else ""
        raise ValueError(f"failed: {why}" if why else "unfinished (no metrics.json)")
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        policies = metrics["policies"]
        algo = metrics.get("algo", "ppo")
        learnt = policies[algo]
        row: dict[str, Any] = {"job": job.name, **job_overrides(job)}
        row.update({score: None if metrics[score] is None else float(metrics[score])
                    for score in SCORES if score in metrics})
        row["score_reason"] = "; ".join(metrics[f"{s}_reason"] for s in SCORES if metrics.get(f"{s}_reason"))
        for key in ("mean_reward", "like_rate", "skip_rate", "coverage", "outside_candidates_rate"):
            if key in learnt:
                row[f"ppo_{key}"] = float(learnt[key])
        row["greedy_normalized_score"] = normalized_score(policies, "greedy", key="mean_expected_reward")
        row.update(_job_times(job / "run_info.json", algo))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, yaml.YAMLError) as err:
        raise ValueError(f"broken metrics.json, run_info.json or overrides ({type(err).__name__}: "
                         f"{(str(err).strip().splitlines() or [''])[0][:120]})") from None
    return row


def _job_times(info: Path, algo: str) -> dict[str, float | None]:
    """A job's :data:`TIMES` from its ``run_info.json`` (None where it has none): the learner's wall and CPU time,
    whatever its algo, and the job's wall time (every stage's)."""
    if not info.is_file():
        return dict.fromkeys(TIMES)
    run_info = json.loads(info.read_text(encoding="utf-8"))
    wall, cpu = run_info["wall_time_s"], run_info.get("cpu_time_s", {})  # cpu_time_s: runs since it was recorded
    return {"ppo_seconds": wall.get(algo), "ppo_cpu_seconds": cpu.get(algo), "job_seconds": sum(wall.values())}


def collect_sweep(sweep_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """One row per finished job of a sweep folder (its overrides and final metrics), and one line per job
    folder skipped because it is unfinished, failed or broken."""
    if not sweep_dir.is_dir():
        raise RunFolderError(f"{sweep_dir}: no such sweep folder")
    rows, skipped = [], []
    for job in sorted(p for p in sweep_dir.iterdir() if p.is_dir() and (p / ".hydra").is_dir()):
        try:
            rows.append(_job_row(job))
        except ValueError as why:
            skipped.append(f"{job.name}: {why}")
    if not rows:
        detail = f" ({len(skipped)} skipped: {'; '.join(skipped[:3])})" if skipped else ""
        raise RunFolderError(f"{sweep_dir}: no finished job folder with a metrics.json{detail}")
    jobs = pd.DataFrame(rows)
    if OUTSIDE in jobs:  # a sweep with latent actions: a discrete job's tracks are all candidates
        jobs[OUTSIDE] = jobs[OUTSIDE].fillna(0.0)
    return jobs, skipped


def is_config_column(column: str) -> bool:
    """Whether a column of :func:`collect_sweep`'s jobs or of :func:`aggregate`'s table names a configuration's
    key (an override), rather than the job, its replicate or a figure."""
    return (column not in ("job", "score_reason", "n_seeds", "n_paired", *REPLICATE_KEYS, *HOW_KEYS)
            and not column.startswith((*JOB_METRICS, POI)))


def replicate_ids(jobs: pd.DataFrame) -> pd.Series:
    """Each job's replicate: its ``seed`` and ``listeners.seed`` overrides (``default`` where not given)."""
    keys = [k for k in REPLICATE_KEYS if k in jobs.columns]
    return jobs.apply(lambda job: " ".join(f"{k}={job[k] if pd.notna(job[k]) else 'default'}" for k in keys),
                      axis=1) if keys else pd.Series("default", index=jobs.index)


def _undefined_notes(jobs: pd.DataFrame, values: pd.DataFrame) -> list[str]:
    """One note per metric that some jobs leave undefined (``null`` in metrics.json, with its reason there, or
    absent)."""
    notes = []
    for metric in values.columns:
        missing = jobs.loc[values[metric].isna(), "job"].tolist()
        if missing and metric in SCORES:
            reasons = jobs.get("score_reason", pd.Series("", index=jobs.index))  # absent in hand-made tables
            why = {r for r, m in zip(reasons, values[metric].isna(), strict=True) if m and isinstance(r, str) and r}
            notes.append(f"{metric}: undefined in {len(missing)} of {len(jobs)} jobs ({', '.join(missing[:3])}"
                         f"{' ...' if len(missing) > 3 else ''}){': ' + '; '.join(sorted(why)) if why else ''}")
            continue
        if missing and len(missing) < len(jobs):
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            notes.append(f"{metric}: undefined in {len(missing)} of {len(jobs)} jobs ({shown}), left out of its "
                         "figures")
    return notes


def _figures(values: pd.DataFrame) -> dict[str, float]:
    """One configuration's figures over its replicates: mean and 95% half-width of every metric, IQM and its
    interval of the scores; undefined values left out."""
    nan = float("nan")
    row: dict[str, float] = {}
    for metric in values.columns:
        v = values[metric].dropna().to_numpy()
        row[metric], row[f"{metric}_ci95"] = t_interval(v) if len(v) else (nan, nan)
        if metric in SCORES:
            row[f"{metric}_iqm"], row[f"{metric}_iqm_lo"], row[f"{metric}_iqm_hi"] = (
                iqm_interval(v) if len(v) else (nan, nan, nan))
    return row


def _improvement(best: pd.Series, other: pd.Series) -> dict[str, float]:
    """P(best > other) on the replicates both have a score for (each indexed by replicate), its interval and
    their number."""
    both = pd.concat([best, other], axis=1, join="inner").dropna()
    if both.empty:
        return {POI: float("nan"), f"{POI}_lo": float("nan"), f"{POI}_hi": float("nan"), "n_paired": 0}
    p, lo, hi = improvement_interval(both.iloc[:, 0].to_numpy(), both.iloc[:, 1].to_numpy())
    return {POI: p, f"{POI}_lo": lo, f"{POI}_hi": hi, "n_paired": len(both)}


def aggregate(jobs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Group jobs into configurations (every override but the replicate's, :data:`REPLICATE_KEYS`): per
    configuration the mean and 95% interval of each metric over its replicates, the IQM and its stratified
    bootstrap interval of the scores, and the probability that the best configuration (the highest IQM) beats it
    on the same replicates. Sorted best first; with notes on what the figures leave out or cannot say."""
    config = [c for c in jobs.columns if is_config_column(c)]
    values = jobs[[m for m in COMPARED if m in jobs.columns]].astype(float)
    notes = _undefined_notes(jobs, values)
    replicate = replicate_ids(jobs)
    groups = list(jobs.groupby(config, dropna=False, sort=False).groups.values()) if config else [jobs.index]
    rows = [{**{c: jobs.at[index[0], c] for c in config}, "n_seeds": len(index), **_figures(values.loc[index])}
            for index in groups]
    score = SCORES[0]
    by_replicate = [values.loc[index, score].groupby(replicate.loc[index]).mean() for index in groups]
    iqms = np.array([row[f"{score}_iqm"] for row in rows])
    if np.isfinite(iqms).any():
        best = int(np.nanargmax(iqms))
        for i, row in enumerate(rows):
            row.update(_improvement(by_replicate[best], by_replicate[i]) if i != best else {})
    table = pd.DataFrame(rows).sort_values(f"{score}_iqm", ascending=False, ignore_index=True, na_position="last")
    fewest = int(table["n_seeds"].min())
    if fewest < MIN_REPLICATES:
        few = int((table["n_seeds"] < MIN_REPLICATES).sum())
        notes.append(f"{few} of {len(table)} configurations have fewer than {MIN_REPLICATES} replicates (fewest: "
                     f"{fewest}): their IQM is the mean or nearly, and the bootstrap intervals and probabilities of "
                     "improvement say little; run more seeds (make sweep SEEDS=0,1,2,3,4)")
    unpaired = int((table["n_paired"] == 0).sum()) if "n_paired" in table else 0
    if unpaired:
        notes.append(f"{POI}: {unpaired} configuration(s) share no replicate (seed, listeners.seed) with the best "
                     "one: no probability of improvement for them")
    return table, notes


def against_baseline(jobs: pd.DataFrame, baseline: Mapping[str, str]) -> pd.DataFrame:
    """Every configuration against its baseline, paired by replicate: the baseline of a configuration is the one
    with ``baseline``'s values for those keys and the configuration's own for the others. Per configuration:
    the mean difference in normalized_score (it minus its baseline) with a 95% t-interval, and the mean ratio of
    PPO's wall time (``run_info.json`` ``wall_time_s.ppo``) with its interval, over the replicates both have."""
    config = [c for c in jobs.columns if is_config_column(c)]
    missing = [k for k in baseline if k not in config]
    if missing:
        raise RunFolderError(f"baseline: {', '.join(missing)} is not a key the sweep's jobs vary "
                             f"(they vary: {', '.join(config) or 'nothing'})")
    keyed = jobs.assign(_replicate=replicate_ids(jobs))
    is_base = np.logical_and.reduce([keyed[k].astype(str) == str(v) for k, v in baseline.items()])
    if not is_base.any():
        seen = "; ".join(f"{k}: {', '.join(sorted(keyed[k].astype(str).unique()))}" for k in baseline)
        raise RunFolderError(f"baseline: no job has {', '.join(f'{k}={v}' for k, v in baseline.items())} "
                             f"(the sweep's values: {seen})")
    others = [c for c in config if c not in baseline]
    rows = []
    for values, group in keyed[~is_base].groupby(config, dropna=False, sort=False):
        values = values if isinstance(values, tuple) else (values,)
        match = dict(zip(config, values, strict=True))
        in_group: list[pd.Series[bool] | np.ndarray] = [keyed[k].astype(str) == str(match[k]) for k in others]
        base = keyed[is_base & np.logical_and.reduce(in_group or [np.ones(len(keyed), dtype=bool)])]
        both = group.merge(base, on="_replicate", suffixes=("", "_base"))
        diff = (both[SCORES[0]] - both[f"{SCORES[0]}_base"]).dropna().to_numpy(dtype=float)
        ratio = (both["ppo_seconds"] / both["ppo_seconds_base"]).dropna().to_numpy(dtype=float)
        row = {**match, "n_paired": len(both)}
        for name, v in (("score_diff", diff), ("time_ratio", ratio)):
            mean, half = t_interval(v) if len(v) else (float("nan"), float("nan"))
            row.update({name: mean, f"{name}_lo": mean - half, f"{name}_hi": mean + half})
        rows.append(row)
    return pd.DataFrame(rows)


def frame_markdown(frame: pd.DataFrame, digits: int = 3) -> str:
    """Any table as Markdown: numbers to ``digits`` decimals, missing values as dashes."""
    def cell(value: Any) -> str:
        if isinstance(value, float) and not math.isnan(value) and not value.is_integer():
            return f"{value:.{digits}f}"
        return _cell(value)

    return markdown_table([str(c) for c in frame.columns],
                          ([cell(v) for v in row] for row in frame.itertuples(index=False)))


def _cell(value: Any) -> str:
    """A plain cell: a missing value as a dash, a whole number without decimals."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _interval_cell(value: float, lo: float, hi: float) -> str:
    return "–" if math.isnan(value) else f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def markdown(table: pd.DataFrame) -> str:
    """The aggregated table as Markdown: means as ``mean ± half-width``, IQMs and probabilities of improvement
    as ``value [lo, hi]``, the best configuration's own probability as a dash."""
    helpers = {c for c in table.columns for base in table.columns
               if c in (f"{base}_ci95", f"{base}_lo", f"{base}_hi")}
    header = [c for c in table.columns if c not in helpers]
    return markdown_table(header, ([_aggregated_cell(table, row, c) for c in header] for _, row in table.iterrows()))


def _aggregated_cell(table: pd.DataFrame, row: pd.Series, column: str) -> str:
    """One cell of :func:`markdown`: ``mean ± half-width``, ``value [lo, hi]`` or the plain value."""
    if f"{column}_ci95" in table.columns:
        ci = row[f"{column}_ci95"]
        return "–" if math.isnan(row[column]) else f"{row[column]:.3f}" + (f" ± {ci:.3f}" if math.isfinite(ci) else "")
    if f"{column}_lo" in table.columns:
        return _interval_cell(row[column], row[f"{column}_lo"], row[f"{column}_hi"])
    return _cell(row[column])


def score_chart(table: pd.DataFrame, path: Path) -> None:
    """PNG chart of normalized_score per configuration: the mean (bar) with its 95% interval, the IQM (diamond)
    with its bootstrap interval, greedy's mean marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config = [c for c in table.columns if is_config_column(c)]
    labels = [textwrap.shorten(", ".join(f"{c.split('.')[-1]}={row[c]}" for c in config) or "default", 70,
                               placeholder=" ...") for _, row in table.iterrows()]
    score = SCORES[0]
    y = np.arange(len(table))
    iqm = table[f"{score}_iqm"].to_numpy(dtype=float)
    iqm_err = np.abs(np.vstack([iqm - table[f"{score}_iqm_lo"], table[f"{score}_iqm_hi"] - iqm]))
    fig, ax = plt.subplots(figsize=(8, max(3.5, 0.45 * len(table) + 1.5)))
    ax.barh(y, table[score], xerr=np.nan_to_num(table[f"{score}_ci95"].to_numpy(dtype=float)), capsize=3,
            color="C0", alpha=0.6, label="learnt policy mean (95% t-interval)")
    ax.errorbar(iqm, y + 0.2, xerr=np.nan_to_num(iqm_err), fmt="D", color="C1", capsize=3, ms=5,
                label="learnt policy IQM (95% bootstrap interval)")
    ax.scatter(table["greedy_normalized_score"], y, color="C3", marker="|", s=200, label="greedy mean", zorder=3)
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="k", lw=0.8)
    ax.axvline(1, color="k", lw=0.8, ls="--")
    n_min, n_max = table["n_seeds"].min(), table["n_seeds"].max()
    ax.set_xlabel(f"{score} (0 = random, 1 = oracle), {n_min}" + (f"..{n_max}" if n_max != n_min else "")
                  + " replicates per configuration", fontsize=9)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)
