"""What the learnt listener predicts an answer from, computed once for fitting and for simulating.

- the track: its latents ``z`` and features ``x`` (the nets' per-track part, tabled once per catalog);
- the session so far, :class:`SessionState` (:data:`SESSION_FEATURES`): position, the previous answer and how far
  the track is from the previous one, running rates, the run of skips, the answers to similar tracks so far
  (a Gaussian kernel over the latents), whether the track was already played;
- the listener, :func:`user_summaries`: a summary of the listener's OTHER sessions (the share-weighted mean
  latents and features of what they heard, their mean share heard and like rate, and their taste profile: the
  mean share heard, like rate and evidence per column of a :class:`TasteBasis`: near each of 16 anchors of the
  latent space, and in each of 5 bins of each feature; shrunk towards their own means), zeros for a log without
  user ids;
- the listener's taste at the track, :func:`taste_features`: the profile read at the track, per group of the
  basis (the anchors, each feature), so that a taste turning on a few features or near a few tracks reaches the
  net as numbers per track;
- the sequential kind's GRU reads each answer as :func:`answer_inputs` (the track, the share heard, liked, skip).

Fitting replays each logged session through :class:`SessionState` (:meth:`SessionState.features` of the track
played, then :meth:`SessionState.advance`), and the simulator steps the same object: one implementation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from music_rl.user_model.answers import SKIP_BELOW
from music_rl.user_model.sessions import LogSessions

SESSION_FEATURES: tuple[str, ...] = (
    "position", "first", "previous_pct", "previous_liked", "previous_distance", "mean_pct", "like_rate",
    "skip_run", "similar_pct", "similar_liked", "similar_skip", "similar_mass", "repeat",
)
N_SESSION = len(SESSION_FEATURES)
N_ANSWER = 3  # the answer part of a GRU input: pct, liked, skip
N_ANCHORS = 16  # anchors of the taste profile (K-Means centres of the catalog's latents)
N_BINS = 8  # bins of each feature in the taste profile
N_FEATURES = 11
N_BASIS = N_ANCHORS + N_FEATURES * N_BINS  # columns of a taste basis (:class:`TasteBasis`)
GROUP_OF = np.r_[np.zeros(N_ANCHORS, dtype=np.int64), 1 + np.repeat(np.arange(N_FEATURES), N_BINS)]
"""(N_BASIS,) the group of each basis column: 0 the anchors, 1 + j feature j's bins."""
_GROUPS = np.eye(N_FEATURES + 1)[GROUP_OF]  # (N_BASIS, groups) indicator
TASTE_FEATURES: tuple[str, ...] = tuple(f"taste_{what}_{group}" for group in ("anchors", *(f"x{j}" for j in range(
    N_FEATURES))) for what in ("pct", "liked", "evidence"))
N_TASTE = len(TASTE_FEATURES)
N_CONTEXT = N_SESSION + N_TASTE  # a step's inputs beside the track's and the listener's: session, then taste
_ANCHOR_PRIOR = 2.0  # assignment mass of the listener's own mean in each basis column's profile
_POSITION_SCALE = 50.0  # position / this, capped at 1
_KERNEL_WIDTH = 0.15  # in latent units ([0, 1] per dimension)
_PRIOR_MASS = 0.25  # kernel mass of the prior in the similar-track averages


def user_width(d: int) -> int:
    """Width of a user summary over latents of width ``d``: mean z, mean x, mean pct, like rate, has-user, then the
    taste profile (per basis column: share heard, like rate, evidence)."""
    return d + 11 + 3 + 3 * N_BASIS


