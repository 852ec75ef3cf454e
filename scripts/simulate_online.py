#!/usr/bin/env python
"""The online-learning loop against a frozen policy, for one simulated listener.

    python scripts/simulate_online.py run_dir=<run> listener_seed=12345 rounds=12 finetune_every=2

The listener is listener 0 of the population sampled with ``listener_seed`` (not the run's listener unless
the seeds coincide). Round 0 probes it (cold start); in every round the online and the frozen policy each
serve ``sessions`` sessions (same seeds) and the listener answers; after round 0 and every
``finetune_every`` rounds the online policy is fine-tuned (``timesteps`` PPO steps) on the listener's answers
so far. Prints a per-round table (realised and expected reward per step) and logs both curves to
``<run>/tb/online/<name>/{online,frozen}``; the online answers go to ``<run>/online/<name>.csv``. The
fine-tunes stay in memory: no model version is written.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch
from _entry import parse_args, user_errors_exit
from torch.utils.tensorboard import SummaryWriter

from agents.finetune import simulate_online
from agents.inference import load_run
from envs.errors import ConfigError
from envs.feedback_store import FeedbackStore


@dataclass
class SimulateArgs:
    """Arguments of scripts/simulate_online.py."""

    run_dir: str = "???"
    listener_seed: int = 12345
    rounds: int = 12
    finetune_every: int = 2
    timesteps: int = 8192
    sessions: int = 6
    seed: int = 0
    last: int = 4
    policy_version: int | None = None


def validate(args: SimulateArgs) -> None:
    """Raise :class:`ConfigError` naming the first bad argument."""
    for key, low in (("rounds", 1), ("finetune_every", 1), ("timesteps", 1), ("sessions", 1), ("last", 1)):
        if getattr(args, key) < low:
            raise ConfigError(f"{key}={getattr(args, key)}: must be an integer >= {low}")


@user_errors_exit
def main(argv: list[str]) -> None:
    """Run both loops, print the rounds and the final comparison."""
    args = parse_args(SimulateArgs, argv)
    validate(args)
    torch.set_num_threads(1)
    run = load_run(Path(args.run_dir), args.policy_version)
    name = f"listener{args.listener_seed}-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    writers = {side: SummaryWriter(str(run.run_dir / "tb" / "online" / name / side))
               for side in ("online", "frozen")}
    store = FeedbackStore(run.run_dir / "online" / f"{name}.csv")
    print(f"listener {args.listener_seed}, policy v{run.version}, {args.sessions} sessions per round; "
          "reward per step (realised | expected)")
    print("| round | online | frozen | online expected | frozen expected | online version |")
    print("|---|---|---|---|---|---|")

    def on_round(row: dict) -> None:
        print(f"| {row['round']} | {row['online_reward']:.3f} | {row['frozen_reward']:.3f} | "
              f"{row['online_expected']:.3f} | {row['frozen_expected']:.3f} | {row['online_version']} |",
              flush=True)
        for side, writer in writers.items():
            writer.add_scalar("online/reward", row[f"{side}_reward"], row["round"])
            writer.add_scalar("online/expected_reward", row[f"{side}_expected"], row["round"])

    try:
        table = simulate_online(run, args.listener_seed, args.rounds, args.finetune_every, args.timesteps,
                                args.sessions, args.seed, store=store, on_round=on_round)
    finally:
        for writer in writers.values():
            writer.close()
    tail = table.tail(args.last)
    means = tail.drop(columns=["round", "online_version"]).mean()
    print(f"\nlast {len(tail)} rounds, per step: expected reward online {means['online_expected']:.3f} vs "
          f"frozen {means['frozen_expected']:.3f}; realised online {means['online_reward']:.3f} vs "
          f"frozen {means['frozen_reward']:.3f}\nanswers: {store.path}")


if __name__ == "__main__":
    main(sys.argv[1:])
