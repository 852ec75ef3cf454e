#!/usr/bin/env python
"""Re-evaluate a saved run against ground-truth simulated listeners.

    python scripts/evaluate.py run_dir=outputs/runs/<date>/<time> [n_episodes=500] [protocol=population] \
        [out=m.json]

Uses the run's saved config (``.hydra/config.yaml``), world and ``ppo.zip`` (``vae.pt`` is checked against the
world); prints the per-policy table and writes the metrics JSON to ``out`` when given (the run's own
``metrics.json`` is left untouched). A missing, corrupt or foreign artifact is one ``error:`` line, exit 2.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from _entry import parse_args, user_errors_exit

from agents.config import load_run_config, validate_eval
from agents.pipeline import reevaluate
from agents.report import metrics_table
from envs.atomic import write_text_atomic
from envs.errors import RunFolderError


@dataclass
class EvaluateArgs:
    """Arguments of scripts/evaluate.py."""

    run_dir: str = "???"
    n_episodes: int | None = None
    protocol: str | None = None
    out: str | None = None


@user_errors_exit
def main(argv: list[str]) -> None:
    """Load the run, evaluate every policy, print and optionally save the metrics."""
    args = parse_args(EvaluateArgs, argv)
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise RunFolderError(f"run_dir={args.run_dir!r}: no such folder")
    cfg = load_run_config(run_dir)
    if args.n_episodes is not None:
        cfg.eval = dataclasses.replace(cfg.eval, n_episodes=args.n_episodes)
    if args.protocol is not None:
        cfg.eval = dataclasses.replace(cfg.eval, protocol=args.protocol)
    validate_eval(cfg.eval)
    metrics = reevaluate(run_dir, cfg)
    print(metrics_table(metrics))
    if args.out:
        write_text_atomic(args.out, json.dumps(metrics, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
