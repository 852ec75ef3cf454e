"""The run's scoring stage, everything ``metrics.json`` holds: the learnt policy against the baselines and the
planning reference on fresh sessions, the held-out part of a user's log estimated off-policy, a new listener, the
sim2real protocol and the off-policy estimators checked against the truth. Also a saved run scored again
(``music-rl evaluate``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.policies import ActorCriticPolicy

from envs.env_config import ActionKind
from envs.world import World
from music_rl.config import TrainConfig
from music_rl.core.errors import ConfigError, RunFolderError
from music_rl.data.feedback import read_feedback
from music_rl.evaluation.adaptive import Learnt
from music_rl.evaluation.baselines import baseline_policies, oracle_catalog_subset, oracle_catalog_tracks
from music_rl.evaluation.evaluate import evaluate_policies, make_eval_env
from music_rl.evaluation.new_listener import evaluate_new_listener
from music_rl.evaluation.offpolicy import check_estimators, estimate_log, estimate_log_file
from music_rl.evaluation.planner import planner_policy
from music_rl.learners.algos import model_policy, policy_architecture
from music_rl.learners.models import check_fits, load_encoder, load_model, model_path
from music_rl.learners.policies import sampling_policy
from music_rl.runs.run_info import RunInfo
from music_rl.runs.seeding import derive_seed
from music_rl.training.learn import train_model
from music_rl.training.run_world import load_run_world
from music_rl.training.tensorboard import budget_figure, log_values, open_logger, sim2real_figure

LATENT_NO_OPE = ("off-policy estimates weigh the k candidates by the policy's probabilities "
                 "(music_rl/evaluation/offpolicy.py): a latent action has none; not estimated for env.action=latent")
NON_PPO_NO_OPE = ("off-policy estimates weigh the k candidates by PPO's probabilities "
                  "(music_rl/evaluation/offpolicy.py, policies ppo and ppo_sample); not estimated for algo={algo}")


def score_run(cfg: TrainConfig, run_dir: Path, world: World, model: BaseAlgorithm, logger: Logger,
              info: RunInfo) -> dict[str, Any]:
    """``metrics.json``: :func:`evaluate_run`, then, as the config asks, ``ope_holdout`` (a user's log),
    ``new_listener``, ``sim2real`` and ``ope`` (or ``ope_reason`` where the policy has no probabilities)."""
    with info.stage("evaluation"):
        metrics = evaluate_run(cfg, world, model)
    holdout = run_dir / "feedback_holdout.csv"
    if no_ope_reason(cfg) and (holdout.is_file() or cfg.eval.ope_log_steps):
        metrics["ope_reason"] = no_ope_reason(cfg)
    elif holdout.is_file():  # a user's log: its held-out sessions judge the policies, not the simulator
        with info.stage("ope_holdout"):
            metrics["ope_holdout"] = estimate_log(world, cfg.env, actor_critic(model), read_feedback(holdout),
                                                  holdout.name, derive_seed(cfg.seed, "ope"))
            metrics["scored_by"] = (f"the simulated listener {world.meta['served_listener']}, not the log's "
                                    "listeners: judge a run on a user's log by ope_holdout")
    if cfg.new_listener.enabled:
        with info.stage("new_listener"):
            learnt = {str(cfg.algo): Learnt(model_policy(model))}
            metrics["new_listener"] = evaluate_new_listener(world, cfg.env, cfg.reward, cfg.new_listener,
                                                            learnt, derive_seed(cfg.seed, "new_listener"))
            log_values(logger, {"new_listener/curve": budget_figure(metrics["new_listener"])}, model.num_timesteps)
    if cfg.sim2real.enabled:
        with info.stage("sim2real"):
            metrics["sim2real"] = sim2real_of(cfg, run_dir, world, model)
            log_sim2real(logger, metrics["sim2real"])
    if cfg.eval.ope_log_steps and not no_ope_reason(cfg):
        with info.stage("ope"):
            truth = {name: result["mean_expected_reward"] for name, result in metrics["policies"].items()}
            metrics["ope"] = check_estimators(world, cfg.env, actor_critic(model), cfg.eval, truth,
                                              derive_seed(cfg.seed, "ope"), run_dir / "exploration.csv")
    return metrics


def evaluate_run(cfg: TrainConfig, world: World, model: BaseAlgorithm) -> dict[str, Any]:
    """Final evaluation: the learnt policy (``policies.<algo>``, its network in ``policies.<algo>.policy``; a
    discrete PPO also drawing from its probabilities, ``ppo_sample``), the baselines and the planning reference on
    the same fresh sessions (``metrics.json`` structure, with the tracks the catalog oracle searched each step,
    ``oracle_catalog_tracks``; a latent run's, or another algo's than PPO, also names its ``action`` and
    ``algo``)."""
    eval_seed = derive_seed(cfg.seed, "eval")
    learnt = {str(cfg.algo): model_policy(model)}
    if cfg.env.action == "discrete" and cfg.algo == "ppo":
        learnt["ppo_sample"] = sampling_policy(actor_critic(model), derive_seed(cfg.seed, "sample"))
    planner = (planner_policy(cfg.eval.planner, derive_seed(cfg.seed, "planner")), cfg.eval.planner.n_episodes)
    n_tracks = world.latents.shape[0]
    subset = oracle_catalog_subset(n_tracks, cfg.eval.oracle_catalog_tracks, derive_seed(eval_seed, "oracle_catalog"))
    metrics = evaluate_policies(world, cfg.env, {**learnt, **baseline_policies(eval_seed, subset)},
                                cfg.eval.protocol, cfg.eval.n_episodes, eval_seed, planner, learnt=str(cfg.algo))
    metrics["oracle_catalog_tracks"] = oracle_catalog_tracks(n_tracks, subset)
    if cfg.env.action == "latent" or cfg.algo != "ppo":  # a discrete PPO run's metrics.json stays as it was
        metrics.update(action=str(cfg.env.action), algo=str(cfg.algo))
    metrics["policies"][str(cfg.algo)]["policy"] = policy_architecture(model.policy)
    return metrics


def no_ope_reason(cfg: TrainConfig) -> str | None:
    """Why a run's policy has no off-policy estimates (they weigh the candidates by PPO's probabilities), or None
    (a discrete PPO run)."""
    if cfg.env.action == "latent":
        return LATENT_NO_OPE
    if cfg.algo != "ppo":
        return NON_PPO_NO_OPE.format(algo=cfg.algo)
    return None


def actor_critic(model: BaseAlgorithm) -> ActorCriticPolicy:
    """The network of a discrete PPO run: the one policy with candidate probabilities (:func:`no_ope_reason`)."""
    assert isinstance(model.policy, ActorCriticPolicy), type(model.policy)
    return model.policy


def sim2real_of(cfg: TrainConfig, run_dir: Path, world: World, model: BaseAlgorithm) -> dict[str, Any]:
    """``metrics.json["sim2real"]``: the fidelity protocol (:mod:`music_rl.sim2real.protocol`) on the run's world
    and PPO, its learners trained with the run's config in ``sim2real/`` (resumed there with ``resume=true``)."""
    from music_rl.sim2real.protocol import Setting, run_sim2real  # torch's user model: for this stage only

    def train(action: str, folder: Path, other: World) -> BaseAlgorithm:
        folder.mkdir(parents=True, exist_ok=True)
        logger = open_logger(folder / "tb")
        try:
            env = dataclasses.replace(cfg.env, action=ActionKind(action))
            return train_model(dataclasses.replace(cfg, env=env), folder, other, logger, RunInfo(cfg.seed, None))
        finally:
            logger.close()

    setting = Setting(cfg.sim2real, cfg.env, cfg.listeners, cfg.reward, cfg.new_listener, cfg.seed)
    return run_sim2real(setting, run_dir / "sim2real", world, model, train)


