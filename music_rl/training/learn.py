"""The run's learning stage: ``cfg.algo`` (PPO, A2C, RecurrentPPO, DQN, QR-DQN, SAC or TD3) trained on the
world's training listeners, or resumed from its newest checkpoint, with its periodic evaluation, its plateau stop
and its checkpoints; the model saved as ``<algo>.zip``."""

from __future__ import annotations

import logging
from pathlib import Path

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import VecEnv

from envs.world import World
from music_rl.config import TrainConfig
from music_rl.core.errors import Interrupted
from music_rl.evaluation.baselines import baseline_policies
from music_rl.evaluation.evaluate import (
    eval_listeners,
    make_eval_env,
    normalized_score,
    rollout,
    summarise,
    train_listeners,
)
from music_rl.learners.a2c import build_a2c_model
from music_rl.learners.algos import build_offpolicy_model, model_policy, restart_replay
from music_rl.learners.models import CHECKPOINT_RE, latest_checkpoint, load_model, model_path, save_model_atomic
from music_rl.learners.ppo import build_model, make_vec_env
from music_rl.learners.q_learning import build_q_model
from music_rl.learners.recurrent import build_recurrent_model
from music_rl.runs.run_folder import can_continue
from music_rl.runs.run_info import RunInfo
from music_rl.runs.seeding import derive_seed
from music_rl.training.callbacks import (
    FeedbackStatsCallback,
    PeriodicEvalCallback,
    RolloutCheckpointCallback,
    time_to_quality,
)

log = logging.getLogger(__name__)


def resumable(cfg: TrainConfig, run_dir: Path) -> bool:
    """Whether the run continues the one in ``run_dir`` (``resume=true`` and the folder holds a world and a
    checkpoint of ``cfg.algo``). A fresh run deletes the folder's old checkpoints: they must never be resumed on
    a new world."""
    resuming = bool(cfg.resume) and can_continue(run_dir, cfg.algo)
    if cfg.resume and not resuming:
        log.warning("resume=true but %s holds no world/ or no %s checkpoint to continue from: starting a fresh run",
                    run_dir, cfg.algo)
    if not resuming:
        for old in (run_dir / "checkpoints").glob("*_steps.zip"):
            if CHECKPOINT_RE.match(old.name):
                old.unlink()
    return resuming


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
