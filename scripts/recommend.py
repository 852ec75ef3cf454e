#!/usr/bin/env python
"""Recommend a session of next tracks from a saved run.

    python scripts/recommend.py run_dir=<run> track_id=<id> length=10 [sample=true] [format=json]
    python scripts/recommend.py run_dir=<run> query="Artist - Title"
    python scripts/recommend.py run_dir=<run> cold_start=true                  # answer the probes yourself
    python scripts/recommend.py run_dir=<run> cold_start=true listener_seed=7  # a simulated listener answers

Each step shows the k candidates (nearest unplayed first) with the policy's probabilities, the pick and the
critic's value; ``format=json`` prints the same content as JSON. ``policy_version=N`` picks a model version
(default: the newest). Cold start plays the probe tracks of every cluster (the most typical track of every
cluster first; ``q`` stops early), appends each answer to the run's feedback.csv as it comes, fine-tunes a
new policy version on this listener's answers and recommends from it, starting at ``track_id``/``query``
when given, else at the probe the listener liked best. Prompts and progress go to stderr, the
recommendation to stdout.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from _entry import parse_args, user_errors_exit

from agents.finetune import Answer, finetune, listener_rows, probe_feedback, probe_tracks, simulated_answers
from agents.inference import LoadedRun, check_length, find_track, load_run, recommend, track_label
from envs.catalog import FEATURES
from envs.errors import ConfigError
from envs.feedback_store import FeedbackStore, utc_now

T = TypeVar("T")
SHOWN_FEATURES = {"energy": "energy", "danceability": "dance", "valence": "valence",
                  "acousticness": "acoustic"}


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
    user_id: str | None = None
    finetune_timesteps: int = 20_000


def parse(argv: list[str]) -> RecommendArgs:
    """``key=value`` arguments (string values such as track ids are kept verbatim by ``parse_args``)."""
    args = parse_args(RecommendArgs, argv)
    if args.format not in ("table", "json"):
        raise ConfigError(f"format={args.format!r}: must be table or json")
    if args.finetune_timesteps < 1:
        raise ConfigError(f"finetune_timesteps={args.finetune_timesteps}: must be an integer >= 1")
    return args


def say(text: str = "") -> None:
    """A line for the person at the terminal (stderr: stdout holds only the recommendation)."""
    print(text, file=sys.stderr, flush=True)


def ask(prompt: str, parse_answer: Callable[[str], T]) -> T:
    """Ask until ``parse_answer`` accepts the answer; ``q`` or the end of input raises EOFError (stop)."""
    while True:
        print(prompt, end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        text = line.strip().lower()
        if not line or text in ("q", "quit", "stop"):
            raise EOFError
        try:
            return parse_answer(text)
        except ValueError as err:
            say(f"    {err}")


def _echo(text: str) -> str:
    """``'<answer>'? `` before a complaint about an answer (nothing for an empty one)."""
    return f"{text!r}? " if text else ""


def parse_pct(text: str) -> float:
    """``"80"``, ``"80%"`` or ``"0.8"`` → 0.8 (a number above 1 is a percentage)."""
    try:
        value = float(text.rstrip("%").strip())
    except ValueError:
        value = float("nan")
    value = value / 100 if value > 1 or text.endswith("%") else value
    if not 0 <= value <= 1:
        raise ValueError(f"{_echo(text)}give how much you listened: 0-100 (%), or 0-1; q stops")
    return value


def parse_liked(text: str) -> int:
    """``y``/``yes``/``1`` → 1, ``n``/``no``/``0`` → 0."""
    if text in ("y", "yes", "1"):
        return 1
    if text in ("n", "no", "0"):
        return 0
    raise ValueError(f"{_echo(text)}answer y or n; q stops")


def describe(run: LoadedRun, track: int) -> str:
    """Label, genre and a few features of a track, for a person deciding whether they like it."""
    tracks, features = run.world.tracks, run.world.features[track]
    genre = f" ({tracks['genre'].iat[track]})" if "genre" in tracks else ""
    shown = "  ".join(f"{short} {features[FEATURES.index(name)]:.2f}"
                      for name, short in SHOWN_FEATURES.items())
    return f"{track_label(tracks, track)}{genre}  [{run.world.track_ids()[track]}]\n      {shown}"


def terminal_answers(run: LoadedRun) -> Answer:
    """Answers typed by a person, for each probe: how much they listened and whether they liked it."""
    n = len(probe_tracks(run))
    n_clusters = len(run.world.centroids)
    say(f"Cold start: {n} probe tracks, the most typical of each of the {n_clusters} clusters first.\n"
        "For each: how much of it would you listen to (0-100%), and do you like it (y/n)?\n"
        "q (or Ctrl-D) stops and recommends from what you said so far.")
    count = 0

    def answer(track: int) -> tuple[float, int] | None:
        nonlocal count
        count += 1
        say(f"\n[{count}/{n}] {describe(run, track)}")
        try:
            return ask("  listened (0-100%): ", parse_pct), ask("  liked (y/n): ", parse_liked)
        except EOFError:
            return None

    return answer


def cold_start(run: LoadedRun, args: RecommendArgs) -> tuple[LoadedRun, int, dict[str, Any]]:
    """Probe (answers appended to feedback.csv as they come), fine-tune on this listener's answers.

    Returns the tuned run, the best-rewarded probe (the start track when none was given) and a summary.
    """
    interactive = args.listener_seed is None
    user = args.user_id or (f"cold-{utc_now()}" if interactive else f"sim-{args.listener_seed}")
    answer = (terminal_answers(run) if interactive
              else simulated_answers(run.world, args.listener_seed, args.seed))
    store = FeedbackStore(run.run_dir / "feedback.csv")
    probes = probe_feedback(run, answer, user, args.seed, on_row=lambda row: store.append([row]))
    if probes.empty:
        raise ConfigError("cold start: no probe answered, nothing to learn from")
    rows = listener_rows(store.read(known_track_ids=run.world.track_ids()), [user])
    say(f"\n{len(probes)} answers of {user} logged to {store.path}; fine-tuning policy v{run.version} on "
        f"{len(rows)} answers for {args.finetune_timesteps} steps...")
    tuned = finetune(run, rows, args.finetune_timesteps, seed=args.seed,
                     progress_bar=interactive and sys.stderr.isatty())
    say(f"-> policy version {tuned.version}\n")
    scores = probes["percentage_listened"] + run.cfg.reward.like_weight * probes["liked"]
    best = run.world.track_ids().index(str(probes["track_id"].iat[int(np.argmax(scores))]))
    return tuned, best, {"user_id": user, "answers": len(probes), "finetuned_on": len(rows)}


def _label(fields: dict[str, Any]) -> str:
    """``artist - name (genre)  [id]``, each part the catalog has, of a step's track fields."""
    named = f"{fields['artist']} - {fields['name']}" if fields.get("artist") and fields.get("name") else ""
    genre = f" ({fields['genre']})" if fields.get("genre") else ""
    return f"{named}{genre}  [{fields['track_id']}]" if named or genre else fields["track_id"]


