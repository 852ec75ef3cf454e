"""``music-rl recommend``: a session of next tracks from a saved run.

    music-rl recommend run_dir=<run> track_id=<id> length=10 [sample=true] [format=json]
    music-rl recommend run_dir=<run> 'query="Artist 983 - Broken Storm"'      # Hydra quoting inside shell quoting
    music-rl recommend run_dir=<run> cold_start=true                  # answer the probes yourself
    music-rl recommend run_dir=<run> cold_start=true listener_seed=7  # a simulated listener answers
    music-rl recommend run_dir=<run> user=<user_id> [feedback=<log>]  # a listener run: serve from their answers

Each step shows the k candidates (nearest unplayed first) with the policy's probabilities (a DQN's or QR-DQN's
Q-values), the pick and the critic's value (none for RecurrentPPO, DQN, QR-DQN); for a run with
``env.action=latent``, the point the policy proposes, the track played (the unplayed track nearest to it) and its
distance, and whether it is one of the candidates shown. ``format=json``
prints the same content as JSON. ``policy_version=N`` picks a model version
(default: the newest). Cold start plays the probe tracks of every cluster (the most typical track of every
cluster first; ``q`` stops early), appends each answer to the run's feedback.csv as it comes, fine-tunes a
new policy version on this listener's answers and recommends from it, starting at ``track_id``/``query``
when given, else at the probe the listener liked best. ``user=<id>`` on a run trained with
``env.observation=listener`` (``+experiment=new_listener``) serves that listener with no fine-tune: the policy
observes what their answers (their rows of the run's feedback.csv, or of ``feedback=<log>``) say about every
candidate; a user without answers gets the B = 0 behaviour. The session starts at ``track_id``/``query`` when
given, else at the track the user's answers rewarded most. Prompts and progress go to stderr, the
recommendation to stdout.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import hydra
from omegaconf import MISSING, DictConfig

from music_rl.cli.app import App
from music_rl.cli.errors import user_errors_exit
from music_rl.core.errors import ConfigError


class OutputFormat(StrEnum):
    """How the recommendation is printed."""

    table = "table"
    json = "json"


@dataclass
class RecommendConfig:
    """Arguments of ``music-rl recommend``."""

    run_dir: str = MISSING
    """the run folder (outputs/runs/<date>/<time>)"""
    track_id: str | None = None
    """the start track's id, kept verbatim (track_id=00123)"""
    query: str | None = None
    """'artist - title' of the start track (case-insensitive; a unique substring will do)"""
    length: int = 10
    """recommendations in the session"""
    sample: bool = False
    """draw each pick from the policy's probabilities instead of taking the most probable (latent runs: draw the
    point from PPO's or SAC's distribution instead of its mean; TD3's actor is deterministic)"""
    seed: int = 0
    """seed of the draws (sample=true) and of cold start's simulated answers"""
    format: OutputFormat = OutputFormat.table
    """table: for people | json: the same content for programs"""
    policy_version: int | None = None
    """the model version to use; null: the newest"""
    cold_start: bool = False
    """probe the listener first (the probe tracks of every cluster), log the answers, fine-tune, then recommend;
    at the terminal, how much you listened is a fraction from 0 to 1 (0.8; 1 is all of it) or a percentage with
    % (80%): a bare number above 1 is refused"""
    listener_seed: int | None = None
    """cold start answered by the simulated listener of this population seed; null: you answer at the terminal"""
    user_id: str | None = None
    """who answers the cold start (feedback.csv user_id); null: cold-<time> or sim-<listener_seed>"""
    finetune_timesteps: int = 20_000
    """environment steps of the cold start's fine-tune"""
    lock_timeout: float = 600.0
    """cold start: seconds to wait for the run folder's lock while another command writes into it"""
    user: str | None = None
    """serve this listener (a feedback user_id) from their answers, no fine-tune: runs with
    env.observation=listener; no answers: B = 0"""
    feedback: str | None = None
    """with user: the feedback log to read their answers from (each served track once: exact duplicate rows
    count once, two answers to one track are refused; rows of tracks not in the catalog are counted and dropped);
    null: the run's feedback.csv"""
    strict: bool = False
    """with feedback: a row whose track is not in the run's catalog is fatal (else counted, reported, dropped)"""


app = App("recommend", RecommendConfig)


def check(args: RecommendConfig) -> RecommendConfig:
    """Raise :class:`ConfigError` naming the first bad argument."""
    if args.finetune_timesteps < 1:
        raise ConfigError(f"finetune_timesteps={args.finetune_timesteps}: must be an integer >= 1")
    return args


def _label(fields: dict[str, Any]) -> str:
    """``artist - name (genre)  [id]``, each part the catalog has, of a step's track fields."""
    named = f"{fields['artist']} - {fields['name']}" if fields.get("artist") and fields.get("name") else ""
    genre = f" ({fields['genre']})" if fields.get("genre") else ""
    return f"{named}{genre}  [{fields['track_id']}]" if named or genre else fields["track_id"]


