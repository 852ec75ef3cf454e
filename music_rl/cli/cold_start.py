"""Cold start of ``music-rl recommend``: the probe tracks of every cluster, answered at the terminal or by a
simulated listener, logged to the run's ``feedback.csv``, then a fine-tune on the answers.

Each cold start is one session of probe answers. A person's answers are appended as they come, in a new
session ``<user>-probe-<time>`` (answering again is new evidence). A simulated listener's answers are fixed
by its ``listener_seed`` and the ``seed``: they are logged in session ``<user>-probe-seed<seed>`` through
:meth:`music_rl.data.feedback_store.FeedbackStore.append_new`, so repeating a cold start lands its answers once and
fine-tunes on them once.

Prompts go to stderr; stdout stays for the recommendation.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from envs.rewards import reward
from music_rl.core.errors import ConfigError
from music_rl.data.catalog import FEATURES
from music_rl.data.feedback_store import utc_now
from music_rl.serving.finetune import (
    Answer,
    finetune,
    listener_rows,
    probe_feedback,
    probe_tracks,
    run_log,
    simulated_answers,
)
from music_rl.serving.inference import LoadedRun, track_label

T = TypeVar("T")
SHOWN_FEATURES = {"energy": "energy", "danceability": "dance", "valence": "valence", "acousticness": "acoustic"}


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


PCT_RULE = "a fraction from 0 to 1 (0.8) or a percentage with % (80%)"


def parse_pct(text: str) -> float:
    """How much was listened: a fraction in [0, 1] (``"0.8"``, ``"1"`` is all of it) or a percentage written
    with ``%`` (``"80%"``) → 0.8. A bare number above 1 (``"80"``) is refused: it is a percentage without its
    ``%``, and read as one, ``"1"`` would mean all of it while ``"2"`` meant 2%."""
    percent = text.endswith("%")
    try:
        value = float(text.removesuffix("%").strip())
    except ValueError:
        value = float("nan")
    if not percent and value > 1:
        raise ValueError(f"{_echo(text)}a bare number is a fraction from 0 to 1: write {text}% for a percentage; "
                         "q stops")
    value = value / 100 if percent else value
    if not 0 <= value <= 1:
        raise ValueError(f"{_echo(text)}give how much you listened: {PCT_RULE}; q stops")
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
        f"For each: how much of it would you listen to ({PCT_RULE}), and do you like it (y/n)?\n"
        "q (or Ctrl-D) stops and recommends from what you said so far.")
    count = 0

    def answer(track: int) -> tuple[float, int] | None:
        nonlocal count
        count += 1
        say(f"\n[{count}/{n}] {describe(run, track)}")
        try:
            return ask("  listened (0-1, or 0-100%): ", parse_pct), ask("  liked (y/n): ", parse_liked)
        except EOFError:
            return None

    return answer


def cold_start(run: LoadedRun, user_id: str | None, listener_seed: int | None, seed: int,
               timesteps: int) -> tuple[LoadedRun, int, dict[str, Any]]:
    """Probe (answers logged to feedback.csv as the module docstring says), fine-tune on this listener's answers.

    ``listener_seed`` None: a person answers at the terminal, else the simulated listener of that population
    seed. Returns the tuned run, the best-rewarded probe (the start track when none was given) and a summary.
    Raises :class:`music_rl.core.errors.FeedbackError` before any probe when the run's feedback.csv was deleted.
    """
    interactive = listener_seed is None
    user = user_id or (f"cold-{utc_now()}" if interactive else f"sim-{listener_seed}")
    store = run_log(run)
    if listener_seed is None:  # interactive
        probes = probe_feedback(run, terminal_answers(run), user, seed, on_row=lambda row: store.append([row]),
                                session_id=f"{user}-probe-{utc_now()}")
        logged = len(probes)
    else:
        probes = probe_feedback(run, simulated_answers(run.world, listener_seed, seed), user, seed,
                                session_id=f"{user}-probe-seed{seed}")
        logged = len(store.append_new(probes))
    if probes.empty:
        raise ConfigError("cold start: no probe answered, nothing to learn from")
    rows = listener_rows(store.read(known_track_ids=run.world.track_ids()), [user])
    again = f" ({len(probes) - logged} already logged by an earlier cold start)" if logged < len(probes) else ""
    say(f"\n{len(probes)} answers of {user} logged to {store.path}{again}; fine-tuning policy v{run.version} on "
        f"{len(rows)} answers for {timesteps} steps...")
    tuned = finetune(run, rows, timesteps, seed=seed, progress_bar=interactive and sys.stderr.isatty())
    say(f"-> policy version {tuned.version}\n")
    scores = reward(probes["percentage_listened"].to_numpy(float), probes["liked"].to_numpy(float), run.cfg.reward)
    best = run.world.track_ids().index(str(probes["track_id"].iat[int(np.argmax(scores))]))
    return tuned, best, {"user_id": user, "answers": len(probes), "finetuned_on": len(rows)}
