"""How accurate every run's off-policy estimates were, over a sweep (``music-rl compare`` writes
``ope_accuracy.csv`` when its jobs carry ``metrics.json["ope"]``).

In each job the simulator knows every estimated policy's ``truth`` (its expected reward over the logged states).
An estimate's error is put on the scale of the policies themselves: ``(estimate - truth) / (truth_oracle -
truth_random)``, so 0.1 means a tenth of what separates the myopic oracle from choosing at random. Per
configuration (the sweep's varied keys) and estimator, over its (job, policy) pairs: the mean and largest
absolute error on that scale, the share within 0.1, the share whose 95% interval covers the truth, the mean of
the jobs' rank correlations (does the estimator order the policies as their own sessions do?), and the mean
shift from ``truth`` to ``truth_on_policy`` (what a per-step estimator cannot see).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from music_rl.reports.overrides import job_overrides
from music_rl.reports.sweep import is_config_column

ESTIMATES = ("ips", "snips", "dm", "dr", "pdis")
WITHIN = 0.1  # the target: |estimate - truth| <= this share of the oracle-random gap


def ope_pairs(sweep_dir: Path) -> pd.DataFrame:
    """One row per (finished job with an ``ope`` entry, policy, estimator): the job's overrides, the estimate,
    its half-width, the truth and the truth on the policy's own sessions, the oracle-random gap, the job's rank
    correlation for the estimator. Empty when no job has one."""
    rows = []
    for metrics_path in sorted(sweep_dir.glob("*/metrics.json")):
        try:
            ope = json.loads(metrics_path.read_text(encoding="utf-8")).get("ope")
        except (OSError, UnicodeDecodeError, ValueError):
            continue  # compare reports broken jobs already
        if not ope or "oracle" not in ope["policies"] or "random" not in ope["policies"]:
            continue
        policies = ope["policies"]
        gap = policies["oracle"]["truth"] - policies["random"]["truth"]
        base = {"job": metrics_path.parent.name, **job_overrides(metrics_path.parent),
                "log_steps": ope["log_steps"]}
        for policy, entry in policies.items():
            for estimator in ESTIMATES:
                if estimator not in entry or entry[estimator]["value"] is None:
                    continue
                truth = entry["truth_on_policy"] if estimator == "pdis" else entry["truth"]
                rows.append({**base, "policy": policy, "estimator": estimator, "value": entry[estimator]["value"],
                             "ci95": entry[estimator]["ci95"], "truth": truth, "gap": gap,
                             "shift": entry.get("truth_on_policy", np.nan) - entry["truth"],
                             "rho": ope["rank_correlation"].get(estimator)})
    return pd.DataFrame(rows)


def ope_accuracy(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per configuration and estimator, the figures of the module docstring (``pdis`` is judged against the
    policies' own sessions, the quantity it estimates)."""
    if pairs.empty:
        return pairs
    error = (pairs["value"] - pairs["truth"]) / pairs["gap"]
    data = pairs.assign(abs_error=error.abs(), within=error.abs() <= WITHIN,
                        covered=(pairs["value"] - pairs["truth"]).abs() <= pairs["ci95"].fillna(-1.0))
    config = [c for c in pairs.columns if is_config_column(c) and c not in
              ("log_steps", "policy", "estimator", "value", "ci95", "truth", "gap", "shift", "rho")]
    keys = [*config, "log_steps", "estimator"]
    out: list[dict[str, Any]] = []
    for values, group in data.groupby(keys, dropna=False, sort=False):
        row = dict(zip(keys, values if isinstance(values, tuple) else (values,), strict=True))
        row.update(n_pairs=len(group), n_jobs=group["job"].nunique(), mean_abs_error=group["abs_error"].mean(),
                   max_abs_error=group["abs_error"].max(), share_within=group["within"].mean(),
                   coverage=group["covered"].mean(),
                   rho=group.drop_duplicates("job")["rho"].astype(float).mean(),
                   shift=group["shift"].mean())
        out.append(row)
    return pd.DataFrame(out)
