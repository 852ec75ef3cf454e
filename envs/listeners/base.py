"""The listener interface: what the env, the evaluation (oracle, planner, normalized scores), the baselines, the
new-listener protocol and serving need from a simulated listener, whatever model answers.

A :class:`Population` is the user model: ``n`` listeners to draw from, split into training and held-out ids,
each with the expected reward of every track in a fresh session. A :class:`Session` is one listener's listening
session, the response model: it answers a track with ``(percentage_listened, liked)``, may end (``left``), gives
the expected answer of any track in its CURRENT state and forks for a lookahead. Listener ids are ``0 .. n-1``;
tracks are catalog rows. Randomness only from the ``np.random.Generator`` a caller passes.

Who uses what: :class:`envs.music_env.MusicRecEnv` (``n``, :meth:`Population.session`, :meth:`Session.respond`,
``left``, :meth:`Session.expected_reward`), :func:`envs.world.build_world` (:meth:`Population.split`), the
myopic oracle and the planner (:meth:`Session.expected_reward`, :meth:`Session.fork`), the catalog oracle
(:meth:`Session.best_track`), the propagation check and the new-listener ``taste`` reference
(:meth:`Population.expected_reward_all`), the feedback generators, fine-tuning and serving
(:meth:`Population.session`, :meth:`Session.respond`, directly or through the env).
Anything else a model offers (the parametric listener's affinities, taste centres, session tables,
``affinity_now``, ``n_played``, ``skips``) is its own and no caller outside its tests reads it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from music_rl.core.errors import ConfigError


class Session(ABC):
    """One listening session of one listener (response model).

    Attributes:
        listener: the listener id.
        left: True once the listener has ended the session; :meth:`respond` then raises.
    """

    listener: int
    left: bool

    @abstractmethod
    def respond(self, track: int) -> tuple[float, int]:
        """Play ``track``: draw ``(pct in [0, 1], liked in {0, 1})`` and advance the session's state (which may
        set ``left``).

        Raises:
            RuntimeError: the listener has already left the session.
        """

    @abstractmethod
    def expected(self, tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact ``E[pct]`` and ``P(liked)`` of each track in the CURRENT state: two (k,) float64 arrays. The
        state does not move."""

    @abstractmethod
    def expected_reward(self, tracks: np.ndarray, like_weight: float, early_skip_penalty: float = 0.0,
                        early_skip_threshold: float = 0.1) -> np.ndarray:
        """Exact expected reward of each track in the CURRENT state, (k,) float64:
        ``E[pct] + like_weight * P(liked) - early_skip_penalty * P(pct < early_skip_threshold)`` (the reward's
        definition, :mod:`envs.rewards`). The state does not move."""

    def best_track(self, n_tracks: int, excluded: np.ndarray, like_weight: float, early_skip_penalty: float = 0.0,
                   early_skip_threshold: float = 0.1) -> int:
        """The track of the whole catalog (rows ``0 .. n_tracks-1``) not in ``excluded`` of the highest expected
        reward in the CURRENT state (:meth:`expected_reward`), ties to the lower row: the catalog oracle's choice.
        The state does not move.

        This default scores every track (one :meth:`expected_reward` call over the catalog, its cost linear in
        ``n_tracks``); a model may find the same track faster (the parametric listener:
        :meth:`envs.listeners.parametric.ParametricSession.best_track`). With every track excluded: row 0.
        """
        values = self.expected_reward(np.arange(n_tracks), like_weight, early_skip_penalty, early_skip_threshold)
        excluded = np.asarray(excluded, dtype=np.int64).ravel()
        values[excluded[(excluded >= 0) & (excluded < n_tracks)]] = -np.inf
        return int(np.argmax(values))

    @abstractmethod
    def fork(self, rng: np.random.Generator) -> Session:
        """A copy of this session in its current state whose answers from now on are drawn from ``rng``: what
        would follow a choice, simulated without touching this session or its random stream (the planner)."""


class Population(ABC):
    """A population of simulated listeners over one catalog (user model).

    Attributes:
        n: the number of listeners (ids ``0 .. n-1``).
    """

    n: int

    @abstractmethod
    def session(self, listener: int, rng: np.random.Generator) -> Session:
        """A fresh listening session of ``listener`` whose answers are drawn from ``rng``."""

    @abstractmethod
    def expected_reward_all(self, listener: int, like_weight: float, early_skip_penalty: float = 0.0,
                            early_skip_threshold: float = 0.1) -> np.ndarray:
        """Exact expected reward of every track in a fresh session of ``listener``, (N,) float64 (the
        definition of :meth:`Session.expected_reward`)."""

    def split(self, held_out_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Split the listener ids into disjoint, sorted (train, held-out) int64 arrays, drawn from ``rng``.

        ``round(held_out_fraction * n)`` listeners are held out, but at least one stays in training.
        """
        if not 0.0 <= held_out_fraction < 1.0:
            raise ConfigError(f"listeners.held_out_fraction={held_out_fraction!r}: must be in [0, 1)")
        n_held = min(int(round(held_out_fraction * self.n)), self.n - 1)
        perm = rng.permutation(self.n)
        return np.sort(perm[n_held:]), np.sort(perm[:n_held])
