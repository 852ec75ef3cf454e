#!/usr/bin/env python
"""The online-learning loop against a frozen policy, for one simulated listener.

    python scripts/simulate_online.py run_dir=<run> listener_seed=12345 rounds=30 finetune_every=5

Round 0 probes the listener (cold start). Every round the online and the frozen policy each recommend one
session (same seed) and the listener answers; every ``finetune_every`` rounds the online policy is
fine-tuned on the listener's feedback so far. Prints a per-round table and logs both curves to the run's
TensorBoard folder (``online/``). Nothing in the run folder is overwritten (fine-tunes stay in memory).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from _entry import parse_args, user_errors_exit
from agents.finetune import simulate_online
from agents.inference import load_run
from envs.errors import ConfigError


@dataclass
class SimulateArgs:
    """Arguments of scripts/simulate_online.py."""

    run_dir: str = "???"
    listener_seed: int = 12345
    rounds: int = 30
    finetune_every: int = 5
    timesteps: int = 20_000
    seed: int = 0
    last: int = 10


@user_errors_exit
def main(argv: list[str]) -> None:
    """Run both loops, print the rounds and the final comparison."""
    args = parse_args(SimulateArgs, argv)
    if args.rounds < 2 or args.finetune_every < 1:
        raise ConfigError("rounds must be >= 2 and finetune_every >= 1")
    run = load_run(Path(args.run_dir))
    writer = SummaryWriter(str(run.run_dir / "tb" / f"online-listener{args.listener_seed}"))
    print("| round | online reward | frozen reward | online expected | frozen expected | version |")
    print("|---|---|---|---|---|---|")

    def on_round(row: dict) -> None:
        print(f"| {row['round']} | {row['online_mean_reward']:.3f} | {row['frozen_mean_reward']:.3f} | "
              f"{row['online_expected_reward']:.3f} | {row['frozen_expected_reward']:.3f} | {row['online_version']} |",
              flush=True)
        for key in ("online_mean_reward", "frozen_mean_reward", "online_expected_reward", "frozen_expected_reward"):
            writer.add_scalar(f"online/{key}", row[key], row["round"])

    table = simulate_online(run, args.listener_seed, args.rounds, args.finetune_every, args.timesteps, args.seed,
                            on_round=on_round)
    writer.close()
    tail = table.tail(min(args.last, len(table)))
    print(f"\nlast {len(tail)} rounds, mean expected reward per step: online "
          f"{tail['online_expected_reward'].mean():.3f} vs frozen {tail['frozen_expected_reward'].mean():.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
