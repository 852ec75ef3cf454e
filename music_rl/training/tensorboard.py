"""TensorBoard output of a run: ONE writer, SB3's :class:`~stable_baselines3.common.logger.Logger`, on the run's
``tb/`` folder, for the VAE, propagation, PPO (SB3's own ``rollout/``, ``train/``, ``time/``), evaluation, the
resolved config (text), figures and the HParams entry.

Everything of a run goes into the same folder so that ``tensorboard --logdir outputs`` lists one entry per
run (or sweep job), and the HParams tab lines up the swept values with the final metrics.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.figure  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from stable_baselines3.common.logger import Figure, Logger, TensorBoardOutputFormat, configure  # noqa: E402
from tensorboard.compat.proto.summary_pb2 import Summary  # noqa: E402
from tensorboard.plugins.hparams.api_pb2 import Experiment  # noqa: E402
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData  # noqa: E402
from torch.utils.tensorboard.summary import hparams as torch_hparams  # noqa: E402


def open_logger(folder: Path) -> Logger:
    """SB3's logger writing TensorBoard events (only) into ``folder``."""
    return configure(str(folder), ["tensorboard"])


def log_values(logger: Logger, values: Mapping[str, Any], step: int) -> None:
    """Record ``values`` (numbers, text, matplotlib figures) under their tags and write them at ``step``."""
    for tag, value in values.items():
        logger.record(tag, Figure(value, close=True) if isinstance(value, matplotlib.figure.Figure) else value)
    logger.dump(step)


def log_hparams(logger: Logger, hparams: Mapping[str, Any], metrics: Mapping[str, float], step: int,
                differ: Collection[str] = ()) -> None:
    """The HParams entry, in the run's own folder, and its metrics as scalars (the tab reads both).

    TensorBoard's HParams table shows the first five hparams of the experiment it reads (sorted: those marked as
    differing first, then by name) and its first five metrics: the experiment written here marks the hparams in
    ``differ`` (a sweep's swept keys) as differing and lists ``metrics`` in the order given, each named by its
    tag without the group (``hparams/normalized_score`` is shown as ``normalized_score``).
    """
    clean = {k: (v if isinstance(v, int | float | str | bool) else str(v)) for k, v in hparams.items()}
    experiment, start, end = torch_hparams(clean, dict(metrics))  # type: ignore[no-untyped-call]  # torch: no hints
    writer = next(out.writer.file_writer for out in logger.output_formats if isinstance(out, TensorBoardOutputFormat))
    for summary in (_mark_differing(experiment, differ), start, end):
        writer.add_summary(summary)  # type: ignore[attr-defined]  # torch types SummaryWriter.file_writer as None
    log_values(logger, metrics, step)


def _mark_differing(experiment: Summary, differ: Collection[str]) -> Summary:
    """The experiment summary of :func:`torch.utils.tensorboard.summary.hparams` with the hparams in ``differ``
    first and marked as differing, and its metrics named without their group."""
    content = experiment.value[0].metadata.plugin_data
    data = HParamsPluginData.FromString(content.content)
    infos = sorted(data.experiment.hparam_infos, key=lambda info: info.name not in differ)
    metrics = list(data.experiment.metric_infos)
    for info in infos:
        info.differs = info.name in differ
    for metric in metrics:
        metric.display_name = metric.name.tag.rsplit("/", 1)[-1]
    data.experiment.CopyFrom(Experiment(hparam_infos=infos, metric_infos=metrics))
    content.content = data.SerializeToString()
    return experiment


def latent_figure(latents: np.ndarray, labels: np.ndarray | None, title: str) -> matplotlib.figure.Figure:
    """Scatter of the first two latent dimensions, coloured by genre (or cluster)."""
    fig, ax = plt.subplots(figsize=(6, 5))
    n = len(latents)
    idx = np.random.default_rng(0).choice(n, size=min(n, 5000), replace=False)
    xy = latents[idx, :2] if latents.shape[1] > 1 else np.c_[latents[idx, 0], np.zeros(len(idx))]
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=3, alpha=0.5)
    else:
        names = np.asarray(labels)[idx].astype(str)  # the sample's labels only (a catalog's may be 100M)
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


def policies_figure(policies: Mapping[str, Mapping[str, float]],
                    keys: tuple[str, ...] = ("mean_reward", "like_rate", "skip_rate"),
                    learnt: str = "ppo") -> matplotlib.figure.Figure:
    """One panel per figure in ``keys``: a horizontal bar per policy (its name on the left, so names never overlap)
    with its 95% interval, the learnt policy (``policies.<algo>``) in colour."""
    names = list(policies)
    keys = tuple(key for key in keys if all(key in policies[n] for n in names))
    fig, axes = plt.subplots(1, len(keys), figsize=(3.4 * len(keys) + 1.2, 0.42 * len(names) + 1.4), sharey=True,
                             squeeze=False)
    y = np.arange(len(names))
    for ax, key in zip(axes[0], keys, strict=True):
        errs = np.nan_to_num(np.array([policies[n].get(f"{key}_ci95") for n in names], dtype=float))
        ax.barh(y, [policies[n][key] for n in names], xerr=errs, capsize=3,
                color=["C0" if n == learnt else "C7" for n in names])
        ax.set_title(key.replace("_", " "), fontsize=10)
        ax.axvline(0.0, color="k", lw=0.6)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(y, names)
    axes[0][0].invert_yaxis()
    fig.suptitle(f"{learnt.upper()} against the baselines (final evaluation, 95% CI)", fontsize=11)
    fig.tight_layout()
    return fig


