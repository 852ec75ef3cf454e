"""TensorBoard output of a run: ONE writer, SB3's :class:`~stable_baselines3.common.logger.Logger`, on the run's
``tb/`` folder, for the VAE, propagation, PPO (SB3's own ``rollout/``, ``train/``, ``time/``), evaluation, the
resolved config (text), figures and the HParams entry.

Everything of a run goes into the same folder so that ``tensorboard --logdir outputs`` lists one entry per
run (or sweep job), and the HParams tab lines up the swept values with the final metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from stable_baselines3.common.logger import Figure, HParam, Logger, configure  # noqa: E402


def open_logger(folder: Path) -> Logger:
    """SB3's logger writing TensorBoard events (only) into ``folder``."""
    return configure(str(folder), ["tensorboard"])


def log_values(logger: Logger, values: Mapping[str, Any], step: int) -> None:
    """Record ``values`` (numbers, text, matplotlib figures) under their tags and write them at ``step``."""
    for tag, value in values.items():
        logger.record(tag, Figure(value, close=True) if isinstance(value, plt.Figure) else value)
    logger.dump(step)


def log_hparams(logger: Logger, hparams: Mapping[str, Any], metrics: Mapping[str, float], step: int) -> None:
    """The HParams entry, in the run's own folder, and its metrics as scalars (the tab reads both)."""
    clean = {k: (v if isinstance(v, int | float | str | bool) else str(v)) for k, v in hparams.items()}
    logger.record("hparams", HParam(clean, dict(metrics)))
    log_values(logger, metrics, step)


def latent_figure(latents: np.ndarray, labels: np.ndarray | None, title: str) -> plt.Figure:
    """Scatter of the first two latent dimensions, coloured by genre (or cluster)."""
    fig, ax = plt.subplots(figsize=(6, 5))
    n = len(latents)
    idx = np.random.default_rng(0).choice(n, size=min(n, 5000), replace=False)
    xy = latents[idx, :2] if latents.shape[1] > 1 else np.c_[latents[idx, 0], np.zeros(len(idx))]
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=3, alpha=0.5)
    else:
        names = np.asarray(labels).astype(str)[idx]
        for name in np.unique(names):
            sel = names == name
            ax.scatter(xy[sel, 0], xy[sel, 1], s=3, alpha=0.6, label=name)
        if len(np.unique(names)) <= 15:
            ax.legend(markerscale=4, fontsize=7, loc="best")
    ax.set_xlabel("z0")
    ax.set_ylabel("z1")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def policies_figure(policies: Mapping[str, Mapping[str, float]], key: str = "mean_reward",
                    learnt: str = "ppo") -> plt.Figure:
    """Bar chart of ``key`` per policy with its 95% interval, the learnt policy (``policies.<algo>``) in colour."""
    names = list(policies)
    values = [policies[n][key] for n in names]
    errs = [policies[n].get(f"{key}_ci95", 0.0) for n in names]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(names, values, yerr=errs, capsize=4, color=["C0" if n == learnt else "C7" for n in names])
    ax.set_ylabel(key.replace("_", " "))
    ax.set_title(f"{learnt.upper()} against the baselines ({key}, 95% CI)")
    fig.tight_layout()
    return fig


def budget_figure(new_listener: Mapping[str, Any]) -> plt.Figure:
    """``metrics.json["new_listener"]``: normalized score against the listener's answers, one line per method with
    its 95% bootstrap interval; the probe round (a string budget) as a separate point at the right."""
    budgets = list(new_listener["budgets"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, entry) in enumerate(sorted(new_listener["policies"].items())):
        xs = np.arange(len(budgets), dtype=float) + (i - 3) * 0.04  # a small dodge keeps the intervals apart
        ys = np.array([np.nan if v is None else v for v in entry["normalized_score"]], dtype=float)
        lo = np.array([np.nan if c is None else c[0] for c in entry["ci95"]], dtype=float)
        hi = np.array([np.nan if c is None else c[1] for c in entry["ci95"]], dtype=float)
        numeric = np.array([not isinstance(b, str) for b in budgets])
        style = {"color": f"C{i}", "lw": 2.5 if name == "ppo" else 1.2}
        ax.plot(xs[numeric], ys[numeric], marker="o", label=name, **style)
        ax.errorbar(xs, ys, yerr=[ys - lo, hi - ys], fmt="none", capsize=3, **style)
        ax.plot(xs[~numeric], ys[~numeric], marker="s", ls="none", color=f"C{i}")
    ax.set_xticks(np.arange(len(budgets)), [str(b) for b in budgets])
    ax.set_xlabel("the listener's answers before evaluation (B; probe80: the probe round)")
    ax.set_ylabel("normalized score (0 random, 1 oracle)")
    ax.set_title(f"A new listener: {new_listener['n_listeners']} held-out listeners, 95% bootstrap CI")
    ax.axhline(0.0, color="grey", lw=0.5)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return fig
