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
