"""``music-rl simulate``: the online-learning loop against a frozen policy, for one simulated listener.

    music-rl simulate run_dir=<run> listener_seed=12345 rounds=12 finetune_every=2

The listener is listener 0 of the population sampled with ``listener_seed`` (not the run's listener unless
the seeds coincide). Round 0 probes it (cold start); in every round the online and the frozen policy each
serve ``sessions`` sessions (same seeds) and the listener answers; after round 0 and every
``finetune_every`` rounds the online policy is fine-tuned (``timesteps`` PPO steps) on the listener's answers
so far. Prints a per-round table (realised and expected reward per step) and logs both curves to
``<run>/tb/online/<name>/{online,frozen}``; the online answers go to ``<run>/online/<name>.csv``. The
fine-tunes stay in memory: no model version is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hydra
from omegaconf import MISSING, DictConfig

from music_rl.cli.app import App
from music_rl.cli.errors import user_errors_exit
from music_rl.core.errors import require


@dataclass
class SimulateConfig:
    """Arguments of ``music-rl simulate``."""

    run_dir: str = MISSING
    """the run folder (outputs/runs/<date>/<time>)"""
    listener_seed: int = 12345
    """the simulated listener: listener 0 of the population of this seed"""
    rounds: int = 12
    """rounds after the cold start"""
    finetune_every: int = 2
    """fine-tune the online policy every this many rounds"""
    timesteps: int = 8192
    """PPO steps of each fine-tune"""
    sessions: int = 6
    """sessions each policy serves per round"""
    seed: int = 0
    """seed of the sessions and of the fine-tunes"""
    last: int = 4
    """the final comparison averages the last this many rounds"""
    policy_version: int | None = None
    """the model version both loops start from; null: the newest"""
    exploration: float = 0.1
    """the online policy's exploration rate: with this probability a candidate at random (its propensity is
    logged with every answer, so the log can be evaluated off-policy)"""
    lock_timeout: float = 600.0
    """seconds to wait for the run folder's lock while another command writes into it"""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad argument."""
        require([*((key, getattr(self, key), getattr(self, key) >= 1, "must be an integer >= 1")
                   for key in ("rounds", "finetune_every", "timesteps", "sessions", "last")),
                 ("exploration", self.exploration, 0 <= self.exploration <= 1, "must be in [0, 1]")])


app = App("simulate", SimulateConfig, script="simulate_online")


@hydra.main(version_base="1.3", config_path=app.config_path, config_name=app.name)
@user_errors_exit
def main(raw: DictConfig) -> None:
    """Run both loops, print the rounds and the final comparison."""
    import torch

    from music_rl.runs.run_folder import hold

    args: SimulateConfig = app.typed(raw)
    torch.set_num_threads(1)
    with hold(Path(args.run_dir), wait=args.lock_timeout, command="music-rl simulate"):
        simulate(args)


def simulate(args: SimulateConfig) -> None:
    """Both loops, their table and TensorBoard curves (the run folder's lock held)."""
    from music_rl.data.feedback_store import FeedbackStore
    from music_rl.reports.markdown import markdown_header, markdown_row
    from music_rl.serving.finetune import check_online, simulate_online
    from music_rl.serving.inference import load_run
    from music_rl.training.tensorboard import log_values, open_logger

    run = load_run(Path(args.run_dir), args.policy_version)
    check_online(run)
    name = f"listener{args.listener_seed}-{datetime.now(UTC):%Y%m%dT%H%M%S.%f}"
    loggers = {side: open_logger(run.run_dir / "tb" / "online" / name / side) for side in ("online", "frozen")}
    store = FeedbackStore(run.run_dir / "online" / f"{name}.csv")
    print(f"listener {args.listener_seed}, policy v{run.version}, {args.sessions} sessions per round; "
          "reward per step (realised | expected)")
    if args.finetune_every >= args.rounds:  # a fine-tune follows a round that another round follows
        print(f"note: finetune_every={args.finetune_every} >= rounds={args.rounds}: the online policy is never "
              "fine-tuned; it differs from the frozen one by its exploration only")
    print(markdown_header(["round", "online", "frozen", "online expected", "frozen expected", "online version"]))
    figures = ("online_reward", "frozen_reward", "online_expected", "frozen_expected")

    def on_round(row: dict[str, Any]) -> None:
        cells = [str(row["round"]), *(f"{row[key]:.3f}" for key in figures), str(row["online_version"])]
        print(markdown_row(cells), flush=True)
        for side, logger in loggers.items():
            log_values(logger, {"online/reward": row[f"{side}_reward"],
                                "online/expected_reward": row[f"{side}_expected"]}, row["round"])

    try:
        table = simulate_online(run, args.listener_seed, args.rounds, args.finetune_every, args.timesteps,
                                args.sessions, args.seed, store=store, on_round=on_round,
                                exploration=args.exploration)
    finally:
        for logger in loggers.values():
            logger.close()
    tail = table.tail(args.last)
    means = tail.drop(columns=["round", "online_version"]).mean()
    print(f"\nlast {len(tail)} rounds, per step: expected reward online {means['online_expected']:.3f} vs "
          f"frozen {means['frozen_expected']:.3f}; realised online {means['online_reward']:.3f} vs "
          f"frozen {means['frozen_reward']:.3f}\nanswers: {store.path}")


if __name__ == "__main__":
    app.run(main)
