"""Semi-personalised Thompson sampling over listener segments: the ``new_listener`` protocol's ``segment_ts``
baseline, Deezer's answer to cold start (Bendada et al. 2020: while a user's data is scarce, segments of users
beat full personalisation).

:func:`fit_segments`: each training listener's taste is the ridge fit of the scaled reward on a track's
``phi = [z, x, 1]`` (:func:`envs.listener_log.track_features`) over ``n_answers`` of their answers to random
choices; k-means groups those tastes into segments (:class:`Segments`).

:class:`SegmentThompson`, for a listener it has never met, at every step: the posterior over the segments given
every answer so far (the log and the session's: a Gaussian likelihood of each reward around the segment centre's
prediction, the segments' shares of the training listeners as the prior); one segment drawn from it; one taste
drawn from the Bayesian linear regression whose prior mean is that segment's centre; the candidate of highest
``phi . taste``. With no answers it draws a segment by its share: the population's prior.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import cho_solve, solve_triangular
from sklearn.cluster import KMeans

from envs.listener_log import AnswerLog, ListenerEstimate, random_answers, track_features
from envs.music_env import MusicRecEnv
from envs.rewards import RewardConfig, reward
from envs.world import World
from music_rl.evaluation.adaptive import ListenerPolicy


@dataclass(frozen=True)
class Segments:
    """Listener segments: ``centres`` (S, p) the segments' mean tastes, ``log_share`` (S,) the log of their shares
    of the training listeners, ``spread`` the variance of a scaled reward around its segment centre's prediction,
    ``noise`` its variance around the listener's own taste (both pooled over the training listeners' answers)."""

    centres: NDArray[np.float64]
    log_share: NDArray[np.float64]
    spread: float
    noise: float


def fit_segments(world: World, listeners: Sequence[int], reward_cfg: RewardConfig, scale: float, n_answers: int,
                 n_segments: int, ridge: float, k: int, session_length: int, seed: int) -> Segments:
    """The training ``listeners``' tastes (module docstring), each from ``n_answers`` answers to random choices
    among ``k`` candidates, grouped into ``n_segments`` (at most one per listener) by k-means."""
    population = world.listeners()
    index = world.candidate_index(k, world.neighbours.shape[1])
    phi = track_features(world.latents, world.features)
    prior = ridge * np.eye(phi.shape[1])
    fits = []
    for listener in listeners:
        log = random_answers(population, int(listener), index, n_answers, session_length,
                             np.random.default_rng([seed, int(listener)]), k)
        x, r = phi[log.tracks], log.rewards(reward_cfg) * scale
        fits.append((x, r, np.linalg.solve(prior + x.T @ x, x.T @ r)))
    tastes = np.array([taste for _, _, taste in fits])
    kmeans = KMeans(n_clusters=min(n_segments, len(fits)), n_init=4, random_state=seed).fit(tastes)
    centres = kmeans.cluster_centers_.astype(np.float64)
    share = np.bincount(kmeans.labels_, minlength=len(centres)) / len(fits)
    around_segment = np.concatenate([r - x @ centres[s] for (x, r, _), s in zip(fits, kmeans.labels_, strict=True)])
    around_own = np.concatenate([r - x @ taste for x, r, taste in fits])
    return Segments(centres, np.log(np.maximum(share, 1e-12)), max(float(np.var(around_segment)), 1e-6),
                    max(float(np.var(around_own)), 1e-6))


class SegmentThompson(ListenerPolicy):
    """Thompson sampling over :class:`Segments` (module docstring).

    Args:
        phi: (N, p) track features (:func:`envs.listener_log.track_features`).
        segments: the training listeners' segments (:func:`fit_segments`).
        reward_cfg: the reward definition (answers → rewards); ``scale`` multiplies them (the env's).
        ridge: the taste prior's precision around the segment centre, in units of ``segments.noise``.
        rng: the draws.
    """

    online = True

    def __init__(self, phi: NDArray[np.float64], segments: Segments, reward_cfg: RewardConfig, scale: float,
                 ridge: float, rng: np.random.Generator) -> None:
        self.phi, self.segments, self.reward_cfg, self.scale = phi, segments, reward_cfg, scale
        self.ridge, self.rng = ridge, rng
        p = phi.shape[1]
        self._gram, self._xr, self._rr, self._seen = np.zeros((p, p)), np.zeros(p), 0.0, 0

    def start(self, log: AnswerLog, estimate: ListenerEstimate) -> None:
        """The sufficient statistics of the log's answers (``X'X``, ``X'r``, ``r'r``)."""
        x, r = self.phi[log.tracks], log.rewards(self.reward_cfg) * self.scale
        self._gram, self._xr, self._rr, self._seen = x.T @ x, x.T @ r, float(r @ r), 0

    def _add(self, track: int, pct: float, liked: int) -> None:
        x, r = self.phi[track], float(reward(pct, liked, self.reward_cfg)) * self.scale
        self._gram += np.outer(x, x)
        self._xr += r * x
        self._rr += r * r

    def posterior(self) -> NDArray[np.float64]:
        """P(segment | the answers so far), (S,)."""
        c = self.segments.centres
        squares = self._rr - 2.0 * c @ self._xr + np.einsum("sp,pq,sq->s", c, self._gram, c)
        log_p = self.segments.log_share - 0.5 * squares / self.segments.spread
        p = np.exp(log_p - log_p.max())
        return np.asarray(p / p.sum(), dtype=np.float64)

    def __call__(self, obs: np.ndarray, env: MusicRecEnv) -> int:
        answers = env.answers
        for track, pct, liked in answers[self._seen:]:
            self._add(track, pct, liked)
        self._seen = len(answers)
        posterior = self.posterior()
        centre = self.segments.centres[self.rng.choice(len(posterior), p=posterior)]
        precision = self.ridge * np.eye(len(centre)) + self._gram  # in units of 1 / noise
        lower = np.linalg.cholesky(precision)
        mean = cho_solve((lower, True), self.ridge * centre + self._xr)
        draw = solve_triangular(lower.T, self.rng.standard_normal(len(centre)), lower=False)
        taste = mean + np.sqrt(self.segments.noise) * draw
        return int(np.argmax(self.phi[env.current_candidates] @ taste))
