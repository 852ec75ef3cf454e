"""``music-rl finetune``: fine-tune a saved run from new feedback: re-propagate rewards, continue PPO, write the
next model version.

    music-rl finetune run_dir=<run> feedback=new_feedback.csv timesteps=20000 [policy_version=N]

The new feedback (CSV or Parquet, the feedback-log schema) is validated against the run's catalog and
appended to the run's feedback.csv, each served track (user, session, position, track) once: an exact duplicate
row of the file lands once, a row the log already holds with the same answer is not appended again, a track
answered twice differently (in the file, or against the log) is refused, rows whose track is not in the catalog
are counted and dropped (``strict=true``: refused); each is reported in one line. ``served_at`` defaults to
now, ``policy_version`` to the version fine-tuned from. A run whose feedback.csv was deleted is refused. The reward
table is personal: every logged answer of the users in the new feedback is propagated into a new table, the
run's algorithm (PPO, SAC or TD3) continues from the newest model (or ``policy_version``) on it for ``timesteps``
steps, and is saved as ``<algo>-v<N>.zip`` with ``world/reward_table-v<N>.npy``; the old models are never
overwritten. SAC and TD3 start the fine-tune with an empty replay buffer (music_rl/serving/finetune.py). TensorBoard:
``<run>/tb/finetune-v<N>``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import hydra
import pandas as pd
from omegaconf import MISSING, DictConfig

from music_rl.cli.app import App
from music_rl.cli.errors import user_errors_exit
from music_rl.core.errors import ConfigError


@dataclass
class FinetuneConfig:
    """Arguments of ``music-rl finetune``."""

    run_dir: str = MISSING
    """the run folder (outputs/runs/<date>/<time>)"""
    feedback: str = MISSING
    """the new feedback: a CSV or Parquet log (user_id, session_id, position, track_id, percentage_listened,
    liked [, served_at, policy_version])"""
    timesteps: int = 20_000
    """environment steps of the fine-tune"""
    seed: int = 0
    """seed of the fine-tune's training"""
    policy_version: int | None = None
    """the model version to continue from; null: the newest"""
    strict: bool = False
    """true: a feedback row whose track is not in the run's catalog is fatal (else counted, reported, dropped)"""
    lock_timeout: float = 600.0
    """seconds to wait for the run folder's lock while another command writes into it"""


app = App("finetune", FinetuneConfig)


def with_serving_columns(new: pd.DataFrame, source: str, version: str) -> pd.DataFrame:
    """``new`` with ``served_at`` (empty: now, at append) and ``policy_version`` (empty: ``version``) checked
    and filled; a ``served_at`` that is not an ISO-8601 time with a timezone is a :class:`FeedbackError` naming
    the row."""
    from music_rl.data.feedback_store import check_served_at

    given = {col: new[col].fillna("").astype(str) if col in new else pd.Series("", index=new.index)
             for col in ("served_at", "policy_version")}
    check_served_at(given["served_at"], source)
    return new.assign(served_at=given["served_at"], policy_version=given["policy_version"].replace("", version))


@hydra.main(version_base="1.3", config_path=app.config_path, config_name=app.name)
@user_errors_exit
def main(raw: DictConfig) -> None:
    """Validate, log, fine-tune, report the new version."""
    import torch

    from music_rl.data.feedback import land_once, read_feedback
    from music_rl.data.feedback_store import COLUMNS
    from music_rl.data.log_import import read_submission
    from music_rl.runs.run_folder import hold
    from music_rl.serving.finetune import finetune, listener_rows, run_log
    from music_rl.serving.inference import load_run

    args: FinetuneConfig = app.typed(raw)
    if args.timesteps < 1:
        raise ConfigError(f"timesteps={args.timesteps}: must be an integer >= 1")
    torch.set_num_threads(1)  # small networks: more threads only contend
    land_once(read_feedback(args.feedback), args.feedback)  # a bad file is refused before waiting for the run
    with hold(Path(args.run_dir), wait=args.lock_timeout, command="music-rl finetune"):
        run = load_run(Path(args.run_dir), args.policy_version)  # the newest version once it is our turn
        store = run_log(run)
        ids = run.world.track_ids()
        new, report = read_submission(args.feedback, ids, args.strict)
        if report.repaired:
            print(report.line(args.feedback), file=sys.stderr)
        new = with_serving_columns(new[[c for c in COLUMNS if c in new]], args.feedback, f"v{run.version}")
        fresh = store.append_new(new)
        rows = listener_rows(store.read(known_track_ids=ids), new["user_id"].unique())
        tuned = finetune(run, rows, args.timesteps, seed=args.seed, progress_bar=sys.stderr.isatty())
    print(f"{len(fresh)} new feedback rows appended to {store.path} ({len(new) - len(fresh)} already there); "
          f"fine-tuned v{run.version} on {len(rows)} rows of {new['user_id'].nunique()} user(s) for "
          f"{args.timesteps} steps -> {tuned.model_file} (version {tuned.version})")


if __name__ == "__main__":
    app.run(main)