@dataclass(frozen=True)
class TasteBasis:
    """Where a track sits for a taste profile: its soft assignment to :data:`N_ANCHORS` anchors of the latent space
    (a Gaussian kernel of the session features' width, normalised), and, for each of the 11 features, its bin among
    :data:`N_BINS` bins of equal catalog mass. A taste that turns on one or two features (the parametric
    listener's weights) shows in that feature's bins; a taste near a few tracks, in the anchors.

    Attributes:
        anchors: (N_ANCHORS, d) the anchors; edges: (11, N_BINS - 1) each feature's inner bin edges.
        weights: (N, N_BASIS) each track's assignment; each group's columns sum to 1 (:data:`GROUP_OF`).
    """

    anchors: np.ndarray
    edges: np.ndarray
    weights: np.ndarray

    @classmethod
    def fit(cls, latents: np.ndarray, features: np.ndarray, seed: int) -> TasteBasis:
        """K-Means centres of ``latents`` (fewer than :data:`N_ANCHORS` distinct ones for a smaller catalog) and
        the catalog quantiles of each feature."""
        from sklearn.cluster import KMeans

        n = min(N_ANCHORS, len(latents))
        centres = KMeans(n, n_init=1, random_state=seed).fit(np.asarray(latents, dtype=np.float64)).cluster_centers_
        anchors = np.vstack([centres, np.repeat(centres[:1], N_ANCHORS - n, axis=0)])  # a repeat is harmless
        edges = np.quantile(np.asarray(features, dtype=np.float64), np.arange(1, N_BINS) / N_BINS, axis=0).T
        return cls.of(latents, features, anchors, edges)

    @classmethod
    def of(cls, latents: np.ndarray, features: np.ndarray, anchors: np.ndarray, edges: np.ndarray) -> TasteBasis:
        """The basis of saved ``anchors`` and ``edges`` over a catalog."""
        latents, features = np.asarray(latents, dtype=np.float64), np.asarray(features, dtype=np.float64)
        d2 = ((latents[:, None, :] - anchors[None, :, :]) ** 2).sum(axis=2)
        kernel = np.exp(-(d2 - d2.min(axis=1, keepdims=True)) / (2.0 * _KERNEL_WIDTH**2))
        bins = np.zeros((len(features), features.shape[1] * N_BINS))
        for j in range(features.shape[1]):
            bins[np.arange(len(features)), j * N_BINS + np.searchsorted(edges[j], features[:, j], side="right")] = 1
        weights = np.hstack([kernel / kernel.sum(axis=1, keepdims=True), bins])
        return cls(np.asarray(anchors, dtype=np.float64), np.asarray(edges, dtype=np.float64), weights)


def taste_profile(users: np.ndarray) -> np.ndarray:
    """The taste profiles of user summaries (..., user_width) as (..., N_BASIS, 3): share heard, like rate and
    evidence per basis column."""
    profile = users[..., -3 * N_BASIS:]
    return np.stack([profile[..., :N_BASIS], profile[..., N_BASIS:2 * N_BASIS], profile[..., 2 * N_BASIS:]], axis=-1)


def taste_features(users: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The taste features (:data:`TASTE_FEATURES`) of tracks of assignments ``weights`` (A, N_BASIS) for listeners
    of summaries ``users`` (A, user_width) or one listener's (user_width,): per group of the basis, the profile
    read at the track, (A, N_TASTE)."""
    features: np.ndarray  # matmul's and einsum's stubs: Any
    if users.ndim == 1:
        features = weights @ taste_readout(users)
    else:
        features = np.einsum("ak,akt,kg->agt", weights, taste_profile(users), _GROUPS).reshape(len(weights), N_TASTE)
    return features


def taste_readout(user: np.ndarray) -> np.ndarray:
    """One listener's taste features as a linear map of a track's assignment: (N_BASIS, N_TASTE), so that a
    track's are ``weights[track] @ readout`` (a simulated step's path)."""
    readout: np.ndarray = np.einsum("kt,kg->kgt", taste_profile(user), _GROUPS).reshape(N_BASIS, N_TASTE)
    return readout


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


def answer_inputs(pct: npt.ArrayLike, liked: npt.ArrayLike) -> np.ndarray:
    """The answer part of the GRU's input, (A, N_ANSWER): share heard, liked, skip."""
    pct = np.asarray(pct, dtype=np.float64)
    return np.stack([pct, np.asarray(liked, dtype=np.float64), (pct < SKIP_BELOW).astype(np.float64)], axis=1)


