"""What the learnt listener predicts an answer from, computed once for fitting and for simulating.

- the track: its latents ``z`` and features ``x`` (the nets' per-track part, tabled once per catalog);
- the session so far, :class:`SessionState` (:data:`SESSION_FEATURES`): position, the previous answer and how far
  the track is from the previous one, running rates, the run of skips, the answers to similar tracks so far
  (a Gaussian kernel over the latents), whether the track was already played;
- the listener, :func:`user_summaries`: a summary of the listener's OTHER sessions (the share-weighted mean
  latents and features of what they heard, their mean share heard and like rate), zeros for a log without user
  ids;
- the sequential kind's GRU reads each answer as :func:`answer_inputs` (the track, the share heard, liked, skip).

Fitting replays each logged session through :class:`SessionState` (:meth:`SessionState.features` of the track
played, then :meth:`SessionState.advance`), and the simulator steps the same object: one implementation.
"""

from __future__ import annotations

import numpy as np

from music_rl.user_model.answers import SKIP_BELOW
from music_rl.user_model.sessions import LogSessions

SESSION_FEATURES: tuple[str, ...] = (
    "position", "first", "previous_pct", "previous_liked", "previous_distance", "mean_pct", "like_rate",
    "skip_run", "similar_pct", "similar_liked", "similar_skip", "similar_mass", "repeat",
)
N_SESSION = len(SESSION_FEATURES)
N_ANSWER = 3  # the answer part of a GRU input: pct, liked, skip
_POSITION_SCALE = 50.0  # position / this, capped at 1
_KERNEL_WIDTH = 0.15  # in latent units ([0, 1] per dimension)
_PRIOR_MASS = 0.25  # kernel mass of the prior in the similar-track averages


def user_width(d: int) -> int:
    """Width of a user summary over latents of width ``d``: mean z, mean x, mean pct, like rate, has-user."""
    return d + 11 + 3


class SessionState:
    """One session's answers so far, and the session features of any track in that state.

    Args:
        latents: (N, d) the catalog's latents (read, not copied).
    """

    def __init__(self, latents: np.ndarray) -> None:
        self._Z = latents
        self._inv = 1.0 / (2.0 * _KERNEL_WIDTH**2)
        self._scale = 1.0 / np.sqrt(latents.shape[1])
        self.reset()

    def reset(self) -> None:
        """An empty session."""
        self._z = np.zeros((16, self._Z.shape[1]))
        self._answers = np.zeros((16, 3))  # pct, liked, skip
        self.n = 0
        self._run = 0
        self._played: set[int] = set()

    def copy(self) -> SessionState:
        """An independent copy of this state."""
        twin = SessionState.__new__(SessionState)
        twin.__dict__.update(self.__dict__)
        twin._z, twin._answers, twin._played = self._z.copy(), self._answers.copy(), set(self._played)
        return twin

    def features(self, tracks: np.ndarray) -> np.ndarray:
        """The session features (:data:`SESSION_FEATURES`) of each track in the current state, (k, N_SESSION)."""
        tracks = np.asarray(tracks, dtype=np.int64).reshape(-1)
        out = np.zeros((tracks.size, N_SESSION))
        n = self.n
        out[:, 0] = min(n, _POSITION_SCALE) / _POSITION_SCALE
        out[:, 12] = [t in self._played for t in tracks.tolist()]
        if n == 0:
            out[:, 1] = 1.0
            return out
        z = self._Z[tracks]
        answers = self._answers[:n]
        out[:, 2:4] = answers[n - 1, :2]
        out[:, 4] = np.sqrt(((z - self._z[n - 1]) ** 2).sum(axis=1)) * self._scale
        out[:, 5:7] = answers[:, :2].mean(axis=0)
        out[:, 7] = min(self._run, 6) / 3.0
        diff = z[:, None, :] - self._z[None, :n, :]
        kernel = np.exp(-(diff * diff).sum(axis=2) * self._inv)  # (k, n)
        mass = kernel.sum(axis=1, keepdims=True)
        out[:, 8:11] = kernel @ answers / (mass + _PRIOR_MASS)
        out[:, 11] = mass[:, 0] / (mass[:, 0] + _PRIOR_MASS)
        return out

    def advance(self, track: int, pct: float, liked: int) -> None:
        """The state after the answer ``(pct, liked)`` to ``track``."""
        n = self.n
        if n == len(self._z):
            self._z = np.vstack([self._z, np.zeros_like(self._z)])
            self._answers = np.vstack([self._answers, np.zeros_like(self._answers)])
        skip = pct < SKIP_BELOW
        self._z[n] = self._Z[track]
        self._answers[n] = (pct, liked, float(skip))
        self._run = self._run + 1 if skip else 0
        self._played.add(int(track))
        self.n = n + 1