def budget_figure(new_listener: Mapping[str, Any]) -> matplotlib.figure.Figure:
    """``metrics.json["new_listener"]``: normalized score against the listener's answers, one line per method with
    its 95% bootstrap interval; the probe round (a string budget) as a separate point at the right."""
    budgets = list(new_listener["budgets"])
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    palette = matplotlib.colormaps["tab20"]  # 20 distinct colours: one per method
    for i, (name, entry) in enumerate(sorted(new_listener["policies"].items())):
        xs = np.arange(len(budgets), dtype=float) + (i - 3) * 0.04  # a small dodge keeps the intervals apart
        ys = np.array([np.nan if v is None else v for v in entry["normalized_score"]], dtype=float)
        lo = np.array([np.nan if c is None else c[0] for c in entry["ci95"]], dtype=float)
        hi = np.array([np.nan if c is None else c[1] for c in entry["ci95"]], dtype=float)
        numeric = np.array([not isinstance(b, str) for b in budgets])
        colour = "k" if name == "ppo" else palette(i % palette.N)  # the learnt policy in black, over the rest
        style: dict[str, Any] = {"color": colour, "lw": 2.5 if name == "ppo" else 1.2}
        ax.plot(xs[numeric], ys[numeric], marker="o", label=name, **style)
        ax.errorbar(xs, ys, yerr=[ys - lo, hi - ys], fmt="none", capsize=3, **style)
        ax.plot(xs[~numeric], ys[~numeric], marker="s", ls="none", color=colour)
    ax.set_xticks(np.arange(len(budgets)), [str(b) for b in budgets])
    ax.set_xlabel("the listener's answers before evaluation (B; probeN: the probe round, N answers)")
    ax.set_ylabel("normalized score (0 random, 1 oracle)")
    ax.set_title(f"A new listener: {new_listener['n_listeners']} held-out listeners, 95% bootstrap CI")
    ax.axhline(0.0, color="grey", lw=0.5)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes: never over a line
    fig.tight_layout()
    return fig


def sim2real_figure(sim2real: Mapping[str, Any]) -> matplotlib.figure.Figure:
    """``metrics.json["sim2real"]``: left, each policy's normalized score in the learnt simulator against its score
    with the reference listeners (the diagonal: a faithful simulator), at ``log_sessions``; right, Kendall's tau,
    the transfer ratio and the share of the log-likelihood gap closed against the log size, with intervals."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    policies = sim2real["ranking"]["policies"]
    pairs = {n: (p["reference"], p["learnt"]) for n, p in policies.items() if None not in (p["reference"], p["learnt"])}
    for i, (name, (x, y)) in enumerate(sorted(pairs.items())):
        left.scatter([x], [y], color=f"C{i % 10}")
        left.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    values = [v for pair in pairs.values() for v in pair] or [0.0, 1.0]
    lo, hi = min(values) - 0.05, max(values) + 0.05
    left.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
    left.set_xlabel("normalized score against the reference listeners")
    left.set_ylabel("normalized score in the learnt simulator")
    left.set_title(f"{sim2real['log_sessions']} logged sessions: kendall tau {sim2real['ranking']['kendall_tau']}",
                   fontsize=10)
    sizes = [entry["log_sessions"] for entry in sim2real["log_sizes"]]
    curves = {"kendall tau": [(e["ranking"]["kendall_tau"], e["ranking"]["ci95"]) for e in sim2real["log_sizes"]],
              "transfer ratio": [(e["transfer"]["ratio"], e["transfer"]["ci95"]) for e in sim2real["log_sizes"]],
              "log-likelihood gap closed": [(e["predictive"]["log_likelihood_gap_closed"], None)
                                            for e in sim2real["log_sizes"]]}
    for i, (label, points) in enumerate(curves.items()):
        ys = np.array([np.nan if v is None else v for v, _ in points], dtype=float)
        lows = np.array([np.nan if ci is None else ci[0] for _, ci in points], dtype=float)
        highs = np.array([np.nan if ci is None else ci[1] for _, ci in points], dtype=float)
        right.plot(sizes, ys, marker="o", color=f"C{i}", label=label)
        right.errorbar(sizes, ys, yerr=[ys - lows, highs - ys], fmt="none", capsize=3, color=f"C{i}")
    right.set_xscale("log")
    right.set_xlabel("logged sessions")
    right.axhline(1.0, color="grey", lw=0.5)
    right.legend(fontsize=8)
    right.set_title("how much log a faithful simulator needs (95% bootstrap CI)", fontsize=10)
    fig.tight_layout()
    return fig
