"""The main job, one stage a module: the world (:mod:`~music_rl.training.run_world`: catalog → normalised
features → VAE latents → world), the learning (:mod:`~music_rl.training.learn`: PPO or another algorithm), the
scoring (:mod:`~music_rl.training.scoring`: evaluation and the estimates ``metrics.json`` holds), the results in
TensorBoard (:mod:`~music_rl.training.results_log`); ``metrics.json`` and ``run_info.json`` last.

Every artifact of a run folder (docs/guides/run-folders.md) is written into it, each atomically. With
``resume=true`` on a run folder that already holds a world, a VAE and checkpoints, the world is loaded instead of
rebuilt and the algorithm continues from its newest checkpoint to ``<algo>.total_timesteps`` (SAC and TD3 with an
empty replay buffer: checkpoints hold none). Temporary files that a killed writer (``kill -9``) left behind are
removed when a run starts in the folder again.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from threadpoolctl import threadpool_limits

from envs.world import BUILDING_DIR
from music_rl.config import TrainConfig
from music_rl.core.atomic import write_json_atomic
from music_rl.core.errors import RunFolderError
from music_rl.runs.run_info import RunInfo
from music_rl.training.learn import resumable, train_model
from music_rl.training.results_log import log_results
from music_rl.training.run_world import build_run_world, load_run_world
from music_rl.training.scoring import score_run
from music_rl.training.tensorboard import log_values, open_logger

log = logging.getLogger(__name__)

# music_rl.core.atomic.atomic_path's temporary names: ".<target name>.<8 random characters>.tmp"
TEMPORARY_RE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


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
    info = RunInfo(cfg.seed, cfg.data.path if cfg.data.source != "synthetic" else None)
    logger = open_logger(run_dir / "tb")
    try:
        log_values(logger, {"config": "```yaml\n" + OmegaConf.to_yaml(OmegaConf.structured(cfg)) + "\n```"}, 0)
        resuming = resumable(cfg, run_dir)
        if resuming and (run_dir / "run_info.json").is_file():  # what the first part of the run recorded
            info.data["before_resume"] = json.loads((run_dir / "run_info.json").read_text(encoding="utf-8"))
        world = load_run_world(run_dir) if resuming else build_run_world(cfg, run_dir, logger, info)
        if world.latents.shape[1] != cfg.vae.latent_dim:
            raise RunFolderError(f"{run_dir / 'world'}: latents have d={world.latents.shape[1]} but "
                                 f"vae.latent_dim={cfg.vae.latent_dim}")
        model = train_model(cfg, run_dir, world, logger, info)
        metrics = score_run(cfg, run_dir, world, model, logger, info)
        write_metrics(run_dir, metrics)
        log_results(cfg, run_dir, logger, metrics, model.num_timesteps)
        info.data["normalized_score"] = metrics["normalized_score"]
        info.write(run_dir / "run_info.json")
        return metrics
    finally:
        logger.close()


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    """``metrics.json``, atomically, strict JSON, keys sorted (byte-identical for identical numbers)."""
    write_json_atomic(run_dir / "metrics.json", metrics)


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the temporary files that writers killed mid-write (``kill -9``) left in a run folder.

    Artifacts are written to a temporary name and renamed (``music_rl.core.atomic``), so a killed writer leaves a
    ``.<name>.<random>.tmp`` file but never a torn artifact. Called when a run starts in the folder again (the
    run is then the folder's only writer). Returns the removed paths.
    """
    stale = [p for folder in (run_dir, run_dir / "world", run_dir / "checkpoints") if folder.is_dir()
             for p in folder.iterdir() if TEMPORARY_RE.match(p.name) and p.is_file()]
    building = run_dir / BUILDING_DIR  # a world's arrays an interrupted build left (music_rl.training.run_world)
    if building.is_dir():
        stale += sorted(building.iterdir())
    for path in stale:
        path.unlink(missing_ok=True)
    if building.is_dir():
        shutil.rmtree(building, ignore_errors=True)
    if stale:
        log.info("removed %d temporary file(s) left by an interrupted run: %s", len(stale),
                 ", ".join(p.name for p in stale))
    return stale
