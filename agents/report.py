"""Tables of results: one run's policies, and a whole sweep's configurations (``scripts/compare.py``)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from agents.evaluate import normalized_score
from envs.errors import RunFolderError

POLICY_COLUMNS = (
    "mean_reward",
    "mean_expected_reward",
    "like_rate",
    "mean_pct_listened",
    "skip_rate",
    "early_skip_rate",
    "coverage",
    "diversity",
    "mean_return",
)


def metrics_table(metrics: Mapping[str, Any]) -> str:
    """Markdown table of every policy of a ``metrics.json`` (value ± 95% half-width)."""
    cols = [c for c in POLICY_COLUMNS if c in next(iter(metrics["policies"].values()))]
    lines = ["| policy | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, values in metrics["policies"].items():
        cells = []
        for col in cols:
            ci = values.get(f"{col}_ci95")
            cells.append(
                f"{values[col]:.3f}" + (f" ± {ci:.3f}" if ci is not None and math.isfinite(ci) else "")
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if "normalized_score" in metrics:
        lines.append(f"\nnormalized_score (ppo): {_shown(metrics, 'normalized_score')}   "
                     f"(on realised reward: {_shown(metrics, 'normalized_score_realised')})")
    if "normalized_score_planner" in metrics:
        gap = metrics["planner_minus_oracle"]
        lines.append(f"normalized_score_planner (ppo, 1 = the planner, {metrics['planner_episodes']} sessions): "
                     f"{_shown(metrics, 'normalized_score_planner')}; planner - oracle: "
                     f"{gap['mean_expected_reward']:+.3f}" + (f" ± {gap['ci95']:.3f}" if gap["ci95"] else "")
                     + " expected reward per step")
    return "\n".join(lines)


def ope_table(ope: Mapping[str, Any]) -> str:
    """Markdown table of off-policy estimates: a row per policy, a column per estimator (value ± 95%), and the
    truth where the log has it."""
    policies = ope["policies"]
    first = next(iter(policies.values()))
    estimators = [k for k in ("ips", "snips", "dm", "dr", "pdis") if k in first]
    truths = [k for k in ("truth", "truth_on_policy") if k in first]
    lines = [f"{ope.get('join', '')}".strip(), f"off-policy estimates of the mean reward per step on "
             f"{ope['log_steps']} logged steps (95% intervals clustered by session)",
             "| policy | " + " | ".join(estimators + truths) + " |", "|---" * (1 + len(estimators) + len(truths)) + "|"]
    for name, entry in policies.items():
        cells = [f"{entry[e]['value']:.3f}" + (f" ± {entry[e]['ci95']:.3f}" if entry[e]["ci95"] is not None else "")
                 for e in estimators]
        cells += [f"{entry[t]:.3f}" for t in truths]
        lines.append(f"| {name} | " + " | ".join(cells) + " |" + (f"  ({entry['no_overlap']})"
                                                                  if "no_overlap" in entry else ""))
    if "not_applicable" in ope:
        lines.append(ope["not_applicable"])
    return "\n".join(line for line in lines if line)


def _shown(metrics: Mapping[str, Any], key: str) -> str:
    """A score as printed: three decimals, or why it is undefined."""
    value = metrics.get(key)
    return f"{value:.3f}" if value is not None else f"undefined ({metrics.get(f'{key}_reason', 'not measured')})"


def job_overrides(job_dir: Path) -> dict[str, str]:
    """The command-line overrides of a run or sweep job (``.hydra/overrides.yaml``), key → value as typed."""
    path = job_dir / ".hydra" / "overrides.yaml"
    items = yaml.safe_load(path.read_text()) if path.is_file() else []
    out = {}
    for item in items or []:
        key, _, value = str(item).partition("=")
        out[key.lstrip("+~")] = value
    return out


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
        row: dict[str, Any] = {"job": job.name, **job_overrides(job)}
        row["normalized_score"] = metrics.get("normalized_score")
        for key in ("mean_reward", "like_rate", "skip_rate", "coverage"):
            row[f"ppo_{key}"] = float(policies["ppo"][key])
        row["greedy_normalized_score"] = normalized_score(policies, "greedy", key="mean_expected_reward")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, yaml.YAMLError) as err:
        raise ValueError(f"broken metrics.json or overrides ({type(err).__name__}: {str(err)[:120]})") from None
    return row


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
    return pd.DataFrame(rows), skipped


def _mean_ci(values: pd.Series) -> tuple[float, float]:
    v = values.astype(float).to_numpy()
    if len(v) < 2:
        return float(v.mean()), float("nan")
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def aggregate(
    jobs: pd.DataFrame,
    metrics: tuple[str, ...] = (
        "normalized_score",
        "greedy_normalized_score",
        "ppo_mean_reward",
        "ppo_like_rate",
    ),
) -> pd.DataFrame:
    """Group jobs by their swept values (all overrides but ``seed``); mean and 95% CI over seeds."""
    swept = [
        c
        for c in jobs.columns
        if c not in ("job", "seed", "greedy_normalized_score", "normalized_score")
        and not c.startswith("ppo_")
    ]
    groups = jobs.groupby(swept, dropna=False, sort=False) if swept else [((), jobs)]
    rows = []
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(swept, key, strict=True))
        row["n_seeds"] = len(group)
        for metric in metrics:
            row[metric], row[f"{metric}_ci95"] = _mean_ci(group[metric])
        rows.append(row)
    return pd.DataFrame(rows).sort_values("normalized_score", ascending=False, ignore_index=True)


def markdown(table: pd.DataFrame) -> str:
    """The aggregated table as Markdown, metrics as ``mean ± ci``."""
    metric_cols = [c for c in table.columns if f"{c}_ci95" in table.columns]
    plain = [c for c in table.columns if c not in metric_cols and not c.endswith("_ci95")]
    header = plain + metric_cols
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for _, row in table.iterrows():
        cells = [str(row[c]) for c in plain]
        for c in metric_cols:
            ci = row[f"{c}_ci95"]
            cells.append(f"{row[c]:.3f}" + (f" ± {ci:.3f}" if math.isfinite(ci) else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def score_chart(table: pd.DataFrame, path: Path) -> None:
    """PNG bar chart of normalized_score (± 95% CI) per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    swept = [
        c
        for c in table.columns
        if not c.endswith("_ci95")
        and c
        not in ("n_seeds", "normalized_score", "greedy_normalized_score", "ppo_mean_reward", "ppo_like_rate")
    ]
    labels = [
        ", ".join(f"{c.split('.')[-1]}={row[c]}" for c in swept) or "default" for _, row in table.iterrows()
    ]
    errs = np.nan_to_num(table["normalized_score_ci95"].to_numpy(dtype=float))
    fig, ax = plt.subplots(figsize=(8, max(3, 0.35 * len(table) + 1)))
    y = np.arange(len(table))
    ax.barh(y, table["normalized_score"], xerr=errs, capsize=3, color="C0", label="ppo")
    ax.scatter(table["greedy_normalized_score"], y, color="C3", marker="|", s=200, label="greedy", zorder=3)
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="k", lw=0.8)
    ax.axvline(1, color="k", lw=0.8, ls="--")
    ax.set_xlabel("normalized_score (0 = random, 1 = oracle)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)