def format_table(steps: list[dict[str, Any]], version: int) -> str:
    """The human-readable session: each step's candidates, probabilities, pick (->) and value."""
    n = len(steps)
    lines = [f"policy version {version}, {n} recommendation{'s' if n != 1 else ''} "
             "(-> the pick; % the policy's probability; value: the critic's estimate of the return ahead)"]
    for step in steps:
        lines.append(f"\n#{step['position']}  from {_label(step['from'])}   value {step['value']:.3f}")
        lines += [f"  {'->' if i == step['pick'] else '  '} {cand['probability']:6.1%}  {_label(cand)}"
                  for i, cand in enumerate(step["candidates"])]
    return "\n".join(lines) + "\n"


def emit(text: str) -> None:
    """Write the result to stdout; a reader that stops early (``| head``) is not an error."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit


@user_errors_exit
def main(argv: list[str]) -> None:
    """Parse, load, (cold start), recommend, print."""
    args = parse(argv)
    torch.set_num_threads(1)  # one small forward pass per step: threads only add overhead
    run = load_run(Path(args.run_dir), args.policy_version)
    check_length(run, args.length)
    summary = None
    given = args.track_id is not None or args.query is not None
    start = find_track(run.world, args.track_id, args.query) if given else None
    if args.cold_start:
        run, best, summary = cold_start(run, args)
        start = best if start is None else start
    elif start is None:
        raise ConfigError('give track_id=... or query="artist - title" (or cold_start=true)')
    steps = recommend(run, start, args.length, sample=args.sample, seed=args.seed)
    if args.format == "table":
        emit(format_table(steps, run.version))
        return
    out = {"run_dir": str(run.run_dir), "policy_version": run.version, "steps": steps}
    if summary is not None:
        out["cold_start"] = summary
    emit(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
