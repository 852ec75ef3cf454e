"""The main job: catalog → normalised features → VAE latents → world → PPO (or SAC, TD3) → evaluation → run
folder.

Every artifact of a run folder (docs/guides/run-folders.md) is written into it, each atomically. With
``resume=true`` on a run folder that already holds a world, a VAE and checkpoints, the first stages are
loaded instead of rebuilt and the algorithm continues from its newest checkpoint to ``<algo>.total_timesteps``
(SAC and TD3 with an empty replay buffer: checkpoints hold none). Temporary
files that a killed writer (``kill -9``) left behind are removed when a run starts in the folder again.

The stages before training (catalog, user log, VAE, world) are :mod:`music_rl.training.run_world`'s; what the
final evaluation shows in TensorBoard is :mod:`music_rl.training.results_log`'s.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import VecEnv
from threadpoolctl import threadpool_limits

from envs.world import World
from music_rl.config import TrainConfig
from music_rl.core.atomic import write_json_atomic
from music_rl.core.errors import ConfigError, Interrupted, RunFolderError
from music_rl.data.feedback import read_feedback
from music_rl.evaluation.adaptive import Learnt
from music_rl.evaluation.baselines import baseline_policies, oracle_catalog_subset, oracle_catalog_tracks
from music_rl.evaluation.evaluate import (
    eval_listeners,
    evaluate_policies,
    make_eval_env,
    normalized_score,
    rollout,
    summarise,
    train_listeners,
)
from music_rl.evaluation.new_listener import evaluate_new_listener
from music_rl.evaluation.offpolicy import check_estimators, estimate_log, estimate_log_file
from music_rl.evaluation.planner import planner_policy
from music_rl.learners.a2c import build_a2c_model
from music_rl.learners.algos import build_offpolicy_model, model_policy, policy_architecture, restart_replay
from music_rl.learners.models import (
    CHECKPOINT_RE,
    check_fits,
    latest_checkpoint,
    load_encoder,
    load_model,
    model_path,
    save_model_atomic,
)
from music_rl.learners.policies import sampling_policy
from music_rl.learners.ppo import build_model, make_vec_env
from music_rl.learners.q_learning import build_q_model
from music_rl.learners.recurrent import build_recurrent_model
from music_rl.runs.run_info import RunInfo
from music_rl.runs.seeding import derive_seed
from music_rl.training.callbacks import (
    FeedbackStatsCallback,
    PeriodicEvalCallback,
    RolloutCheckpointCallback,
    time_to_quality,
)
from music_rl.training.results_log import log_results
from music_rl.training.run_world import build_run_world, load_run_world
from music_rl.training.tensorboard import budget_figure, log_values, open_logger, sim2real_figure

log = logging.getLogger(__name__)

CODE_DIR = Path(__file__).resolve().parents[2]
# music_rl.core.atomic.atomic_path's temporary names: ".<target name>.<8 random characters>.tmp"
TEMPORARY_RE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
LATENT_NO_OPE = ("off-policy estimates weigh the k candidates by the policy's probabilities "
                 "(music_rl/evaluation/offpolicy.py): a latent action has none; not estimated for env.action=latent")
NON_PPO_NO_OPE = ("off-policy estimates weigh the k candidates by PPO's probabilities "
                  "(music_rl/evaluation/offpolicy.py, policies ppo and ppo_sample); not estimated for algo={algo}")


def build_learner(cfg: TrainConfig, venv: VecEnv, world: World, seed: int) -> BaseAlgorithm:
    """A fresh model of ``cfg.algo`` on ``venv``: PPO (:func:`music_rl.learners.ppo.build_model`), A2C,
    RecurrentPPO, DQN, QR-DQN, SAC or TD3."""
    encoder = str(cfg.new_listener.history_encoder)
    if cfg.algo == "ppo":
        return build_model(cfg.ppo, cfg.env, venv, world, seed, encoder)
    if cfg.algo == "a2c":
        return build_a2c_model(cfg.a2c, cfg.env, venv, world, seed, encoder)
    if cfg.algo == "recurrent_ppo":
        return build_recurrent_model(cfg.recurrent_ppo, cfg.env, venv, world, seed, encoder)
    if cfg.algo in ("dqn", "qrdqn"):
        return build_q_model(cfg.algo, getattr(cfg, cfg.algo), cfg.env, venv, world, seed, encoder)
    return build_offpolicy_model(cfg.algo, getattr(cfg, cfg.algo), venv, seed)


def train_model(cfg: TrainConfig, run_dir: Path, world: World, logger: Logger, info: RunInfo) -> BaseAlgorithm:
    """Train (or resume) ``cfg.algo`` on the world; saves ``<algo>.zip``."""
    algo, group = str(cfg.algo), getattr(cfg, cfg.algo)
    ckpt_dir = run_dir / "checkpoints"
    algo_seed = derive_seed(cfg.seed, algo)
    venv = make_vec_env(world, cfg.env, train_listeners(world, cfg.eval.protocol), group.n_envs,
                        group.vec_env, algo_seed)
    resume_from = latest_checkpoint(ckpt_dir, algo) if cfg.resume else None
    if resume_from is not None:
        model = load_model(resume_from, env=venv, algo=algo)
        restart_replay(model, group, group.total_timesteps - model.num_timesteps)
        log.info("resuming from %s at %d timesteps", resume_from.name, model.num_timesteps)
    else:
        model = build_learner(cfg, venv, world, algo_seed)
    model.set_logger(logger)

    eval_env = make_eval_env(world, cfg.env, eval_listeners(world, cfg.eval.protocol))
    eval_seed = derive_seed(cfg.seed, "periodic-eval")
    reference = {name: summarise(rollout(eval_env, pol, cfg.eval.periodic_episodes, eval_seed), world.latents)
                 for name, pol in baseline_policies(eval_seed).items() if name in ("random", "oracle")}

    def periodic(m: BaseAlgorithm) -> dict[str, float]:
        episodes = rollout(eval_env, model_policy(m), cfg.eval.periodic_episodes, eval_seed)
        res = dict(reference, learnt=summarise(episodes, world.latents))
        return {"mean_reward": res["learnt"]["mean_reward"], "like_rate": res["learnt"]["like_rate"],
                "mean_expected_reward": res["learnt"]["mean_expected_reward"],
                "normalized_score": normalized_score(res, "learnt", key="mean_expected_reward")}

    checkpoints = RolloutCheckpointCallback(ckpt_dir, group.checkpoint_freq, algo=algo)
    evaluator = PeriodicEvalCallback(periodic, cfg.eval.eval_freq,
                                     cfg.eval.plateau_patience if cfg.eval.stop_on_plateau else None,
                                     cfg.eval.plateau_delta)
    callbacks = CallbackList([FeedbackStatsCallback(), evaluator, checkpoints])
    remaining = group.total_timesteps - model.num_timesteps
    rollout_steps = group.n_steps * group.n_envs if hasattr(group, "n_steps") else 0  # the on-policy learners
    if 0 < remaining < rollout_steps:
        log.warning("%s.total_timesteps=%d leaves %d steps, less than one rollout (%s.n_steps x %s.n_envs = %d): "
                    "%s trains one whole rollout, %d steps", algo, group.total_timesteps, remaining, algo, algo,
                    rollout_steps, algo, rollout_steps)
    with info.stage(algo):
        if remaining > 0:
            model.learn(remaining, callback=callbacks, progress_bar=group.progress_bar,
                        reset_num_timesteps=resume_from is None, tb_log_name=algo)
    venv.close()
    info.data.update({f"{algo}_timesteps": int(model.num_timesteps), "learning_curve": evaluator.curve,
                      "time_to_quality": time_to_quality(evaluator.curve),
                      "periodic_eval_s": round(evaluator.eval_seconds, 3),
                      "periodic_eval_cpu_s": round(evaluator.eval_cpu_seconds, 3)})
    if evaluator.stopped_at is not None:
        info.data["stopped_on_plateau"] = evaluator.stopped_at
    if checkpoints.interrupted is not None:
        raise Interrupted(checkpoints.interrupted, f"checkpoint saved in {ckpt_dir}; continue with resume=true")
    save_model_atomic(model, model_path(run_dir, 1, algo))
    return model


def evaluate_run(cfg: TrainConfig, world: World, model: BaseAlgorithm) -> dict[str, Any]:
    """Final evaluation: the learnt policy (``policies.<algo>``, its network in ``policies.<algo>.policy``; a
    discrete PPO also drawing from its probabilities, ``ppo_sample``), the baselines and the planning reference on
    the same fresh sessions (``metrics.json`` structure, with the tracks the catalog oracle searched each step,
    ``oracle_catalog_tracks``; a latent run's, or another algo's than PPO, also names its ``action`` and
    ``algo``)."""
    eval_seed = derive_seed(cfg.seed, "eval")
    learnt = {str(cfg.algo): model_policy(model)}
    if cfg.env.action == "discrete" and cfg.algo == "ppo":
        learnt["ppo_sample"] = sampling_policy(model.policy, derive_seed(cfg.seed, "sample"))
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


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    """``metrics.json``, atomically, strict JSON, keys sorted (byte-identical for identical numbers)."""
    write_json_atomic(run_dir / "metrics.json", metrics)


def run(cfg: TrainConfig, run_dir: Path) -> dict[str, Any]:
    """Run the whole pipeline into ``run_dir``; return the metrics.

    The caller holds the run folder (``music-rl train`` claims it: :func:`music_rl.cli.folder_guard.open_run`).
    Torch, BLAS and OpenMP run on one thread:
    K-Means and float sums then give the same bits in a single run, a joblib worker (which limits threads
    itself) or a submitit job, so a seed means one result.
    """
    with threadpool_limits(limits=1):
        return _run(cfg, run_dir)


def _run(cfg: TrainConfig, run_dir: Path) -> dict[str, Any]:
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    remove_stale_temporaries(run_dir)
    info = RunInfo(cfg.seed, cfg.data.path if cfg.data.source == "csv" else None, CODE_DIR)
    logger = open_logger(run_dir / "tb")
    try:
        log_values(logger, {"config": "```yaml\n" + OmegaConf.to_yaml(OmegaConf.structured(cfg)) + "\n```"}, 0)
        resuming = (cfg.resume and (run_dir / "world").is_dir()
                    and latest_checkpoint(run_dir / "checkpoints", cfg.algo))
        if cfg.resume and not resuming:
            log.warning("resume=true but %s holds no world and %s checkpoint: starting a fresh run", run_dir,
                        cfg.algo)
        if not resuming:  # checkpoints of an earlier run in this folder must never be resumed on a new world
            for old in (run_dir / "checkpoints").glob("*_steps.zip"):
                if CHECKPOINT_RE.match(old.name):
                    old.unlink()
        if resuming and (run_dir / "run_info.json").is_file():  # what the first part of the run recorded
            info.data["before_resume"] = json.loads((run_dir / "run_info.json").read_text(encoding="utf-8"))
        world = load_run_world(run_dir) if resuming else build_run_world(cfg, run_dir, logger, info)
        if world.latents.shape[1] != cfg.vae.latent_dim:
            raise RunFolderError(f"{run_dir / 'world'}: latents have d={world.latents.shape[1]} but "
                                 f"vae.latent_dim={cfg.vae.latent_dim}")
        model = train_model(cfg, run_dir, world, logger, info)
        with info.stage("evaluation"):
            metrics = evaluate_run(cfg, world, model)
        holdout = run_dir / "feedback_holdout.csv"
        if no_ope_reason(cfg) and (holdout.is_file() or cfg.eval.ope_log_steps):
            metrics["ope_reason"] = no_ope_reason(cfg)
        elif holdout.is_file():  # a user's log: its held-out sessions judge the policies, not the simulator
            with info.stage("ope_holdout"):
                metrics["ope_holdout"] = estimate_log(world, cfg.env, model.policy, read_feedback(holdout),
                                                      holdout.name, derive_seed(cfg.seed, "ope"))
                metrics["scored_by"] = (f"the simulated listener {world.meta['served_listener']}, not the log's "
                                        "listeners: judge a run on a user's log by ope_holdout")
        if cfg.new_listener.enabled:
            with info.stage("new_listener"):
                learnt = {str(cfg.algo): Learnt(model_policy(model))}
                metrics["new_listener"] = evaluate_new_listener(world, cfg.env, cfg.reward, cfg.new_listener,
                                                                learnt, derive_seed(cfg.seed, "new_listener"))
                log_values(logger, {"new_listener/curve": budget_figure(metrics["new_listener"])},
                           model.num_timesteps)
        if cfg.sim2real.enabled:
            with info.stage("sim2real"):
                metrics["sim2real"] = sim2real_of(cfg, run_dir, world, model)
                log_sim2real(logger, metrics["sim2real"])
        if cfg.eval.ope_log_steps and not no_ope_reason(cfg):
            with info.stage("ope"):
                truth = {name: result["mean_expected_reward"] for name, result in metrics["policies"].items()}
                metrics["ope"] = check_estimators(world, cfg.env, model.policy, cfg.eval, truth,
                                                  derive_seed(cfg.seed, "ope"), run_dir / "exploration.csv")
        write_metrics(run_dir, metrics)
        log_results(cfg, run_dir, logger, metrics, model.num_timesteps)
        info.data["normalized_score"] = metrics["normalized_score"]
        info.write(run_dir / "run_info.json")
        return metrics
    finally:
        logger.close()


def sim2real_of(cfg: TrainConfig, run_dir: Path, world: World, model: BaseAlgorithm) -> dict[str, Any]:
    """``metrics.json["sim2real"]``: the fidelity protocol (:mod:`music_rl.sim2real.protocol`) on the run's world
    and PPO, its learners trained with the run's config in ``sim2real/`` (resumed there with ``resume=true``)."""
    from music_rl.sim2real.protocol import Setting, run_sim2real  # torch's user model: for this stage only

    def train(action: str, folder: Path, other: World) -> BaseAlgorithm:
        folder.mkdir(parents=True, exist_ok=True)
        logger = open_logger(folder / "tb")
        try:
            return train_model(dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, action=action)), folder,
                               other, logger, RunInfo(cfg.seed, None, CODE_DIR))
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


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the temporary files that writers killed mid-write (``kill -9``) left in a run folder.

    Artifacts are written to a temporary name and renamed (``music_rl.core.atomic``), so a killed writer leaves a
    ``.<name>.<random>.tmp`` file but never a torn artifact. Called when a run starts in the folder (the
    run is then the folder's only writer). Returns the removed paths.
    """
    stale = [p for folder in (run_dir, run_dir / "world", run_dir / "checkpoints") if folder.is_dir()
             for p in folder.iterdir() if TEMPORARY_RE.match(p.name) and p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        log.info("removed %d temporary file(s) left by an interrupted run: %s", len(stale),
                 ", ".join(p.name for p in stale))
    return stale


def reevaluate(run_dir: Path, cfg: TrainConfig) -> dict[str, Any]:
    """Evaluate a saved run folder again (``scripts/evaluate.py``).

    Every artifact is checked first: the world, ``vae.pt`` (its latents must be the world's) and ``<algo>.zip``;
    a missing, corrupt or foreign one is a :class:`RunFolderError` naming it.
    """
    world = load_run_world(run_dir)
    encoder = load_encoder(run_dir / "vae.pt")
    latents = encoder.transform(world.features)
    if latents.shape != world.latents.shape or not np.allclose(latents, world.latents, atol=1e-4):
        raise RunFolderError(f"{run_dir / 'vae.pt'}: does not encode world/features.npy to world/latents.npy "
                             "(the VAE of another run?)")
    path = model_path(run_dir, 1, cfg.algo)
    model = load_model(path, algo=cfg.algo)
    env = make_eval_env(world, cfg.env, None)
    check_fits(path, model, env)
    return evaluate_run(cfg, world, model)


def estimate_run_log(run_dir: Path, cfg: TrainConfig, log_path: str | Path) -> dict[str, Any]:
    """The run's policies (``ppo.zip``) estimated off-policy on a log (``music-rl evaluate log=...``); a latent
    run's or another algo's cannot be (:func:`no_ope_reason`): one line."""
    reason = no_ope_reason(cfg)
    if reason:
        raise ConfigError(f"log={log_path}: {reason}")
    world = load_run_world(run_dir)
    model = load_model(run_dir / "ppo.zip")
    return estimate_log_file(world, cfg.env, model.policy, log_path, derive_seed(cfg.seed, "ope"))
