#!/usr/bin/env python
"""Recommend a session of next tracks from a saved run.

    python scripts/recommend.py run_dir=<run> track_id=<id> length=10 [sample=true] [format=json]
    python scripts/recommend.py run_dir=<run> query="Artist - Title"
    python scripts/recommend.py run_dir=<run> cold_start=true                    # answer the probes yourself
    python scripts/recommend.py run_dir=<run> cold_start=true listener_seed=7    # a simulated listener answers

Each step shows the k candidates (nearest unplayed first) with the policy's probabilities, the pick and the
critic's value. ``policy_version=N`` picks a model version (default: the newest).
Cold start plays the probe tracks of every cluster, logs the answers to the run's feedback.csv, fine-tunes a
new policy version on them and recommends from it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from _entry import parse_args, user_errors_exit
from agents.finetune import finetune, now_iso, probe_feedback, simulated_answers
from agents.inference import LoadedRun, find_track, load_run, recommend, track_label
from envs.errors import ConfigError
from envs.feedback_store import FeedbackStore


@dataclass
class RecommendArgs:
    """Arguments of scripts/recommend.py."""

    run_dir: str = "???"
    track_id: str | None = None
    query: str | None = None
    length: int = 10
    sample: bool = False
    seed: int = 0
    format: str = "table"
    policy_version: int | None = None
    cold_start: bool = False
    listener_seed: int | None = None
    finetune_timesteps: int = 20_000


def ask(prompt: str, parse: Any) -> Any:
    """Ask until ``parse`` accepts the answer; ``q`` raises EOFError (stop early)."""
    while True:
        text = input(prompt).strip().lower()
        if text in ("q", "quit", "stop"):
            raise EOFError
        try:
            return parse(text)
        except ValueError as err:
            print(f"  {err}")


def _pct(text: str) -> float:
    value = float(text.rstrip("%"))
    value = value / 100 if value > 1 else value
    if not 0 <= value <= 1:
        raise ValueError("percentage listened: a number in 0..1 or 0..100%")
    return value


def _yes_no(text: str) -> int:
    if text in ("y", "yes", "1"):
        return 1
    if text in ("n", "no", "0", ""):
        return 0
    raise ValueError("liked: y or n")


def terminal_answers(run: LoadedRun) -> Any:
    """Answers typed by a person: percentage listened and liked, for each probe; q stops."""
    print("Cold start: tell us how you like a few tracks (q to stop and get your playlist).")

    def answer(track: int) -> tuple[float, int] | None:
        print(f"\n  {track_label(run.world.tracks, track)}  [{run.world.track_ids()[track]}]")
        try:
            return ask("  percentage listened (0-1 or 0-100%): ", _pct), ask("  liked? (y/n): ", _yes_no)
        except EOFError:
            return None

    return answer


def cold_start(run: LoadedRun, args: RecommendArgs) -> tuple[LoadedRun, int]:
    """Probe, log, fine-tune; returns the tuned run and a start track (the best-liked probe)."""
    interactive = args.listener_seed is None
    answer = terminal_answers(run) if interactive else simulated_answers(run.world, args.listener_seed, args.seed)
    user = f"cold-{now_iso()}" if interactive else f"sim-{args.listener_seed}"
    feedback = probe_feedback(run, answer, user, args.seed)
    if feedback.empty:
        raise ConfigError("cold start: no probe answered, nothing to learn from")
    FeedbackStore(run.run_dir / "feedback.csv").append(feedback)
    tuned = finetune(run, feedback, args.finetune_timesteps, seed=args.seed)
    scores = feedback["percentage_listened"] + run.cfg.reward.like_weight * feedback["liked"]
    start = run.world.track_ids().index(str(feedback["track_id"].iloc[int(np.argmax(scores))]))
    print(f"\n{len(feedback)} answers logged; policy fine-tuned -> version {tuned.version}\n", file=sys.stderr)
    return tuned, start


def print_table(steps: list[dict[str, Any]], version: int) -> None:
    """The human-readable session."""
    print(f"policy version {version}")
    for step in steps:
        print(f"\n#{step['position']}  from {step['from_track_id']}   value {step['value']:.3f}")
        for i, cand in enumerate(step["candidates"]):
            mark = "->" if i == step["pick"] else "  "
            print(f"  {mark} {cand['probability']:6.1%}  {cand['label']}  [{cand['track_id']}]")


@user_errors_exit
def main(argv: list[str]) -> None:
    """Parse, load, (cold start), recommend, print."""
    args = parse_args(RecommendArgs, argv)
    if args.format not in ("table", "json"):
        raise ConfigError(f"format={args.format!r}: must be table or json")
    if args.length < 1:
        raise ConfigError(f"length={args.length}: must be an integer >= 1")
    run = load_run(Path(args.run_dir), args.policy_version)
    if args.cold_start:
        run, start = cold_start(run, args)
    else:
        if args.track_id is None and args.query is None:
            raise ConfigError("give track_id=... or query=\"artist - title\" (or cold_start=true)")
        start = find_track(run.world, args.track_id, args.query)
    steps = recommend(run, start, args.length, sample=args.sample, seed=args.seed)
    if args.format == "json":
        print(json.dumps({"run_dir": str(run.run_dir), "policy_version": run.version,
                          "start_track_id": run.world.track_ids()[start], "steps": steps}, indent=2))
    else:
        print_table(steps, run.version)


if __name__ == "__main__":
    main(sys.argv[1:])
