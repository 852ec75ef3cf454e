"""Sessions from a log: the fit log read through the project's feedback reader, as arrays of catalog rows and
answers in play order, and its split into the sessions that fit, stop the fitting early and measure fidelity.

A log has user ids when it names more than one listener (an MSSD log has none: its sessions are pooled as one
listener by :func:`music_rl.data.log_import.read_log`). It is split by listener when it names at least
:data:`MIN_LISTENERS_TO_SPLIT`, else by session.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from music_rl.core.errors import FeedbackError
from music_rl.data.log_import import FeedbackConfig, LogReport, read_log

MIN_SESSIONS = 10  # the fewest sessions a listener is fitted on: 6 fit, 2 stop early, 2 measure
MIN_LISTENERS_TO_SPLIT = 5  # fewer listeners: the log is split by session


@dataclass(frozen=True)
class LogSessions:
    """Sessions of a log, in play order, rows of the catalog.

    Attributes:
        tracks, pct, liked: (A,) every answer, session after session (int64, float64, int64).
        starts: (S + 1,) where each session's answers start (``starts[-1] == A``).
        users: (S,) int64 the listener of each session (0 .. U - 1).
        has_users: whether the log names its listeners (more than one user id).
        ids: (S,) int64 each session's number in the log as read (:meth:`subset` keeps them): what ties a
            session of a subset to what is known of it outside the log (the generating listener's probabilities).
    """

    tracks: np.ndarray
    pct: np.ndarray
    liked: np.ndarray
    starts: np.ndarray
    users: np.ndarray
    has_users: bool
    ids: np.ndarray

    @property
    def n_sessions(self) -> int:
        """The number of sessions."""
        return len(self.starts) - 1

    @property
    def n_users(self) -> int:
        """The number of listeners (1 without user ids)."""
        return int(self.users.max()) + 1 if len(self.users) else 0

    def session(self, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Session ``s``'s tracks, shares heard and likes."""
        lo, hi = self.starts[s], self.starts[s + 1]
        return self.tracks[lo:hi], self.pct[lo:hi], self.liked[lo:hi]

    def subset(self, sessions: np.ndarray) -> LogSessions:
        """The sessions ``sessions`` (indices, in that order), listener ids kept."""
        index = np.asarray(sessions, dtype=np.int64)
        parts = [self.session(int(s)) for s in index]
        lengths = np.array([len(p[0]) for p in parts], dtype=np.int64)
        return LogSessions(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                           np.concatenate([p[2] for p in parts]), np.r_[0, np.cumsum(lengths)].astype(np.int64),
                           self.users[index], self.has_users, self.ids[index])


def sessions_of(log: pd.DataFrame, track_ids: Sequence[str]) -> LogSessions:
    """A feedback frame joined to the catalog (every track among ``track_ids``) as :class:`LogSessions`: sessions
    ordered by listener and session id, answers by position."""
    rows = pd.Index([str(t) for t in track_ids]).get_indexer(pd.Index(log["track_id"].astype(str)))
    users = log["user_id"].astype(str)
    keys = users + "\x1f" + log["session_id"].astype(str)
    frame = pd.DataFrame({"user": users, "key": keys, "position": log["position"].to_numpy(), "row": rows,
                          "pct": log["percentage_listened"].to_numpy(dtype=np.float64),
                          "liked": log["liked"].to_numpy(dtype=np.int64)})
    frame = frame.sort_values(["user", "key", "position"], kind="stable")
    key = frame["key"].to_numpy()
    starts = np.r_[0, np.flatnonzero(key[1:] != key[:-1]) + 1, len(frame)].astype(np.int64)
    user_codes, _ = pd.factorize(frame["user"].to_numpy()[starts[:-1]], sort=True)
    return LogSessions(frame["row"].to_numpy(np.int64), frame["pct"].to_numpy(), frame["liked"].to_numpy(),
                       starts, user_codes.astype(np.int64), users.nunique() > 1,
                       np.arange(len(starts) - 1, dtype=np.int64))


def read_fit_log(path: str, track_ids: Sequence[str]) -> tuple[LogSessions, LogReport]:
    """``listeners.fit_log`` read by :func:`music_rl.data.log_import.read_log` (the project's format or the MSSD's;
    rows whose track is not in the catalog counted and dropped) as sessions.

    Raises:
        FeedbackError: what the reader refuses (an unreadable file, a missing column, NaN answers, a log joining
            no row of the catalog), or fewer than :data:`MIN_SESSIONS` sessions left.
    """
    try:
        joined, report = read_log(FeedbackConfig(path=path), track_ids)
    except FeedbackError as err:
        message = str(err)
        raise FeedbackError(message if message.startswith(str(path)) else f"listeners.fit_log: {message}") from None
    sessions = sessions_of(joined, track_ids)
    if sessions.n_sessions < MIN_SESSIONS:
        unknown = report.unknown_rows
        dropped = f" ({unknown} rows whose track is not in the catalog dropped)" if unknown else ""
        raise FeedbackError(f"{path}: {sessions.n_sessions} session(s){dropped}: a listener is fitted on at least "
                            f"{MIN_SESSIONS} (some fit it, some stop the fitting early, some measure its fidelity)")
    return sessions, report


@dataclass(frozen=True)
class Split:
    """Session indices of the three parts of a log, and how it was split (``by``: ``listener`` or ``session``)."""

    fit: np.ndarray
    stop: np.ndarray
    measure: np.ndarray
    by: str


def split_log(sessions: LogSessions, holdout: float, rng: np.random.Generator) -> Split:
    """Hold out ``holdout`` of the listeners (a log with user ids, at least :data:`MIN_LISTENERS_TO_SPLIT`) or of
    the sessions to measure fidelity, as many again to stop the fitting early; the rest fit (each part at least
    one listener or session)."""
    by_listener = sessions.has_users and sessions.n_users >= MIN_LISTENERS_TO_SPLIT
    units = sessions.n_users if by_listener else sessions.n_sessions
    n_out = max(1, int(round(holdout * units)))
    perm = rng.permutation(units)
    parts: tuple[np.ndarray, ...] = perm[:n_out], perm[n_out:2 * n_out], perm[2 * n_out:]
    if by_listener:
        parts = tuple(np.flatnonzero(np.isin(sessions.users, part)) for part in parts)
    measure, stop, fit = (np.sort(part) for part in parts)
    return Split(fit=fit, stop=stop, measure=measure, by="listener" if by_listener else "session")
