"""Inputs that several measurements share, built once per benchmark in the work folder (``workdir=`` keeps
them): synthetic catalogs with PCA latents, and a run folder over a synthetic world with a tiny PPO."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from music_rl.bench.runner import Runner

LATENT_DIMS = (2, 4, 5)


def catalog(r: Runner, n: int) -> Path:
    """Features and PCA latents (``latents-d{d}.npy``, d = 2, 4, 5) of a synthetic catalog of ``n`` tracks."""
    return r.prepared(f"catalog-{n}", task_prepare_catalog, n=n, dims=list(LATENT_DIMS))


def run_folder(r: Runner, n: int) -> Path:
    """A run folder over a synthetic ``n``-track world (PCA latents) with a tiny candidate_scorer PPO."""
    return r.prepared(f"run-{n}", task_prepare_run, n=n, ppo=r.sizes.ppo, steps=r.sizes.prepared_ppo_steps)


def task_prepare_catalog(out: str, n: int, dims: list[int]) -> dict[str, Any]:
    """Synthetic catalog → physical normalisation → features.npy and PCA latents-d{d}.npy."""
    from envs.world import pca_latents
    from music_rl.data.catalog import Normaliser, synthetic_catalog

    folder = Path(out)
    folder.mkdir(parents=True)
    tracks = synthetic_catalog(n, seed=0)
    features = Normaliser("physical").fit(tracks.raw).transform(tracks.raw)
    np.save(folder / "features.npy", features)
    for d in dims:
        np.save(folder / f"latents-d{d}.npy", pca_latents(features, d))
    return {}


def task_prepare_run(out: str, n: int, ppo: dict[str, Any], steps: int) -> dict[str, Any]:
    """A run folder (.hydra/config.yaml, world/, ppo.zip): PCA-latent world, a tiny candidate_scorer PPO."""
    import torch
    from omegaconf import OmegaConf

    from envs.world import synthetic_world
    from music_rl.config import TrainConfig
    from music_rl.learners.ppo import PPOConfig, build_model, make_vec_env

    torch.set_num_threads(1)
    folder = Path(out)
    cfg = TrainConfig()
    cfg.data.n_tracks = n
    cfg.ppo = PPOConfig(**ppo, total_timesteps=steps, progress_bar=False)
    world = synthetic_world(n, cfg.vae.latent_dim, seed=0, env_cfg=cfg.env)
    world.save(folder / "world")
    venv = make_vec_env(world, cfg.env, None, cfg.ppo.n_envs, "dummy", seed=0)
    model = build_model(cfg.ppo, cfg.env, venv, world, seed=0)
    model.learn(steps)
    model.save(folder / "ppo.zip")
    (folder / ".hydra").mkdir()
    OmegaConf.save(OmegaConf.structured(cfg), folder / ".hydra" / "config.yaml")
    return {}
