"""The world of a run, the pipeline's first stages: the catalog and its normalised features, a user's log, the
VAE's latents (``vae.pt``), then the world (``world/``, ``feedback.csv``, ``feedback_holdout.csv``); or, to resume
or re-evaluate, the world a run folder saved."""

from __future__ import annotations

import dataclasses
import io
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from stable_baselines3.common.logger import Logger

from envs.listeners import ListenerModel
from envs.rewards import propagation_quality
from envs.track_table import TrackIds
from envs.world import BUILDING_DIR, World, build_world
from music_rl.config import TrainConfig
from music_rl.core.atomic import atomic_path
from music_rl.core.errors import CatalogError, ConfigError
from music_rl.data.catalog import Normaliser, check_variety, load_catalog
from music_rl.data.feedback import write_feedback
from music_rl.data.log_import import LogReport, read_log, split_sessions
from music_rl.runs.run_info import RunInfo
from music_rl.runs.seeding import derive_seed
from music_rl.training.tensorboard import latent_figure, log_values
from music_rl.training.world_arrays import (
    encode_latents,
    neighbour_table,
    stored_features,
    synthetic_features,
    training_rows,
)
from vae.encoder import LatentEncoder

log = logging.getLogger(__name__)


def listener_seed(cfg: TrainConfig) -> int:
    """``listeners.seed`` or, when unset, a seed derived from the run seed."""
    return cfg.listeners.seed if cfg.listeners.seed is not None else derive_seed(cfg.seed, "listeners")


def load_features(cfg: TrainConfig, info: RunInfo, world_dir: Path) -> tuple[pd.DataFrame, Normaliser, np.ndarray]:
    """The catalog's tracks, its normaliser and its normalised features (checked for variety), the features written
    to ``world_dir/features.npy`` (the folder the world is built in) and returned as a memory map: a synthetic
    catalog part by part, a file's whole."""
    with info.stage("catalog"):
        path = world_dir / "features.npy"
        if cfg.data.source == "synthetic":
            if cfg.data.n_tracks < cfg.env.k + 1:
                raise CatalogError(f"data.n_tracks={cfg.data.n_tracks}: at least {cfg.env.k + 1} tracks needed "
                                   "(env.k + 1)")
            tracks, normaliser, features = synthetic_features(cfg.data, path)
            schema, problems = "synthetic", []
        else:
            catalog = load_catalog(cfg.data, seed=cfg.data.seed, min_tracks=cfg.env.k + 1)
            normaliser = Normaliser(cfg.data.normalisation).fit(catalog.raw)
            features = stored_features(normaliser.transform(catalog.raw), path, cfg.world.chunk_rows)
            tracks, schema, problems = catalog.tracks, catalog.schema, catalog.problems
        check_catalog_size(cfg, len(tracks))
        check_variety(features, cfg.reward.n_clusters, f"{catalog_name(cfg)} (normalised features)")
        info.data["catalog"] = {"schema": schema, "n_tracks": len(tracks), "problems": problems}
        log.info("catalog: %d tracks (schema %s)", len(tracks), schema)
    return tracks, normaliser, features


def catalog_name(cfg: TrainConfig) -> str:
    """The catalog, as messages name it."""
    return str(cfg.data.path) if cfg.data.source != "synthetic" else "the synthetic catalog"


def read_user_log(cfg: TrainConfig, tracks: pd.DataFrame,
                  info: RunInfo) -> tuple[pd.DataFrame | None, pd.DataFrame | None, LogReport | None]:
    """A user's log (``feedback.path``) joined to the catalog and split by session into the part training
    learns from and the part held out for off-policy evaluation; (None, None, None) without one."""
    if not cfg.feedback.path:
        return None, None, None
    with info.stage("feedback"):
        joined, report = read_log(cfg.feedback, TrackIds(tracks["track_id"]))
        train, holdout = split_sessions(joined, cfg.feedback.holdout,
                                        np.random.default_rng(derive_seed(cfg.seed, "holdout")))
        log.info("%s; %d sessions (%d rows) kept for training, %d held out for off-policy evaluation",
                 report.line(cfg.feedback.path), train["session_id"].nunique(), len(train),
                 holdout["session_id"].nunique())
        info.data["feedback_log"] = {**dataclasses.asdict(report), "path": cfg.feedback.path,
                                     "rows_train": len(train), "rows_holdout": len(holdout)}
    return train, holdout, report


