"""``music-rl train``: a run, catalog → VAE → world → PPO (or SAC, TD3) → evaluation, into a Hydra run folder.

    music-rl train                                   # the default job (make train)
    music-rl train vae.latent_dim=2 reward.like_weight=100
    music-rl train -m vae.latent_dim=2,4,5 seed=0,1,2   # a sweep (joblib launcher)
    music-rl train --config-dir <run>/.hydra --config-name config   # reproduce a run
    music-rl train hydra.run.dir=<run> resume=true   # continue PPO from the last checkpoint
    music-rl train env.action=latent algo=sac        # a point of the latent space as the action, learnt by SAC

Returns normalized_score to Hydra (for sweepers such as Optuna); None when it is undefined, which Optuna's sweeper
records as a failed trial before going on with the study (a NaN would stop the study with a traceback).
Exit status: 0 done; 2 an error the user can fix (one ``error:`` line: config, data, run folder, unwritable or
full output folder, a launcher or sweeper plugin not installed); 128 + signal when SIGTERM/SIGINT stopped it
(143/130; during PPO after saving a checkpoint that ``resume=true`` continues).
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from music_rl.cli.app import App
from music_rl.cli.errors import user_errors_exit
from music_rl.cli.folder_guard import open_run
from music_rl.config import TrainConfig
from music_rl.core.errors import os_error_line

log = logging.getLogger("music-rl")

app = App("train", TrainConfig, multirun=True, output_folder=True)


@hydra.main(version_base="1.3", config_path=app.config_path, config_name=app.name)
@user_errors_exit
def main(raw: DictConfig) -> float | None:
    """Open the run (its config checked, its folder claimed: once), run the pipeline, report where the run is."""
    from music_rl.training.pipeline import run  # torch and SB3 load only once a job starts

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    cfg, held = open_run(raw, run_dir)
    try:
        with held:
            metrics = run(cfg, run_dir)
    except OSError as err:  # a full disk or unwritable folder: name the run folder when the writer did not
        if err.filename is None and os_error_line(err) is not None:
            err.filename = str(run_dir)
        raise
    score: float | None = metrics["normalized_score"]
    learnt = metrics["policies"][cfg.algo]
    shown = f"{score:.3f}" if score is not None else f"undefined ({metrics['normalized_score_reason']})"
    log.info("normalized_score %s  (%s mean_reward %.3f ± %.3f, like_rate %.3f)", shown, cfg.algo,
             learnt["mean_reward"], learnt["mean_reward_ci95"] or 0.0, learnt["like_rate"])
    if HydraConfig.get().mode == RunMode.RUN:
        print(f"\nrun folder: {run_dir}\nmetrics:    {run_dir / 'metrics.json'}\n"
              f"TensorBoard: .venv/bin/tensorboard --logdir {run_dir}   (every run: make tensorboard)")
    return score  # for sweepers (Optuna): None fails the trial (a NaN would make its sweeper raise)


if __name__ == "__main__":
    app.run(main)