def _summary(weighted: np.ndarray, pct_sum: np.ndarray, count: np.ndarray, like_sum: np.ndarray,
             near: np.ndarray) -> np.ndarray:
    """Summaries from per-listener (or per-session) sums: weighted [z, x], sum of pct, answers, likes, and per
    anchor the kernel mass, share and like sums (..., 3 B)."""
    has = count > 0
    safe = np.maximum(count, 1)
    mean_zx = weighted / np.maximum(pct_sum, 1e-9)[:, None]
    mean_pct, like_rate = pct_sum / safe, like_sum / safe
    mass, pct_near, like_near = near[:, :N_BASIS], near[:, N_BASIS:2 * N_BASIS], near[:, 2 * N_BASIS:]
    shrunk = mass + _ANCHOR_PRIOR
    return np.hstack([mean_zx * has[:, None], mean_pct[:, None], like_rate[:, None], has[:, None].astype(np.float64),
                      (pct_near + _ANCHOR_PRIOR * mean_pct[:, None]) / shrunk,
                      (like_near + _ANCHOR_PRIOR * like_rate[:, None]) / shrunk, mass / shrunk])


def _sums(sessions: LogSessions, zx: np.ndarray, basis: TasteBasis) -> tuple[np.ndarray, ...]:
    """Per-session sums: share-weighted [z, x], shares, answers, likes, and per anchor the kernel mass, share and
    like sums."""
    session_of = np.repeat(np.arange(sessions.n_sessions), np.diff(sessions.starts))
    n = sessions.n_sessions
    weighted = np.zeros((n, zx.shape[1]))
    np.add.at(weighted, session_of, zx[sessions.tracks] * sessions.pct[:, None])
    w = basis.weights[sessions.tracks]
    near = np.zeros((n, 3 * N_BASIS))
    np.add.at(near, session_of, np.hstack([w, w * sessions.pct[:, None], w * sessions.liked[:, None]]))
    return (weighted, np.bincount(session_of, sessions.pct, n), np.bincount(session_of, minlength=n).astype(float),
            np.bincount(session_of, sessions.liked.astype(float), n), near)


def user_summaries(sessions: LogSessions, latents: np.ndarray, features: np.ndarray,
                   basis: TasteBasis) -> np.ndarray:
    """Each session's listener summarised by their OTHER sessions of ``sessions``, (S, user_width(d)); zeros
    (has-user 0) for a log without user ids or a listener with no other session."""
    width = user_width(latents.shape[1])
    if not sessions.has_users:
        return np.zeros((sessions.n_sessions, width))
    sums = _sums(sessions, np.hstack([latents, features]).astype(np.float64), basis)
    users = sessions.users
    totals = [np.zeros((sessions.n_users, *part.shape[1:])) for part in sums]
    for total, part in zip(totals, sums, strict=True):
        np.add.at(total, users, part)
    return _summary(*(total[users] - part for total, part in zip(totals, sums, strict=True)))


def listener_table(sessions: LogSessions, latents: np.ndarray, features: np.ndarray,
                   basis: TasteBasis) -> np.ndarray:
    """Each listener of ``sessions`` summarised by all their sessions, (U, user_width(d)) (the simulated
    listeners are drawn from these rows); one row of zeros for a log without user ids."""
    if not sessions.has_users:
        return np.zeros((1, user_width(latents.shape[1])))
    sums = _sums(sessions, np.hstack([latents, features]).astype(np.float64), basis)
    totals = [np.zeros((sessions.n_users, *part.shape[1:])) for part in sums]
    for total, part in zip(totals, sums, strict=True):
        np.add.at(total, sessions.users, part)
    table = _summary(*totals)
    return table[table[:, -1] > 0]
