"""A run's results as Markdown: every policy's figures of a ``metrics.json`` and its off-policy estimates
(``music-rl evaluate``, TensorBoard's ``policies/table``). A sweep's tables are :mod:`music_rl.reports.sweep`'s."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from music_rl.reports.markdown import markdown_header, markdown_row, markdown_table

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
    "outside_candidates_rate",  # latent actions only
    "mean_distance",  # latent actions only
)


def metrics_table(metrics: Mapping[str, Any]) -> str:
    """Markdown table of every policy of a ``metrics.json`` (value ± 95% half-width)."""
    cols = [c for c in POLICY_COLUMNS if c in next(iter(metrics["policies"].values()))]
    lines = [markdown_table(["policy", *cols], ([name, *(_with_ci(values, col) for col in cols)]
                                                for name, values in metrics["policies"].items()))]
    learnt = metrics.get("algo", "ppo")
    if "normalized_score" in metrics:
        lines.append(f"\nnormalized_score ({learnt}): {_shown(metrics, 'normalized_score')}   "
                     f"(on realised reward: {_shown(metrics, 'normalized_score_realised')})")
    if "normalized_score_catalog" in metrics:
        lines.append(f"normalized_score_catalog ({learnt}, 1 = the best unplayed track of the whole catalog, now): "
                     f"{_shown(metrics, 'normalized_score_catalog')}")
    if "normalized_score_planner" in metrics:
        gap = metrics["planner_minus_oracle"]
        lines.append(f"normalized_score_planner ({learnt}, 1 = the planner, {metrics['planner_episodes']} sessions): "
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
             markdown_header(["policy", *estimators, *truths])]
    for name, entry in policies.items():
        cells = [f"{entry[e]['value']:.3f}" + (f" ± {entry[e]['ci95']:.3f}" if entry[e]["ci95"] is not None else "")
                 for e in estimators]
        cells += [f"{entry[t]:.3f}" for t in truths]
        lines.append(markdown_row([name, *cells]) + (f"  ({entry['no_overlap']})" if "no_overlap" in entry else ""))
    if "not_applicable" in ope:
        lines.append(ope["not_applicable"])
    return "\n".join(line for line in lines if line)


def results_markdown(metrics: Mapping[str, Any]) -> str:
    """A run's final evaluation in one Markdown text: every policy's figures (:func:`metrics_table`) and, where
    measured, the off-policy estimates (:func:`ope_table`) with each estimator's rank correlation to the truth."""
    parts = [metrics_table(metrics)]
    ope = metrics.get("ope")
    if ope:
        parts.append(ope_table(ope))
        if ope.get("rank_correlation"):
            parts.append("rank correlation of the estimates with the truth: " + ", ".join(
                f"{name} {_number(rho)}" for name, rho in ope["rank_correlation"].items()))
    return "\n\n".join(parts)


def _with_ci(values: Mapping[str, Any], col: str) -> str:
    """A policy's figure as printed: three decimals, then its 95% half-width where finite."""
    ci = values.get(f"{col}_ci95")
    return f"{values[col]:.3f}" + (f" ± {ci:.3f}" if ci is not None and math.isfinite(ci) else "")


def _number(value: float | None) -> str:
    """A figure as printed: three decimals, or a dash where undefined."""
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def _shown(metrics: Mapping[str, Any], key: str) -> str:
    """A score as printed: three decimals, or why it is undefined."""
    value = metrics.get(key)
    return f"{value:.3f}" if value is not None else f"undefined ({metrics.get(f'{key}_reason', 'not measured')})"
