"""Many MusicRec-v0 sessions stepped together with numpy: the engine of ``ppo.vec_env=batched``.

:class:`SessionBatch` holds ``n`` sessions of the process :class:`envs.music_env.MusicRecEnv` simulates (the
k nearest unplayed tracks as candidates, the same observation layout and reward sources, the listener's
response model as :class:`envs.listeners.ListenerBatch`, the same episode ends) as arrays over sessions,
so one step of all ``n`` costs a few dozen numpy calls instead of ``n`` Python env steps. The listener's
true expected rewards of every session's candidates come along at little cost, for the training logs.

Randomness comes from one generator for the whole batch (listener draws, start tracks and every session's
responses), so its sample paths are not those of ``n`` separately seeded MusicRecEnvs; the transition
probabilities are (tests/test_session_batch.py). It knows no SB3: :class:`agents.vec_env.BatchedVecEnv`
puts it behind the VecEnv interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from envs.listeners import ListenerBatch, expected_reward
from envs.music_env import EnvConfig, EnvSetup, check_listeners, check_start_track

if TYPE_CHECKING:
    from envs.world import World


@dataclass
class BatchStep:
    """What one step of every session returns (arrays over sessions, row i = session i).

    ``reward`` is scaled (the PPO reward), ``raw_reward`` is not; ``tracks`` are the chosen tracks,
    ``candidates`` the (n, k) candidates they were chosen from; ``expected_reward`` / ``oracle_expected_reward``
    the listener's true expected reward (raw units) of the choice and of the best candidate, in the state the
    choice was made in.
    """

    reward: np.ndarray
    raw_reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    tracks: np.ndarray
    candidates: np.ndarray
    pct: np.ndarray
    liked: np.ndarray
    expected_reward: np.ndarray
    oracle_expected_reward: np.ndarray
    listener: np.ndarray


class SessionBatch:
    """``n`` MusicRec-v0 sessions over one world, stepped together (see the module docstring).

    Args:
        world: tracks, latents, neighbour table, reward table and listener population.
        cfg: the ``env`` config group.
        n: number of sessions.
        listener_ids: None: every session is the world's served listener (``personal``); otherwise each new
            session draws one of these listeners (``population``).

    Attributes:
        obs: (n, width) float32, the sessions' current observations (rewritten in place by every step).
        track: (n,) the current tracks; candidates: (n, k) their candidates, nearest first;
        expected: (n, k) the listener's true expected rewards of the candidates (raw units).
    """

    render_mode: str | None = None  # as a Gymnasium env's: nothing to render

    def __init__(self, world: World, cfg: EnvConfig, n: int, listener_ids: Sequence[int] | None = None) -> None:
        if n < 1:
            raise ValueError(f"a SessionBatch needs n >= 1 sessions, got {n}")
        self.setup = setup = EnvSetup.of(world, cfg)
        self.world, self.cfg, self.n = world, cfg, int(n)
        population = world.listeners()
        self._ids = None if listener_ids is None else np.array(check_listeners(listener_ids, population.n))
        self._served = int(world.meta["served_listener"])
        self._simulator = cfg.reward_source == "simulator"
        self._window = 0 if cfg.no_repeat == "session" else int(cfg.no_repeat)
        self._index = world.candidate_index(cfg.k, min(cfg.n_neighbours, world.neighbours.shape[1]))
        self._latents, self._features, self._table = world.latents, world.features, world.reward_table
        self.listeners = ListenerBatch(population, self.n)
        self.rng = np.random.default_rng()

        self.obs = np.zeros((self.n, *setup.observation_space.shape), dtype=np.float32)
        self._views = setup.views(self.obs)
        self._rows = np.arange(self.n)
        self._played = np.zeros((self.n, setup.n_tracks), dtype=bool)
        self._order = np.zeros((self.n, cfg.session_length + 1), dtype=np.int64)  # tracks of the episode
        self._order_len = np.zeros(self.n, dtype=np.int64)
        self.steps = np.zeros(self.n, dtype=np.int64)
        self.track = np.zeros(self.n, dtype=np.int64)
        self.candidates = np.zeros((self.n, cfg.k), dtype=np.int64)
        self.affinity = np.zeros((self.n, cfg.k))
        self.expected = np.zeros((self.n, cfg.k))

    def seed(self, seed: int | Sequence[int] | None) -> None:
        """Reseed the batch's generator (listener draws, start tracks, responses)."""
        self.rng = np.random.default_rng(seed)

    def reset(self, slots: np.ndarray | Sequence[int], start_tracks: Sequence[int | None] | None = None) -> None:
        """Begin new sessions in ``slots``: a listener, a start track, an empty played mask and history.

        Args:
            slots: the sessions to restart.
            start_tracks: one entry per slot, a track index or None (a random one); None: ``env.start_track``
                for every slot.
        """
        slots = np.asarray(slots, dtype=np.int64).ravel()
        m = slots.size
        if m == 0:
            return
        given = [self.cfg.start_track] * m if start_tracks is None else list(start_tracks)
        if len(given) != m:
            raise ValueError(f"start_tracks: {len(given)} given for {m} slots")
        rng = self.rng
        listeners = (np.full(m, self._served) if self._ids is None
                     else self._ids[rng.integers(len(self._ids), size=m)])
        starts = rng.integers(self.setup.n_tracks, size=m)
        for j, start in enumerate(given):
            if start is not None:
                starts[j] = check_start_track(start, self.setup.n_tracks)
        for i, count in zip(slots.tolist(), self._order_len[slots].tolist(), strict=True):
            self._played[i, self._order[i, :count]] = False  # O(session), not O(N)
        self._order[slots, 0] = starts
        self._order_len[slots] = 1
        self._played[slots, starts] = True
        self.steps[slots] = 0
        self.listeners.start(slots, listeners)
        if self._views.hist is not None:
            self._views.hist[slots] = 0.0
        self._advance(slots, starts)

    def step(self, actions: np.ndarray) -> BatchStep:
        """Every session recommends its candidate ``actions[i]``; the listeners answer; the picks become current.

        Sessions that end (``terminated | truncated``) must be :meth:`reset` before the next step.
        """
        rows, setup = self._rows, self.setup
        actions = np.asarray(actions, dtype=np.int64).reshape(self.n)
        if actions.min() < 0 or actions.max() >= setup.k:
            raise ValueError(f"actions {actions.tolist()} outside Discrete({setup.k})")
        tracks = self.candidates[rows, actions]
        listeners = self.listeners
        listener = listeners.listener.copy()
        u = self.rng.random((self.n, listeners.n_uniforms))
        pct, liked = listeners.respond(tracks, self.affinity[rows, actions], u)
        if self._simulator:
            raw = setup.raw_reward(pct, liked)
            terminated = listeners.left.copy()
        else:
            raw = self._table[tracks].astype(np.float64)
            terminated = np.zeros(self.n, dtype=bool)
            left = np.flatnonzero(listeners.left)
            if left.size:  # offline rewards: the listener only informs, so a fresh session goes on
                listeners.start(left, listeners.listener[left])
        reward = raw * setup.reward_scale

        self._played[rows, tracks] = True
        self._order[rows, self._order_len] = tracks
        self._order_len += 1
        if self._window:
            drop = np.flatnonzero(self._order_len > self._window)
            self._played[drop, self._order[drop, self._order_len[drop] - self._window - 1]] = False
        self.steps += 1
        hist = self._views.hist
        if hist is not None:  # most recent first
            hist[:, 1:] = hist[:, :-1].copy()
            hist[:, 0, :-1] = self._latents[tracks]
            hist[:, 0, -1] = reward
        expected = self.expected
        out = BatchStep(reward=reward, raw_reward=raw, terminated=terminated,
                        truncated=~terminated & (self.steps >= self.cfg.session_length), tracks=tracks,
                        candidates=self.candidates, pct=pct, liked=liked, expected_reward=expected[rows, actions],
                        oracle_expected_reward=expected.max(axis=1), listener=listener)
        self.candidates = self.candidates.copy()  # the step's candidates stay as they were in ``out``
        self._advance(rows, tracks)
        return out

    def _advance(self, slots: np.ndarray, tracks: np.ndarray) -> None:
        """Make ``tracks`` current in ``slots``: candidates, their affinities and expected rewards, observations."""
        setup = self.setup
        self.track[slots] = tracks
        cands = self._index.candidates_batch(tracks, self._played, slots)
        self.candidates[slots] = cands
        a = self.listeners.affinities(cands, slots)
        self.affinity[slots] = a
        self.expected[slots] = expected_reward(a, self.listeners.population.cfg, setup.like_weight,
                                               setup.early_skip_penalty, setup.early_skip_threshold)
        views = self._views
        views.z[slots] = self._latents[tracks]
        if views.z_cands is not None:
            views.z_cands[slots] = self._latents[cands]
        if views.x is not None:
            views.x[slots] = self._features[tracks]
            views.x_cands[slots] = self._features[cands]