def _score(candidate: dict[str, Any]) -> str:
    """A discrete step's candidate score: its Q-value (DQN, QR-DQN) or the policy's probability."""
    return f"q {candidate['q_value']:.3f}" if "q_value" in candidate else f"{candidate['probability']:6.1%}"


def format_table(steps: list[dict[str, Any]], version: int) -> str:
    """The human-readable session: each step's candidates, probabilities, pick (->) and value; for a latent run,
    the proposed point, the track played, its distance and the candidates shown."""
    n = len(steps)
    latent = bool(steps) and "proposed" in steps[0]
    q = bool(steps) and not latent and "q_value" in steps[0]["candidates"][0]  # DQN, QR-DQN
    legend = ("point: the policy's proposal in the latent space; -> the unplayed track nearest to it, at distance; "
              "the candidates shown (* the one played)" if latent else
              "-> the pick; q: each candidate's Q-value (the return ahead, in the env's scaled units)" if q else
              "-> the pick; % the policy's probability; value: the critic's estimate of the return ahead")
    lines = [f"policy version {version}, {n} recommendation{'s' if n != 1 else ''} ({legend})"]
    for step in steps:
        if latent:
            point = ", ".join(f"{v:.3f}" for v in step["proposed"])
            where = "outside the candidates" if step["outside_candidates"] else "a candidate"
            lines.append(f"\n#{step['position']}  from {_label(step['from'])}   point ({point})")
            lines.append(f"  -> {_label(step['played'])}   distance {step['distance']:.4f}, {where}")
            lines += [f"     {'*' if cand == step['played'] else ' '} {_label(cand)}" for cand in step["candidates"]]
            continue
        value = f"   value {step['value']:.3f}" if "value" in step else ""  # none: RecurrentPPO, DQN
        lines.append(f"\n#{step['position']}  from {_label(step['from'])}{value}")
        lines += [f"  {'->' if i == step['pick'] else '  '} {_score(cand)}  {_label(cand)}"
                  for i, cand in enumerate(step["candidates"])]
    return "\n".join(lines) + "\n"


@hydra.main(version_base="1.3", config_path=app.config_path, config_name=app.name)
@user_errors_exit
def main(raw: DictConfig) -> None:
    """Load, (cold start), recommend, print."""
    import numpy as np
    import torch

    from music_rl.serving.inference import (
        check_length,
        find_track,
        listener_estimate,
        load_run,
        recommend,
        user_answers,
    )

    args = check(app.typed(raw))
    torch.set_num_threads(1)  # one small forward pass per step: threads only add overhead
    run = load_run(Path(args.run_dir), args.policy_version)
    check_length(run, args.length)
    summary, estimate = None, None
    if args.feedback is not None and args.user is None:
        raise ConfigError(f"feedback={args.feedback!r}: give user=<user_id> too (whose answers to read)")
    if args.strict and args.feedback is None:
        raise ConfigError("strict=true: applies to feedback=<log> (the run's own feedback.csv holds only its "
                          "catalog's tracks): give feedback=... too")
    if args.user is not None and args.cold_start:
        raise ConfigError("give user=... (serve from their answers) or cold_start=true (probe and fine-tune), "
                          "not both")
    if args.track_id is not None and args.query is not None:
        raise ConfigError("give track_id=... or query=..., not both")
    given = args.track_id is not None or args.query is not None
    start = find_track(run.world, args.track_id, args.query) if given else None
    if args.cold_start:
        from music_rl.cli.cold_start import cold_start
        from music_rl.runs.run_folder import hold

        with hold(run.run_dir, wait=args.lock_timeout, command="music-rl recommend cold_start=true"):
            run, best, summary = cold_start(run, args.user_id, args.listener_seed, args.seed,
                                            args.finetune_timesteps)
        start = best if start is None else start
    elif args.user is not None:
        answers, report = user_answers(run, args.user, args.feedback, args.strict)
        if report is not None and report.repaired and args.feedback is not None:  # a report: feedback was given
            print(report.line(args.feedback), file=sys.stderr)
        estimate = listener_estimate(run, answers)
        if start is None and len(answers):
            start = int(answers.tracks[int(np.argmax(answers.rewards(run.cfg.reward)))])
        summary = {"user": args.user, "answers": len(answers)}
        print(f"serving user {args.user!r} from {len(answers)} answer(s)"
              + ("" if len(answers) else " (none: the B = 0 behaviour)"), file=sys.stderr)
    if start is None:
        raise ConfigError('give track_id=... or query="artist - title" (or cold_start=true, or user=... with '
                          'answers)')
    steps = recommend(run, start, args.length, sample=args.sample, seed=args.seed, estimate=estimate)
    if args.format == "table":
        print(format_table(steps, run.version), end="")
        return
    out = {"run_dir": str(run.run_dir), "policy_version": run.version, "steps": steps}
    if summary is not None:
        out["user" if args.user is not None else "cold_start"] = summary
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    app.run(main)