def replay_features(sessions: LogSessions, latents: np.ndarray) -> np.ndarray:
    """The session features of every logged answer in its session's state before it, (A, N_SESSION)."""
    out = np.zeros((len(sessions.tracks), N_SESSION))
    state = SessionState(latents)
    for s in range(sessions.n_sessions):
        state.reset()
        lo = int(sessions.starts[s])
        tracks, pct, liked = sessions.session(s)
        for i, (t, p, lk) in enumerate(zip(tracks.tolist(), pct.tolist(), liked.tolist(), strict=True)):
            out[lo + i] = state.features(np.array([t]))[0]
            state.advance(t, p, lk)
    return out


def answer_inputs(pct: np.ndarray, liked: np.ndarray) -> np.ndarray:
    """The answer part of the GRU's input, (A, N_ANSWER): share heard, liked, skip."""
    pct = np.asarray(pct, dtype=np.float64)
    return np.stack([pct, np.asarray(liked, dtype=np.float64), (pct < SKIP_BELOW).astype(np.float64)], axis=1)


def _summary(weighted: np.ndarray, pct_sum: np.ndarray, count: np.ndarray, like_sum: np.ndarray) -> np.ndarray:
    """Summaries from per-listener (or per-session) sums: weighted [z, x], sum of pct, answers, likes."""
    has = count > 0
    safe = np.maximum(count, 1)
    mean_zx = weighted / np.maximum(pct_sum, 1e-9)[:, None]
    return np.hstack([mean_zx * has[:, None], (pct_sum / safe)[:, None], (like_sum / safe)[:, None],
                      has[:, None].astype(np.float64)])


def _sums(sessions: LogSessions, zx: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-session sums: share-weighted [z, x], shares, answers, likes."""
    session_of = np.repeat(np.arange(sessions.n_sessions), np.diff(sessions.starts))
    n = sessions.n_sessions
    weighted = np.zeros((n, zx.shape[1]))
    np.add.at(weighted, session_of, zx[sessions.tracks] * sessions.pct[:, None])
    return (weighted, np.bincount(session_of, sessions.pct, n), np.bincount(session_of, minlength=n).astype(float),
            np.bincount(session_of, sessions.liked.astype(float), n))


def user_summaries(sessions: LogSessions, latents: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Each session's listener summarised by their OTHER sessions of ``sessions``, (S, user_width(d)); zeros
    (has-user 0) for a log without user ids or a listener with no other session."""
    width = user_width(latents.shape[1])
    if not sessions.has_users:
        return np.zeros((sessions.n_sessions, width))
    sums = _sums(sessions, np.hstack([latents, features]).astype(np.float64))
    users = sessions.users
    totals = [np.zeros((sessions.n_users, *part.shape[1:])) for part in sums]
    for total, part in zip(totals, sums, strict=True):
        np.add.at(total, users, part)
    return _summary(*(total[users] - part for total, part in zip(totals, sums, strict=True)))


def listener_table(sessions: LogSessions, latents: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Each listener of ``sessions`` summarised by all their sessions, (U, user_width(d)) (the simulated
    listeners are drawn from these rows); one row of zeros for a log without user ids."""
    if not sessions.has_users:
        return np.zeros((1, user_width(latents.shape[1])))
    sums = _sums(sessions, np.hstack([latents, features]).astype(np.float64))
    totals = [np.zeros((sessions.n_users, *part.shape[1:])) for part in sums]
    for total, part in zip(totals, sums, strict=True):
        np.add.at(total, sessions.users, part)
    table = _summary(*totals)
    return table[table[:, -1] > 0]
