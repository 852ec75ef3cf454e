#!/usr/bin/env python
"""Fine-tune a saved run from new feedback: re-propagate rewards, continue PPO, write the next version.

    python scripts/finetune.py run_dir=<run> feedback=new_feedback.csv timesteps=20000

The new feedback (CSV or Parquet, the feedback-log schema) is validated against the run's catalog, appended
to the run's feedback.csv, and folded with the run's whole log into a new reward table; PPO continues from
the newest model and is saved as ppo-v<N>.zip (the old models are never overwritten).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from _entry import parse_args, user_errors_exit
from agents.finetune import finetune, now_iso
from agents.inference import load_run
from envs.feedback import read_feedback
from envs.feedback_store import FeedbackStore


@dataclass
class FinetuneArgs:
    """Arguments of scripts/finetune.py."""

    run_dir: str = "???"
    feedback: str = "???"
    timesteps: int = 20_000
    seed: int = 0
    policy_version: int | None = None


@user_errors_exit
def main(argv: list[str]) -> None:
    """Validate, log, fine-tune, report the new version."""
    args = parse_args(FinetuneArgs, argv)
    run = load_run(Path(args.run_dir), args.policy_version)
    new = read_feedback(args.feedback, known_track_ids=run.world.track_ids())
    store = FeedbackStore(run.run_dir / "feedback.csv")
    logged = store.read(known_track_ids=run.world.track_ids())
    new = new.assign(served_at=new.get("served_at", now_iso()), policy_version=f"v{run.version}")
    store.append(new)
    tuned = finetune(run, pd.concat([logged, new], ignore_index=True), args.timesteps, seed=args.seed,
                     progress_bar=True)
    print(f"{len(new)} new feedback rows ({len(logged)} already logged) -> "
          f"{tuned.run_dir / ('ppo-v%d.zip' % tuned.version)} (version {tuned.version})")


if __name__ == "__main__":
    main(sys.argv[1:])
