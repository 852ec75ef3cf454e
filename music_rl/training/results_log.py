"""The final evaluation for TensorBoard: the headline scores, the HParams entry (the names every run shares, then
the run's swept keys), the baselines' comparison figure and every policy's figures as a Markdown table."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from stable_baselines3.common.logger import Logger

from music_rl.config import TrainConfig, policy_group
from music_rl.reports.overrides import swept_overrides
from music_rl.reports.report import results_markdown
from music_rl.training.run_world import listener_seed
from music_rl.training.tensorboard import log_hparams, log_values, policies_figure


def hparam_keys(cfg: TrainConfig) -> dict[str, str]:
    """Each HParams name and the config key it shows: the same names in every run, so a sweep lines up in
    TensorBoard (``listener_seed`` shows the seed derived from the run seed where ``listeners.seed`` is unset)."""
    return {
        "latent_dim": "vae.latent_dim", "like_weight": "reward.like_weight", "decay": "reward.decay",
        "observation": "env.observation", "reward_source": "env.reward_source", "n_clusters": "reward.n_clusters",
        "seed": "seed", "total_timesteps": f"{cfg.algo}.total_timesteps", "policy": f"{policy_group(cfg)}.policy",
        "protocol": "eval.protocol", "listener_seed": "listeners.seed", "data_source": "data.source",
        "n_tracks": "data.n_tracks", "ent_coef": "ppo.ent_coef", "learning_rate": "ppo.learning_rate",
        "lr_schedule": "ppo.lr_schedule", "gamma": "ppo.gamma", "action": "env.action", "algo": "algo",
    }


def hparams(cfg: TrainConfig, swept: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The HParams entry: the values of :func:`hparam_keys`, and every swept key (``swept``, key → value as typed)
    that has no name there under its own key (its config value, or the text typed for a config group such as
    ``experiment``)."""
    keys = hparam_keys(cfg)
    config = OmegaConf.create(OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True))
    values = {name: OmegaConf.select(config, key) for name, key in keys.items()}
    values["listener_seed"] = listener_seed(cfg)
    shown = set(keys.values())
    values.update({key: OmegaConf.select(config, key, default=text) for key, text in (swept or {}).items()
                   if key not in shown})
    return values


def log_results(cfg: TrainConfig, run_dir: Path, logger: Logger, metrics: dict[str, Any], step: int) -> None:
    """The final evaluation for TensorBoard: the headline scores (``hparams/*`` scalars, the HParams entry's
    metrics, the run's swept keys first; ``ppo_*`` the learnt policy's whatever its algo, as in ``music-rl
    compare``), the baselines' comparison figure (``policies/final``) and every policy's figures in one Markdown
    table (``policies/table``, text). Named so that TensorBoard's Time Series opens (its first two groups) on the
    learning curves (``eval/*``) and the headline scores."""
    log_values(logger, {"policies/final": policies_figure(metrics["policies"], learnt=learnt_name(metrics)),
                        "policies/table": results_markdown(metrics)}, step)
    learnt = metrics["policies"][learnt_name(metrics)]
    headline = {"hparams/normalized_score": _tb_number(metrics["normalized_score"]),
                "hparams/normalized_score_catalog": _tb_number(metrics.get("normalized_score_catalog")),
                "hparams/normalized_score_planner": _tb_number(metrics.get("normalized_score_planner")),
                "hparams/ppo_mean_reward": learnt["mean_reward"], "hparams/ppo_like_rate": learnt["like_rate"]}
    swept = swept_overrides(run_dir)
    names = {key: name for name, key in hparam_keys(cfg).items()}
    log_hparams(logger, hparams(cfg, swept), headline, step, differ=[names.get(key, key) for key in swept])


def learnt_name(metrics: dict[str, Any]) -> str:
    """The learnt policy's key in ``metrics["policies"]``: its ``algo`` (``ppo`` when absent: a discrete run)."""
    return str(metrics.get("algo", "ppo"))


def _tb_number(value: float | None) -> float:
    """A metric for TensorBoard, where an undefined one (None in metrics.json) is NaN."""
    return float("nan") if value is None else value