def log_sim2real(logger: Logger, sim2real: dict[str, Any]) -> None:
    """The protocol's figures in TensorBoard: ``sim2real/*`` scalars against the log size, and its figure."""
    for entry in sim2real["log_sizes"]:
        log_values(logger, {"sim2real/kendall_tau": entry["ranking"]["kendall_tau"],
                            "sim2real/transfer_ratio": entry["transfer"]["ratio"],
                            "sim2real/log_likelihood_gap_closed": entry["predictive"]["log_likelihood_gap_closed"]},
                   entry["log_sessions"])
    log_values(logger, {"sim2real/figure": sim2real_figure(sim2real)}, sim2real["log_sessions"])


def load_checked(run_dir: Path, cfg: TrainConfig) -> tuple[World, BaseAlgorithm]:
    """A saved run's world and ``<algo>.zip``, every artifact checked first: the world, ``vae.pt`` (its latents
    must be the world's) and the model (its observations must be the world's); a missing, corrupt or foreign one
    is a :class:`RunFolderError` naming it."""
    world = load_run_world(run_dir)
    encoder = load_encoder(run_dir / "vae.pt")
    latents = encoder.transform(world.features)
    if latents.shape != world.latents.shape or not np.allclose(latents, world.latents, atol=1e-4):
        raise RunFolderError(f"{run_dir / 'vae.pt'}: does not encode world/features.npy to world/latents.npy "
                             "(the VAE of another run?)")
    path = model_path(run_dir, 1, cfg.algo)
    model = load_model(path, algo=cfg.algo)
    check_fits(path, model, make_eval_env(world, cfg.env, None))
    return world, model


def reevaluate(run_dir: Path, cfg: TrainConfig) -> dict[str, Any]:
    """Evaluate a saved run folder again (``music-rl evaluate``), its artifacts checked first
    (:func:`load_checked`)."""
    world, model = load_checked(run_dir, cfg)
    return evaluate_run(cfg, world, model)


def estimate_run_log(run_dir: Path, cfg: TrainConfig, log_path: str | Path) -> dict[str, Any]:
    """The run's policies (``ppo.zip``) estimated off-policy on a log (``music-rl evaluate log=...``), its
    artifacts checked first (:func:`load_checked`); a latent run's or another algo's cannot be
    (:func:`no_ope_reason`): one line."""
    reason = no_ope_reason(cfg)
    if reason:
        raise ConfigError(f"log={log_path}: {reason}")
    world, model = load_checked(run_dir, cfg)
    return estimate_log_file(world, cfg.env, actor_critic(model), log_path, derive_seed(cfg.seed, "ope"))