def fit_latents(cfg: TrainConfig, run_dir: Path, logger: Logger, info: RunInfo, tracks: pd.DataFrame,
                normaliser: Normaliser, features: np.ndarray, building: Path) -> np.ndarray:
    """The fitted VAE's latents of the catalog (the VAE fitted on ``world.sample_rows`` rows at most, every track
    encoded shard by shard into ``building/latents.npy``); saves ``vae.pt`` (with the normaliser)."""
    with info.stage("vae"):
        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            log_values(logger, {f"vae/{key}": value for key, value in metrics.items()}, epoch)

        sample = training_rows(len(features), cfg.world.sample_rows, derive_seed(cfg.seed, "vae-sample"))
        encoder = LatentEncoder(cfg.vae, seed=derive_seed(cfg.seed, "vae"))
        encoder.fit(np.asarray(features) if sample is None else features[sample], on_epoch=on_epoch)
        latents = encode_latents(cfg.world, encoder, features, building / "latents.npy")
        check_variety(latents, cfg.reward.n_clusters,
                      f"{catalog_name(cfg)} (VAE latents, vae.latent_dim={cfg.vae.latent_dim})")
        ckpt = encoder.checkpoint()
        ckpt["normaliser"] = normaliser.to_dict()
        buffer = io.BytesIO()  # serialised in memory: a full disk raises OSError(ENOSPC), not a RuntimeError
        torch.save(ckpt, buffer)
        with atomic_path(run_dir / "vae.pt") as tmp:
            tmp.write_bytes(buffer.getvalue())
        labels = tracks["genre"].to_numpy() if "genre" in tracks else None
        log_values(logger, {"vae/latent_map": latent_figure(latents, labels, "VAE latents (z0, z1) by genre")},
                   encoder.epochs_run)
        log.info("VAE: %d epochs on %d tracks, latent_dim %d", encoder.epochs_run,
                 len(features) if sample is None else len(sample), cfg.vae.latent_dim)
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
    building = run_dir / BUILDING_DIR  # the arrays built out of core, moved into world/ once the world is whole
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    tracks, normaliser, features = load_features(cfg, info, building)
    user_log, holdout, report = read_user_log(cfg, tracks, info)
    track_ids = TrackIds(tracks["track_id"])
    fit_log = None
    if cfg.listeners.model == ListenerModel.learnt:  # torch's user model is imported for a learnt listener only
        from music_rl.user_model import fit_run_listener, read_listener_log
        fit_log = read_listener_log(cfg.listeners, track_ids)  # checked before any write
    latents = fit_latents(cfg, run_dir, logger, info, tracks, normaliser, features, building)
    fitted = None
    if fit_log is not None:
        with info.stage("listener"):
            fitted = fit_run_listener(cfg.listeners, run_dir, fit_log, track_ids, features, latents,
                                      derive_seed(cfg.seed, "listener-fit"))
    with info.stage("world"):
        with info.stage("neighbours"):  # a part of the world's time
            neighbours = neighbour_table(cfg.world, latents, cfg.env.n_neighbours, building / "neighbours.npy",
                                         derive_seed(cfg.seed, "neighbour-index"))
        world, feedback = build_world(tracks, features, latents, cfg.reward, cfg.listeners, cfg.env,
                                      seed=derive_seed(cfg.seed, "world"), listener_seed=listener_seed(cfg),
                                      log=user_log, log_has_likes=report.has_likes if report else True,
                                      fitted=fitted, neighbours=neighbours, sample_rows=cfg.world.sample_rows)
        if cfg.env.observation == "listener" or cfg.new_listener.enabled:
            with info.stage("population_prior"):  # a part of the world's time; saved with it for serving
                world.population_prior(cfg.env.k, cfg.env.session_length)
        world.save(run_dir / "world")  # the arrays built out of core are moved in, not copied
        shutil.rmtree(building, ignore_errors=True)
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
