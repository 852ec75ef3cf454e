"""One listener's answers so far, and what they say about every track: the ``new_listener`` setting.

An :class:`AnswerLog` is the tracks a listener was played and their answers (pct, liked), in order. It comes
from a feedback log (:meth:`AnswerLog.from_feedback`, one ``user_id``), from uniformly random choices among the
kNN candidates in sessions from random start tracks (:func:`random_answers`, the protocol's budget B) or from the
probe round (:func:`probe_answers`: ``reward.probes_per_cluster`` probes in every cluster, each in a fresh
session).

:class:`ListenerEstimate` (made by an :class:`Estimator`) is what a policy may read of a log
(:data:`ESTIMATES`): the propagated reward r̂ of every track (:func:`envs.rewards.propagate`, the K-Means
propagation of the design: one value per cluster, so it hardly tells the k nearest candidates apart), the
evidence it rests on (the answers in the track's cluster, scaled to [0, 1) as ``n / (n + EVIDENCE_HALF)``),
``r_fit``, the answers propagated through the tracks' features instead: a ridge regression (penalty
:data:`RIDGE`) of the rewards on ``phi = [z, x, 1]`` (:func:`track_features`), evaluated at every track, and
``pop``, the listener's posterior under the population prior (:mod:`envs.population_prior`: a nonlinear Bayesian
regression of the answers whose prior the training listeners taught), read at any track as ``pop`` (the expected
answer ``pct + 0.5 liked``) and ``pop_sd`` (its standard deviation). An empty log (B = 0) has no r̂ or r_fit
(every track 0, evidence 0); its ``pop`` is the prior: the population's average taste and spread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from envs.candidates import CandidateIndex
from envs.listeners import Population
from envs.population_prior import PopulationPrior, Posterior
from envs.rewards import RewardConfig, decay_factors, propagate, reward, select_probes
from envs.simulated_logs import random_walk
from envs.track_table import TrackIds
from music_rl.core.errors import FeedbackError

if TYPE_CHECKING:
    from envs.world import World

EVIDENCE_HALF = 4.0  # answers in a cluster at which the evidence is 1/2
RIDGE = 1.0  # the ridge penalty of r_fit
TABLE_ESTIMATES: tuple[str, ...] = ("r_hat", "evidence", "r_fit")  # per track, fixed for a session
ESTIMATES: tuple[str, ...] = (*TABLE_ESTIMATES, "pop", "pop_sd")  # the listener observation's rows, in order


def track_features(latents: np.ndarray, features: np.ndarray) -> np.ndarray:
    """``phi`` of every track: ``[z, x, 1]`` float64 (N, d + F + 1)."""
    return np.hstack([latents, features, np.ones((latents.shape[0], 1))]).astype(np.float64)


@dataclass(frozen=True)
class AnswerLog:
    """A listener's answers in order: track indices (int64), pct (float64) and liked (int64), all (B,)."""

    tracks: np.ndarray
    pct: np.ndarray
    liked: np.ndarray

    @classmethod
    def empty(cls) -> AnswerLog:
        """No answers (B = 0)."""
        return cls(np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros(0, np.int64))

    @classmethod
    def of(cls, tracks: np.ndarray | list[int], pct: np.ndarray | list[float],
           liked: np.ndarray | list[int]) -> AnswerLog:
        """A log of equal-length sequences."""
        log = cls(np.asarray(tracks, np.int64).ravel(), np.asarray(pct, np.float64).ravel(),
                  np.asarray(liked, np.int64).ravel())
        if not len(log.tracks) == len(log.pct) == len(log.liked):
            raise ValueError(f"tracks, pct and liked differ in length: {len(log.tracks)}, {len(log.pct)}, "
                             f"{len(log.liked)}")
        return log

    @classmethod
    def from_feedback(cls, df: pd.DataFrame, track_ids: Sequence[str], user_id: str) -> AnswerLog:
        """The rows of ``user_id`` in a feedback frame (:func:`music_rl.data.feedback.read_feedback`), in file order;
        empty when the user has none. :class:`FeedbackError` for a track id the catalog lacks."""
        rows = df[df["user_id"].astype(str) == str(user_id)]
        known = track_ids.to_index() if isinstance(track_ids, TrackIds) else pd.Index(track_ids)
        index = known.get_indexer(pd.Index(rows["track_id"].astype(str)))
        if (index < 0).any():
            bad = rows["track_id"].astype(str).to_numpy()[index < 0][0]
            raise FeedbackError(f"feedback of user_id={user_id!r}: track_id {bad!r} is not in the catalog")
        return cls.of(index, rows["percentage_listened"].to_numpy(), rows["liked"].to_numpy())

    def __len__(self) -> int:
        return int(len(self.tracks))

    def head(self, n: int) -> AnswerLog:
        """The first ``n`` answers."""
        return AnswerLog(self.tracks[:n], self.pct[:n], self.liked[:n])

    def __add__(self, other: AnswerLog) -> AnswerLog:
        """This log followed by ``other``."""
        return AnswerLog(np.concatenate([self.tracks, other.tracks]), np.concatenate([self.pct, other.pct]),
                         np.concatenate([self.liked, other.liked]))

    def rewards(self, cfg: RewardConfig) -> np.ndarray:
        """The reward of every answer (:func:`envs.rewards.reward`), float64 (B,)."""
        return np.asarray(reward(self.pct, self.liked, cfg), dtype=np.float64).reshape(-1)


