"""The world of a run, the pipeline's first stages: the catalog and its normalised features, a user's log, the
VAE's latents (``vae.pt``), then the world (``world/``, ``feedback.csv``, ``feedback_holdout.csv``); or, to resume
or re-evaluate, the world a run folder saved."""

from __future__ import annotations

import dataclasses
import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from stable_baselines3.common.logger import Logger

from envs.listeners import ListenerModel
from envs.rewards import propagation_quality
from envs.world import World, build_world
from music_rl.config import TrainConfig
from music_rl.core.atomic import atomic_path
from music_rl.core.errors import ConfigError
from music_rl.data.catalog import Catalog, Normaliser, check_variety, load_catalog
from music_rl.data.feedback import write_feedback
from music_rl.data.log_import import LogReport, read_log, split_sessions
from music_rl.runs.run_info import RunInfo
from music_rl.runs.seeding import derive_seed
from music_rl.training.tensorboard import latent_figure, log_values
from vae.encoder import LatentEncoder

log = logging.getLogger(__name__)


def listener_seed(cfg: TrainConfig) -> int:
    """``listeners.seed`` or, when unset, a seed derived from the run seed."""
    return cfg.listeners.seed if cfg.listeners.seed is not None else derive_seed(cfg.seed, "listeners")


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
    """The whole world of a fresh run, saved under ``world/`` (with the population prior of the listener
    observation and the new-listener protocol) with ``feedback.csv`` (the log the rewards were learnt from) and,
    for a user's log, ``feedback_holdout.csv`` (its held-out sessions)."""
    catalog, normaliser, features = load_features(cfg, info)
    user_log, holdout, report = read_user_log(cfg, catalog, info)
    track_ids = catalog.tracks["track_id"].astype(str).tolist()
    fit_log = None
    if cfg.listeners.model == ListenerModel.learnt:  # torch's user model is imported for a learnt listener only
        from music_rl.user_model import fit_run_listener, read_listener_log
        fit_log = read_listener_log(cfg.listeners, track_ids)  # checked before any write
    latents = fit_latents(cfg, run_dir, logger, info, catalog, normaliser, features)
    fitted = None
    if fit_log is not None:
        with info.stage("listener"):
            fitted = fit_run_listener(cfg.listeners, run_dir, fit_log, track_ids, features, latents,
                                      derive_seed(cfg.seed, "listener-fit"))
    with info.stage("world"):
        world, feedback = build_world(catalog.tracks, features, latents, cfg.reward, cfg.listeners, cfg.env,
                                      seed=derive_seed(cfg.seed, "world"), listener_seed=listener_seed(cfg),
                                      log=user_log, log_has_likes=report.has_likes if report else True,
                                      fitted=fitted)
        if cfg.env.observation == "listener" or cfg.new_listener.enabled:
            with info.stage("population_prior"):  # a part of the world's time; saved with it for serving
                world.population_prior(cfg.env.k, cfg.env.session_length)
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
    """The saved world of a run folder (for resume and re-evaluation), with its fitted listener when learnt."""
    world = World.load(run_dir / "world")
    if not world.learnt():
        return world
    from music_rl.user_model import attach_run_listener

    return attach_run_listener(world, run_dir)
