"""Policies that adapt to one listener without deep RL: the ``new_listener`` protocol's baselines.

Each is a :class:`ListenerPolicy`: before every evaluation session :meth:`ListenerPolicy.start` gives it the
listener's log so far (the budget's B answers and, with ``new_listener.online``, the answers of the earlier
evaluation sessions) and its propagated estimate; then it is called as an ``music_rl.learners.policies.Policy``
(``act(obs, env) -> candidate index``) at every step.

- :class:`LinUCB`: one ridge regression per listener of the (scaled) reward on a candidate's features
  ``[z, x, 1]`` (latent, the 11 audio features, a bias), fitted on the log at ``start`` and updated after every
  answer of the session; it picks the candidate of largest ``theta . phi + alpha sqrt(phi' A^-1 phi)``.
- :class:`SessionAffinity`: a candidate's score is its mean similarity to the tracks the listener finished or
  liked in this session minus its mean similarity to those skipped (similarity ``exp(-D^2 / 2)``, ``D^2`` the
  mean squared feature difference in units of each feature's catalog spread); before any such answer every
  score is 0 and it plays the nearest candidate.
- :class:`GreedyEstimate`: the candidate of highest r̂ (the listener's propagated log; ``greedy``) or of highest
  r_fit (its ridge fit on the features, LinUCB's mean on the log without the session's answers; ``greedy_fit``);
  with no answers both are flat and it plays the nearest candidate.
- :class:`PopulationPosterior`: the listener's posterior under the population prior
  (:mod:`envs.population_prior`: a nonlinear regression of the answers whose prior the training listeners taught),
  updated after every answer of the session; ``greedy_pop`` plays the candidate of highest posterior mean (what
  the estimate alone identifies), ``pop_ts`` the candidate of highest value under weights drawn from the
  posterior at every step (Thompson sampling: the nonlinear bandit on the same estimate).
- :class:`StaticTaste`: the candidate of highest expected reward in the listener's fresh-session state: it knows
  the listener's taste (what any number of answers could at best identify), not the session's boredom, repeats
  and drift (what the myopic oracle also knows). A reference, not a method: the ceiling of taste.
- :class:`Fixed`: a policy that reads no log (random, nearest, the oracle, a learnt policy whose observation
  carries the log itself).
"""

from __future__ import annotations

import numpy as np

from envs.listener_log import AnswerLog, ListenerEstimate
from envs.music_env import MusicRecEnv
from envs.population_prior import Posterior
from envs.rewards import RewardConfig, reward
from music_rl.learners.policies import Policy

FINISHED = 0.9  # a listen of at least this share counts as finished (SessionAffinity)
SKIPPED = 0.5  # below this share, a skip (as the listeners' patience counts it)


class ListenerPolicy:
    """A policy for one listener: :meth:`start` before each session, then called at every step."""

    online = False
    """whether the policy learns from the listener's log (its answers of earlier sessions included)"""

    def start(self, log: AnswerLog, estimate: ListenerEstimate) -> None:
        """The listener's log so far and its estimate, before a session."""

    def __call__(self, obs: np.ndarray, env: MusicRecEnv) -> int:
        raise NotImplementedError


class Fixed(ListenerPolicy):
    """A policy that reads no log (``music_rl.evaluation.baselines`` or a learnt one)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def __call__(self, obs: np.ndarray, env: MusicRecEnv) -> int:
        action: int = self.policy(obs, env)
        return action


class Learnt(Fixed):
    """A learnt policy whose observation carries the listener's estimate (``env.observation=listener``)."""

    online = True


class LinUCB(ListenerPolicy):
    """Ridge regression of the scaled reward on ``phi`` (:func:`track_features`) with an upper confidence bonus.

    Args:
        phi: (N, p) track features (:func:`envs.listener_log.track_features`).
        reward_cfg: the reward definition (answers → rewards); ``scale`` multiplies them (the env's).
        alpha: the bonus weight; ``ridge``: the prior precision ``A_0 = ridge I``.
    """

    online = True

    def __init__(self, phi: np.ndarray, reward_cfg: RewardConfig, scale: float, alpha: float,
                 ridge: float) -> None:
        self.phi, self.reward_cfg, self.scale, self.alpha, self.ridge = phi, reward_cfg, scale, alpha, ridge
        self._a_inv = np.eye(phi.shape[1]) / ridge
        self._b = np.zeros(phi.shape[1])
        self._seen = 0

    def start(self, log: AnswerLog, estimate: ListenerEstimate) -> None:
        """Fit on the whole log (``A = ridge I + sum phi phi'``, ``b = sum r phi``)."""
        x = self.phi[log.tracks]
        a = self.ridge * np.eye(self.phi.shape[1]) + x.T @ x
        self._a_inv = np.linalg.inv(a)
        self._b = x.T @ (log.rewards(self.reward_cfg) * self.scale)
        self._seen = 0

    def _update(self, track: int, pct: float, liked: int) -> None:
        """One answer: a Sherman-Morrison update of ``A^-1`` and ``b``."""
        x = self.phi[track]
        ax = self._a_inv @ x
        self._a_inv -= np.outer(ax, ax) / (1.0 + x @ ax)
        self._b += float(reward(pct, liked, self.reward_cfg)) * self.scale * x

    def __call__(self, obs: np.ndarray, env: MusicRecEnv) -> int:
        answers = env.answers
        for track, pct, liked in answers[self._seen:]:
            self._update(track, pct, liked)
        self._seen = len(answers)
        x = self.phi[env.current_candidates]
        theta = self._a_inv @ self._b
        bonus = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", x, self._a_inv, x), 0.0))
        return int(np.argmax(x @ theta + self.alpha * bonus))