def random_answers(population: Population, listener: int, index: CandidateIndex, n: int,
                   session_length: int, rng: np.random.Generator, k: int = 4) -> AnswerLog:
    """``n`` answers of ``listener`` to uniformly random choices among the ``k`` candidates, in sessions from
    random start tracks (:func:`envs.simulated_logs.random_walk`; a new session when the listener leaves)."""
    steps = list(islice(random_walk(population, listener, index, rng, session_length, k), int(n)))
    return AnswerLog.of([s[4] for s in steps], [s[5] for s in steps], [s[6] for s in steps])


def probe_answers(population: Population, listener: int, latents: np.ndarray, clusters: np.ndarray,
                  centroids: np.ndarray, cfg: RewardConfig, rng: np.random.Generator) -> AnswerLog:
    """The probe round: ``cfg.probes_per_cluster`` probes of every cluster (``cfg.probe_selection``), each
    answered in a fresh session, as :func:`envs.simulated_logs.probe_log` plays them."""
    probes = select_probes(latents, clusters, centroids, cfg.probes_per_cluster, cfg.probe_selection, rng)
    answers = [population.session(int(listener), rng).respond(int(t)) for t in probes]
    return AnswerLog.of(probes, [a[0] for a in answers], [a[1] for a in answers])


@dataclass(frozen=True)
class ListenerEstimate:
    """What a listener's log says about every track (module docstring): ``r_hat`` and ``r_fit`` (N,) float32 in
    raw reward units, ``evidence`` (N,) float32 in [0, 1); ``n_answers`` the log's length; ``pop`` the posterior
    under the population prior (a session updates a :meth:`Posterior.copy` of it)."""

    r_hat: np.ndarray
    evidence: np.ndarray
    n_answers: int
    r_fit: np.ndarray
    pop: Posterior

    def rows(self) -> tuple[np.ndarray, ...]:
        """The per-track arrays in :data:`TABLE_ESTIMATES` order."""
        return tuple(getattr(self, name) for name in TABLE_ESTIMATES)


class Estimator:
    """Turns a listener's log into a :class:`ListenerEstimate` over one world's clusters; keeps what does not
    depend on the log (the decay factors, the prior's basis), so an estimate costs O(N) array operations once.

    Args:
        latents: (N, d); features: (N, F); clusters: (N,) labels; centroids: (C, d) (a world's).
        cfg: the reward definition and the propagation's decay and prior.
        prior, basis: the population prior and its basis of every track (``World.population_prior``).
    """

    def __init__(self, latents: np.ndarray, features: np.ndarray, clusters: np.ndarray, centroids: np.ndarray,
                 cfg: RewardConfig, prior: PopulationPrior, basis: np.ndarray) -> None:
        self.latents, self.clusters, self.centroids, self.cfg = latents, np.asarray(clusters), centroids, cfg
        self._factors = decay_factors(latents, clusters, centroids, cfg)
        self.phi = track_features(latents, features)
        self.prior = prior
        self.basis = basis

    @classmethod
    def of(cls, world: World, cfg: RewardConfig, k: int, session_length: int) -> Estimator:
        """The estimator of a world, with its population prior (fitted on logs of random choices among ``k``
        candidates in sessions of ``session_length``, unless the world already has one)."""
        return cls(world.latents, world.features, world.clusters, world.centroids, cfg,
                   *world.population_prior(k, session_length))

    def __call__(self, log: AnswerLog) -> ListenerEstimate:
        """Propagate ``log``'s rewards over the clusters (:func:`envs.rewards.propagate`); :class:`FeedbackError`
        for an answer that is not a share in [0, 1] with a like of 0 or 1 (NaN included)."""
        n = self.latents.shape[0]
        bad = ~((log.pct >= 0.0) & (log.pct <= 1.0) & ((log.liked == 0) | (log.liked == 1)))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise FeedbackError(f"answers: {int(bad.sum())} not a share in [0, 1] with liked 0 or 1, e.g. answer "
                                f"{i + 1} (percentage_listened={log.pct[i]}, liked={log.liked[i]})")
        pop = self.prior.posterior(self.basis[log.tracks], self.prior.answers(log.pct, log.liked))
        if not len(log):
            zeros = np.zeros(n, np.float32)
            return ListenerEstimate(zeros, zeros, 0, zeros, pop)
        rewards = log.rewards(self.cfg)
        r_hat = propagate(self.latents, self.clusters, self.centroids, log.tracks, rewards, self.cfg, self._factors)
        counts = np.bincount(self.clusters[log.tracks], minlength=len(self.centroids)).astype(np.float64)
        evidence = (counts / (counts + EVIDENCE_HALF))[self.clusters].astype(np.float32)
        x = self.phi[log.tracks]
        theta = np.linalg.solve(RIDGE * np.eye(x.shape[1]) + x.T @ x, x.T @ rewards)
        return ListenerEstimate(r_hat, evidence, len(log), (self.phi @ theta).astype(np.float32), pop)
