#!/usr/bin/env python
"""Train a run: catalog → VAE → world → PPO → evaluation, into a Hydra run folder.

    python scripts/train.py                                   # the default job (make train)
    python scripts/train.py vae.latent_dim=2 reward.like_weight=100
    python scripts/train.py -m vae.latent_dim=2,4,5 seed=0,1,2   # a sweep (joblib launcher)
    python scripts/train.py --config-dir <run>/.hydra --config-name config   # reproduce a run
    python scripts/train.py hydra.run.dir=<run> resume=true  # continue PPO from the last checkpoint

Returns normalized_score to Hydra (for sweepers such as Optuna).
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from _entry import fail, run_hydra_main, user_errors_exit
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from agents.config import TrainConfig, load_config
from agents.pipeline import TrainingInterrupted, run

log = logging.getLogger("music-rl")


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
@user_errors_exit
def main(raw: DictConfig) -> float:
    """Validate the config, run the pipeline, report where the run is."""
    cfg = load_config(raw)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        metrics = run(cfg, run_dir)
    except TrainingInterrupted as stop:
        fail(f"{stop}", 128 + stop.signum)
    score = metrics["normalized_score"]
    ppo = metrics["policies"]["ppo"]
    log.info("normalized_score %.3f  (ppo mean_reward %.3f ± %.3f, like_rate %.3f)", score,
             ppo["mean_reward"], ppo["mean_reward_ci95"], ppo["like_rate"])
    if HydraConfig.get().mode.name == "RUN":
        print(f"\nrun folder: {run_dir}\nmetrics:    {run_dir / 'metrics.json'}\n"
              f"TensorBoard: .venv/bin/tensorboard --logdir {run_dir}   (every run: make tensorboard)")
    return score


if __name__ == "__main__":
    run_hydra_main(main, schema=TrainConfig)
