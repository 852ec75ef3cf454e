"""The main job: catalog → normalised features → VAE latents → world → PPO (or SAC, TD3) → evaluation → run
folder.

Every artifact of a run folder (docs/guides/run-folders.md) is written into it, each atomically. With
``resume=true`` on a run folder that already holds a world, a VAE and checkpoints, the first stages are
loaded instead of rebuilt and the algorithm continues from its newest checkpoint to ``<algo>.total_timesteps``
(SAC and TD3 with an empty replay buffer: checkpoints hold none). Temporary
files that a killed writer (``kill -9``) left behind are removed when a run starts in the folder again.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import VecEnv
from threadpoolctl import threadpool_limits

from envs.rewards import propagation_quality
from envs.world import World, build_world
from music_rl.config import TrainConfig
from music_rl.core.atomic import atomic_path, write_json_atomic
from music_rl.core.errors import ConfigError, RunFolderError
from music_rl.data.catalog import Catalog, Normaliser, check_variety, load_catalog
from music_rl.data.feedback import read_feedback, write_feedback
from music_rl.data.log_import import LogReport, read_log, split_sessions
from music_rl.evaluation.adaptive import Learnt
from music_rl.evaluation.baselines import baseline_policies
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
from music_rl.learners.algos import build_offpolicy_model, model_policy, restart_replay
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
from music_rl.reports.report import results_markdown, swept_overrides
from music_rl.runs.run_folder import claim
from music_rl.runs.run_info import RunInfo
from music_rl.runs.seeding import derive_seed
from music_rl.training.callbacks import CheckpointCallback, FeedbackStatsCallback, PeriodicEvalCallback, time_to_quality
from music_rl.training.tensorboard import (
    budget_figure,
    latent_figure,
    log_hparams,
    log_values,
    open_logger,
    policies_figure,
)
from vae.encoder import LatentEncoder

log = logging.getLogger(__name__)

CODE_DIR = Path(__file__).resolve().parents[2]
# music_rl.core.atomic.atomic_path's temporary names: ".<target name>.<8 random characters>.tmp"
TEMPORARY_RE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
LATENT_NO_OPE = ("off-policy estimates weigh the k candidates by the policy's probabilities "
                 "(music_rl/evaluation/offpolicy.py): a latent action has none; not estimated for env.action=latent")


class TrainingInterrupted(Exception):
    """Training stopped on SIGTERM/SIGINT after saving a checkpoint."""

    def __init__(self, signum: int, checkpoint_dir: Path) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}; checkpoint saved in "
                         f"{checkpoint_dir}; continue with resume=true")
        self.signum = signum


def listener_seed(cfg: TrainConfig) -> int:
    """``listeners.seed`` or, when unset, a seed derived from the run seed."""
    return cfg.listeners.seed if cfg.listeners.seed is not None else derive_seed(cfg.seed, "listeners")


def hparam_keys(cfg: TrainConfig) -> dict[str, str]:
    """Each HParams name and the config key it shows: the same names in every run, so a sweep lines up in
    TensorBoard (``listener_seed`` shows the seed derived from the run seed where ``listeners.seed`` is unset)."""
    return {
        "latent_dim": "vae.latent_dim", "like_weight": "reward.like_weight", "decay": "reward.decay",
        "observation": "env.observation", "reward_source": "env.reward_source", "n_clusters": "reward.n_clusters",
        "seed": "seed", "total_timesteps": f"{cfg.algo}.total_timesteps", "policy": "ppo.policy",
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


def load_features(cfg: TrainConfig, info: RunInfo) -> tuple[Catalog, Normaliser, np.ndarray]:
    """The catalog and its normalised features (checked for variety)."""
    with info.stage("catalog"):
        catalog = load_catalog(cfg.data, seed=cfg.data.seed, min_tracks=cfg.env.k + 1)
        check_catalog_size(cfg, len(catalog.tracks))
        normaliser = Normaliser(cfg.data.normalisation).fit(catalog.raw)
        features = normaliser.transform(catalog.raw)
        check_variety(features, cfg.reward.n_clusters, f"{catalog_name(cfg)} (normalised features)")
        info.data["catalog"] = {"schema": catalog.schema, "n_tracks": len(catalog.tracks),
                                "problems": catalog.problems}
        log.info("catalog: %d tracks (schema %s)", len(catalog.tracks), catalog.schema)
    return catalog, normaliser, features


def catalog_name(cfg: TrainConfig) -> str:
    """The catalog, as messages name it."""
    return str(cfg.data.path) if cfg.data.source == "csv" else "the synthetic catalog"


def read_user_log(cfg: TrainConfig, catalog: Catalog,
                  info: RunInfo) -> tuple[pd.DataFrame | None, pd.DataFrame | None, LogReport | None]:
    """A user's log (``feedback.path``) joined to the catalog and split by session into the part training
    learns from and the part held out for off-policy evaluation; (None, None, None) without one."""
    if not cfg.feedback.path:
        return None, None, None
    with info.stage("feedback"):
        joined, report = read_log(cfg.feedback, catalog.tracks["track_id"].astype(str).tolist())
        train, holdout = split_sessions(joined, cfg.feedback.holdout,
                                        np.random.default_rng(derive_seed(cfg.seed, "holdout")))
        log.info("%s; %d sessions (%d rows) kept for training, %d held out for off-policy evaluation",
                 report.line(cfg.feedback.path), train["session_id"].nunique(), len(train),
                 holdout["session_id"].nunique())
        info.data["feedback_log"] = {**dataclasses.asdict(report), "path": cfg.feedback.path,
                                     "rows_train": len(train), "rows_holdout": len(holdout)}
    return train, holdout, report


def fit_latents(cfg: TrainConfig, run_dir: Path, logger: Logger, info: RunInfo, catalog: Catalog,
                normaliser: Normaliser, features: np.ndarray) -> np.ndarray:
    """The fitted VAE's latents of the catalog; saves ``vae.pt`` (with the normaliser)."""
    with info.stage("vae"):
        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            log_values(logger, {f"vae/{key}": value for key, value in metrics.items()}, epoch)

        encoder = LatentEncoder(cfg.vae, seed=derive_seed(cfg.seed, "vae")).fit(features, on_epoch=on_epoch)
        latents = encoder.transform(features)
        check_variety(latents, cfg.reward.n_clusters,
                      f"{catalog_name(cfg)} (VAE latents, vae.latent_dim={cfg.vae.latent_dim})")
        ckpt = encoder.checkpoint()
        ckpt["normaliser"] = normaliser.to_dict()
        buffer = io.BytesIO()  # serialised in memory: a full disk raises OSError(ENOSPC), not a RuntimeError
        torch.save(ckpt, buffer)
        with atomic_path(run_dir / "vae.pt") as tmp:
            tmp.write_bytes(buffer.getvalue())
        labels = catalog.tracks["genre"].to_numpy() if "genre" in catalog.tracks else None
        log_values(logger, {"vae/latent_map": latent_figure(latents, labels, "VAE latents (z0, z1) by genre")},
                   encoder.epochs_run)
        log.info("VAE: %d epochs, latent_dim %d", encoder.epochs_run, cfg.vae.latent_dim)
    return latents