class SessionAffinity(ListenerPolicy):
    """Similarity to what this session's listener finished or liked, minus similarity to what they skipped.

    Args:
        features: (N, F) normalised features; their catalog spread sets the similarity's units.
    """

    def __init__(self, features: np.ndarray) -> None:
        self.scaled = features / np.maximum(features.std(axis=0), 1e-6)

    def __call__(self, obs: np.ndarray, env: MusicRecEnv) -> int:
        answers = env.answers
        good = [t for t, pct, liked in answers if liked or pct >= FINISHED]
        bad = [t for t, pct, _ in answers if pct < SKIPPED]
        cands = self.scaled[env.current_candidates]
        score = np.zeros(len(cands))
        for tracks, sign in ((good, 1.0), (bad, -1.0)):
            if tracks:
                d2 = ((cands[:, None, :] - self.scaled[tracks][None, :, :]) ** 2).mean(axis=-1)
                score += sign * np.exp(-d2 / 2.0).mean(axis=1)
        return int(np.argmax(score))


class StaticTaste(ListenerPolicy):
    """The candidate of highest expected reward in the listener's fresh-session state (module docstring)."""

    def __init__(self) -> None:
        self._listener, self._expected = -1, np.zeros(0)

    def __call__(self, obs: np.ndarray, env: MusicRecEnv) -> int:
        if env.listener != self._listener:
            definition = env.reward_definition
            self._listener = env.listener
            self._expected = env.world.listeners().expected_reward_all(
                env.listener, definition.like_weight, definition.early_skip_penalty, definition.early_skip_threshold)
        return int(np.argmax(self._expected[env.current_candidates]))


class GreedyEstimate(ListenerPolicy):
    """The candidate of highest ``r_hat`` (or ``r_fit``, the ridge fit on the features) in the listener's
    estimate (the first, nearest, of equals)."""

    online = True

    def __init__(self, row: str = "r_hat") -> None:
        self.row = row
        self._r_hat: np.ndarray | None = None

    def start(self, log: AnswerLog, estimate: ListenerEstimate) -> None:
        """Keep the estimate's ``row``."""
        self._r_hat = getattr(estimate, self.row)

    def __call__(self, obs: np.ndarray, env: MusicRecEnv) -> int:
        if self._r_hat is None:
            raise RuntimeError("GreedyEstimate called before start()")
        return int(np.argmax(self._r_hat[env.current_candidates]))


class PopulationPosterior(ListenerPolicy):
    """Greedy on the population-prior posterior's mean (``rng`` None) or Thompson sampling from it.

    Args:
        basis: (N, p) the prior's basis of every track (:attr:`envs.listener_log.Estimator.basis`).
        rng: draws for Thompson sampling; None: the posterior mean (greedy).
    """

    online = True

    def __init__(self, basis: np.ndarray, rng: np.random.Generator | None = None) -> None:
        self.basis, self.rng = basis, rng
        self._posterior: Posterior | None = None
        self._seen = 0

    def start(self, log: AnswerLog, estimate: ListenerEstimate) -> None:
        """The log's posterior (a copy: the session updates it)."""
        self._posterior, self._seen = estimate.pop.copy(), 0

    def __call__(self, obs: np.ndarray, env: MusicRecEnv) -> int:
        if self._posterior is None:
            raise RuntimeError("PopulationPosterior called before start()")
        answers = env.answers
        for track, pct, liked in answers[self._seen:]:
            self._posterior.take(self.basis[track], pct, liked)
        self._seen = len(answers)
        weights = self._posterior.mean if self.rng is None else self._posterior.draw(self.rng)
        return int(np.argmax(self.basis[env.current_candidates] @ weights))
