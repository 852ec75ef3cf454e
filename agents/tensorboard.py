"""TensorBoard output of a run: one event folder (``<run>/tb``) for the VAE, propagation, PPO, evaluation,
the resolved config, figures and the HParams entry.

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
from torch.utils.tensorboard import SummaryWriter  # noqa: E402
from torch.utils.tensorboard.summary import hparams as hparams_summary  # noqa: E402

HPARAM_METRICS = ("hparams/normalized_score", "hparams/mean_reward", "hparams/like_rate")


def open_writer(run_dir: Path) -> SummaryWriter:
    """The run's SummaryWriter on ``<run_dir>/tb``."""
    return SummaryWriter(log_dir=str(run_dir / "tb"))


def log_hparams(writer: SummaryWriter, hparams: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
    """Write the HParams entry into the run's own folder (not a sub-run, unlike ``add_hparams``).

    ``metrics`` keys must be the tags of :data:`HPARAM_METRICS` (written here as scalars too).
    """
    clean = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hparams.items()}
    exp, ssi, sei = hparams_summary(clean, dict(metrics))
    fw = writer._get_file_writer()
    fw.add_summary(exp)
    fw.add_summary(ssi)
    fw.add_summary(sei)
    for tag, value in metrics.items():
        writer.add_scalar(tag, value)


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


def policies_figure(policies: Mapping[str, Mapping[str, float]], key: str = "mean_reward") -> plt.Figure:
    """Bar chart of ``key`` per policy with its 95% interval."""
    names = list(policies)
    values = [policies[n][key] for n in names]
    errs = [policies[n].get(f"{key}_ci95", 0.0) for n in names]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(names, values, yerr=errs, capsize=4, color=["C0" if n == "ppo" else "C7" for n in names])
    ax.set_ylabel(key.replace("_", " "))
    ax.set_title(f"PPO against the baselines ({key}, 95% CI)")
    fig.tight_layout()
    return fig