def check_catalog_size(cfg: TrainConfig, n_tracks: int) -> None:
    """The settings bounded by the catalog size, checked before any training (a CSV's size is known only
    once read)."""
    cfg.env.validate(n_tracks)
    if cfg.reward.n_clusters > n_tracks:
        raise ConfigError(f"reward.n_clusters={cfg.reward.n_clusters}: must be <= the catalog size "
                          f"({n_tracks} tracks)")


def build_run_world(cfg: TrainConfig, run_dir: Path, logger: Logger, info: RunInfo) -> World:
    """The whole world of a fresh run, saved under ``world/`` with ``feedback.csv`` (the log the rewards were
    learnt from) and, for a user's log, ``feedback_holdout.csv`` (its held-out sessions)."""
    catalog, normaliser, features = load_features(cfg, info)
    user_log, holdout, report = read_user_log(cfg, catalog, info)
    latents = fit_latents(cfg, run_dir, logger, info, catalog, normaliser, features)
    with info.stage("world"):
        world, feedback = build_world(catalog.tracks, features, latents, cfg.reward, cfg.listeners, cfg.env,
                                      seed=derive_seed(cfg.seed, "world"), listener_seed=listener_seed(cfg),
                                      log=user_log, log_has_likes=report.has_likes if report else True)
        world.save(run_dir / "world")
        write_feedback(feedback, run_dir / "feedback.csv")
        if holdout is not None and len(holdout):
            write_feedback(holdout, run_dir / "feedback_holdout.csv")
        truth = world.listeners().expected_reward_all(world.meta["served_listener"], cfg.reward.like_weight)
        quality = propagation_quality(world.reward_table, truth)
        numbers = {key: value for key, value in quality.items() if isinstance(value, float)}
        log_values(logger, {f"propagation/{key}": value for key, value in numbers.items()}, 0)
        info.data["propagation_quality"] = quality
        log.info("world: %d feedback rows; propagation vs the simulated listener's truth: %s%s", len(feedback),
                 ", ".join(f"{k}={v:.3f}" for k, v in numbers.items()),
                 f" ({quality['reason']})" if "reason" in quality else "")
    return world


