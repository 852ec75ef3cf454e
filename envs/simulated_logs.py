"""Feedback logs played by simulated listeners: cold-start probes (:func:`probe_log`) and the sessions of a
uniformly random policy over the kNN candidates (:func:`random_walk`, :func:`random_walk_log`), as typed feedback
frames of :mod:`music_rl.data.feedback`'s format."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd

from envs.candidates import CandidateIndex
from envs.listeners import Population
from music_rl.core.errors import ConfigError
from music_rl.data.feedback import COLUMNS, OPTIONAL

FeedbackRow = tuple[str, str, int, str, float, int, str, str, float]
"""One row of a feedback frame, a value per column of ``COLUMNS`` then ``OPTIONAL`` (:func:`feedback_frame`)."""


def probe_log(population: Population, listener_ids: Sequence[int], probe_tracks: Sequence[int] | np.ndarray,
              track_ids: Sequence[str] | np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """Cold-start probing: every probe track is played once to every listener, each from a fresh state.

    Each probe is answered in a fresh session, so the answers measure taste, not boredom, drift or
    the order of the probes (nobody leaves). The probes of a listener share the session id
    ``probe-<listener>``, with ``position`` the 1-based probe number.

    Args:
        population: the listeners.
        listener_ids: which listeners are probed.
        probe_tracks: track indices (the caller picks them, e.g. the tracks nearest each cluster centroid).
        track_ids: track id of each track index (row i = track i).
        rng: draws every response.

    Returns:
        A typed feedback frame; each probe is shown alone (``candidates`` the probe, no ``from_track_id``:
        a fresh session) with ``action_prob`` 1 (a deterministic choice).
    """
    rows = []
    probes = [int(t) for t in probe_tracks]
    for listener in listener_ids:
        listener = int(listener)
        for pos, track in enumerate(probes, start=1):
            pct, liked = population.session(listener, rng).respond(track)
            tid = str(track_ids[track])
            rows.append((f"listener-{listener}", f"probe-{listener}", pos, tid, pct, liked, "", tid, 1.0))
    return feedback_frame(rows)


def random_walk(population: Population, listener: int, index: CandidateIndex, rng: np.random.Generator,
                session_length: int, k: int = 4, n_sessions: int | None = None
                ) -> Iterator[tuple[int, int, int, np.ndarray, int, float, int]]:
    """The steps of a uniformly random policy over the kNN candidates, one listener's sessions in turn.

    Every session starts on a random track (the seed track: not played to the listener, not logged, but the
    first step's ``previous``); each step offers ``index.candidates(current, played)[:k]``, picks one uniformly
    and draws the listener's answer; the picked track becomes current. A session ends after ``session_length``
    tracks or when the listener leaves. Stops after ``n_sessions`` sessions (None: never; the caller stops).

    Yields:
        ``(session, position, previous, candidates, track, pct, liked)`` per step (session 0-based, position
        1-based).
    """
    if k < 1 or index.k < k:
        raise ConfigError(f"k={k}: must be between 1 and the candidate index's k ({index.k})")
    played = np.zeros(index.n_tracks, dtype=bool)
    s = 0
    while n_sessions is None or s < n_sessions:
        session = population.session(int(listener), rng)
        current = int(rng.integers(index.n_tracks))
        touched = [current]
        played[current] = True
        try:
            for pos in range(1, session_length + 1):
                cands = index.candidates(current, played)[:k]
                previous, current = current, int(cands[int(rng.integers(k))])
                played[current] = True
                touched.append(current)
                pct, liked = session.respond(current)
                yield s, pos, previous, cands, current, pct, liked
                if session.left:
                    break
        finally:
            played[touched] = False
        s += 1


def random_walk_log(population: Population, listener_ids: Sequence[int], index: CandidateIndex,
                    n_sessions: int, session_length: int, track_ids: Sequence[str], rng: np.random.Generator,
                    k: int = 4) -> pd.DataFrame:
    """Sessions of a uniformly random policy over the kNN candidates (:func:`random_walk`), as a logging
    policy would play them: ``n_sessions`` per listener, session ids ``walk-<listener>-<n>``, each step's
    ``candidates`` logged and ``action_prob = 1 / k``.

    Args:
        population: the listeners.
        listener_ids: each listener plays ``n_sessions`` sessions.
        index: the candidate index (``index.k >= k``).
        n_sessions: sessions per listener.
        session_length: most tracks per session (``session_length + k`` must not exceed the catalog).
        track_ids: track id of each track index.
        rng: start tracks, choices and responses.
        k: candidates per step.
    """
    rows = []
    for listener in listener_ids:
        listener = int(listener)
        for s, pos, previous, cands, current, pct, liked in random_walk(population, listener, index, rng,
                                                                        session_length, k, n_sessions):
            shown = " ".join(str(track_ids[c]) for c in cands)
            rows.append((f"listener-{listener}", f"walk-{listener}-{s}", pos, str(track_ids[current]),
                         pct, liked, str(track_ids[previous]), shown, 1.0 / k))
    return feedback_frame(rows)


def feedback_frame(rows: list[FeedbackRow]) -> pd.DataFrame:
    """A typed feedback frame from row tuples of every column (the dtypes
    :func:`music_rl.data.feedback.read_feedback` returns)."""
    df = pd.DataFrame(rows, columns=[*COLUMNS, *OPTIONAL])
    return df.astype({"user_id": str, "session_id": str, "position": np.int64, "track_id": str,
                      "percentage_listened": np.float64, "liked": np.int64, "from_track_id": str,
                      "candidates": str, "action_prob": np.float64})