def load_run_world(run_dir: Path) -> World:
    """The saved world of a run folder (for resume and re-evaluation)."""
    return World.load(run_dir / "world")


def build_learner(cfg: TrainConfig, venv: VecEnv, world: World, seed: int) -> BaseAlgorithm:
    """A fresh model of ``cfg.algo`` on ``venv``: PPO (:func:`music_rl.learners.ppo.build_model`), SAC or TD3."""
    if cfg.algo == "ppo":
        return build_model(cfg.ppo, cfg.env, venv, world, seed, str(cfg.new_listener.history_encoder))
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

    checkpoints = CheckpointCallback(ckpt_dir, group.checkpoint_freq, algo=algo)
    evaluator = PeriodicEvalCallback(periodic, cfg.eval.eval_freq,
                                     cfg.eval.plateau_patience if cfg.eval.stop_on_plateau else None,
                                     cfg.eval.plateau_delta)
    callbacks = CallbackList([FeedbackStatsCallback(), evaluator, checkpoints])
    remaining = group.total_timesteps - model.num_timesteps
    rollout_steps = cfg.ppo.n_steps * cfg.ppo.n_envs
    if algo == "ppo" and 0 < remaining < rollout_steps:
        log.warning("ppo.total_timesteps=%d leaves %d steps, less than one rollout (ppo.n_steps x ppo.n_envs = "
                    "%d): PPO trains one whole rollout, %d steps", cfg.ppo.total_timesteps, remaining,
                    rollout_steps, rollout_steps)
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
        raise TrainingInterrupted(checkpoints.interrupted, ckpt_dir)
    save_model_atomic(model, model_path(run_dir, 1, algo))
    return model


def evaluate_run(cfg: TrainConfig, world: World, model: BaseAlgorithm) -> dict[str, Any]:
    """Final evaluation: the learnt policy (``policies.<algo>``; a discrete one also drawing from its
    probabilities, ``ppo_sample``), the baselines and the planning reference on the same fresh sessions
    (``metrics.json`` structure; a latent run's also names its ``action`` and ``algo``)."""
    eval_seed = derive_seed(cfg.seed, "eval")
    learnt = {str(cfg.algo): model_policy(model)}
    if cfg.env.action == "discrete":
        learnt["ppo_sample"] = sampling_policy(model.policy, derive_seed(cfg.seed, "sample"))
    planner = (planner_policy(cfg.eval.planner, derive_seed(cfg.seed, "planner")), cfg.eval.planner.n_episodes)
    metrics = evaluate_policies(world, cfg.env, {**learnt, **baseline_policies(eval_seed)}, cfg.eval.protocol,
                                cfg.eval.n_episodes, eval_seed, planner, learnt=str(cfg.algo))
    if cfg.env.action == "latent":  # a discrete run's metrics.json stays as it was: PPO over Discrete(k)
        metrics.update(action=str(cfg.env.action), algo=str(cfg.algo))
    return metrics


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    """``metrics.json``, atomically, strict JSON, keys sorted (byte-identical for identical numbers)."""
    write_json_atomic(run_dir / "metrics.json", metrics)


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


def run(cfg: TrainConfig, run_dir: Path) -> dict[str, Any]:
    """Run the whole pipeline into ``run_dir``; return the metrics.

    The run folder is claimed first (:func:`music_rl.runs.run_folder.claim`: its lock for the whole run; a folder
    holding a run is refused unless ``resume`` or ``overwrite``). Torch, BLAS and OpenMP run on one thread:
    K-Means and float sums then give the same bits in a single run, a joblib worker (which limits threads
    itself) or a submitit job, so a seed means one result.
    """
    plain = OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)
    with threadpool_limits(limits=1), claim(run_dir, plain, cfg.resume, cfg.overwrite):
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
        if cfg.env.action == "latent" and (holdout.is_file() or cfg.eval.ope_log_steps):
            metrics["ope_reason"] = LATENT_NO_OPE
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
        if cfg.eval.ope_log_steps and cfg.env.action == "discrete":
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
    run's cannot be (:data:`LATENT_NO_OPE`): one line."""
    if cfg.env.action == "latent":
        raise ConfigError(f"log={log_path}: {LATENT_NO_OPE}")
    world = load_run_world(run_dir)
    model = load_model(run_dir / "ppo.zip")
    return estimate_log_file(world, cfg.env, model.policy, log_path, derive_seed(cfg.seed, "ope"))
