"""The Gymnasium env ``MusicRec-v0``: recommend one of the k nearest unplayed tracks, step by step.

State: the current track. Action (``env.action``), the two formulations of the design:

- ``discrete`` (the default): ``Discrete(k)``, an index into the current candidates (the k nearest tracks in
  latent space not played in the session, nearest first);
- ``latent``: a point of the latent space, ``Box(-1, 1, (d,))`` as SB3 expects of continuous actions, mapped to
  ``[0, 1]^d`` (the latents' range) by ``(a + 1) / 2``; the env plays the unplayed track nearest to that point
  (:meth:`envs.candidates.CandidateIndex.nearest_unplayed`: a kd-tree query that widens while the nearest
  tracks are all played, then an exact search over the unplayed ones). The k candidates are still computed
  and observed, but the action is free: it may play a track outside them. :meth:`MusicRecEnv.candidate_action`
  gives the point that plays candidate i (its latent mapped to ``[-1, 1]``), so policies that choose among the
  candidates play the same env.

The chosen track becomes the next state.

Observation (``env.observation``: ``seed``, ``candidates``, ``history``, ``listener``): a flat float32 ``Box``
laid out by :mod:`envs.observation` (the current track's and the candidates' latents and features, the history
rows, the listener's estimates). With ``listener`` the listener's log is fixed with
:meth:`MusicRecEnv.set_listener_estimate` (evaluation, serving) or, by default, drawn at each reset: ``B``
answers of the session's listener to uniformly random choices (:func:`envs.listener_log.random_answers`), ``B``
log-uniform in ``0 .. env.log_answers`` (training: one policy for listeners with any amount of log).

Reward (multiplied by the reward scale; ``info["reward"]`` keeps the raw value):

- ``simulator``: the listener hears the track and answers (pct, liked); reward = pct + like_weight * liked
  - early_skip_penalty * [pct < early_skip_threshold];
- ``propagated``: the world's propagated table r̂[track] (offline, learnt from the feedback log). The
  listener still answers, for ``info`` only, and never ends the episode.

An episode is one session of ``session_length`` recommendations: truncated at its end, terminated earlier
when the listener leaves (simulator only). A step costs a few microseconds: the neighbour table is looked
up, the observation buffer is preallocated and the played mask is reset only where it was set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.env_config import ENV_FIELDS, check_listeners, check_start_track
from envs.env_config import EnvConfig as EnvConfig  # re-exported: importers take the env's config from here
from envs.listener_log import Estimator, ListenerEstimate
from envs.observation import LogEstimates, ObservationLayout, ObservationViews
from envs.rewards import RewardConfig, reward
from music_rl.core.errors import ConfigError

if TYPE_CHECKING:
    from envs.world import World


@dataclass(frozen=True, eq=False)
class EnvSetup:
    """What MusicRec-v0 derives from a world and an env config, validated once: the reward definition and
    the observation's layout and space, used by :class:`MusicRecEnv`; build it with :meth:`of`.
    """

    cfg: EnvConfig
    n_tracks: int
    layout: ObservationLayout
    reward: RewardConfig  # the reward definition of the world (like_weight, early-skip penalty and threshold) and
    # its propagation's decay, decay_scale and prior
    reward_scale: float
    observation_space: spaces.Box
    action_space: spaces.Discrete | spaces.Box

    @classmethod
    def of(cls, world: World, cfg: EnvConfig) -> EnvSetup:
        """Validate ``cfg`` against the world (raises :class:`ConfigError`) and derive the setup."""
        n, d = world.latents.shape
        cfg.validate(n)
        width = world.neighbours.shape[1]
        if cfg.k > width:
            raise ConfigError(f"env.k={cfg.k}: must be <= the world's neighbour table width ({width})")
        like_weight = float(world.meta["like_weight"])
        penalty = float(world.meta["early_skip_penalty"])
        likes = world.meta.get("log_has_likes", True)  # a log without likes: rewards in [0, 1] already
        scale = (1.0 / (1.0 + like_weight) if likes else 1.0) if cfg.reward_scale == "auto" else float(cfg.reward_scale)
        layout = ObservationLayout.of(cfg.observation, d, cfg.k,
                                      world.features.shape[1] if cfg.candidate_features else 0, cfg.history)
        low, high = -penalty, 1.0 + like_weight  # the listener's rewards
        if cfg.observation == "history":  # its rows may hold the propagated table's
            low, high = min(low, float(world.reward_table.min())), max(high, float(world.reward_table.max()))
        definition = RewardConfig(like_weight=like_weight, early_skip_penalty=penalty,
                                  early_skip_threshold=float(world.meta["early_skip_threshold"]),
                                  **world.meta.get("propagation", {}))  # a world saved before it: the defaults
        actions = (spaces.Box(-1.0, 1.0, (d,), np.float32) if cfg.action == "latent"
                   else spaces.Discrete(cfg.k))
        return cls(cfg, n, layout, definition, scale, layout.space(low * scale, high * scale), actions)

    def views(self, obs: np.ndarray) -> ObservationViews:
        """Views of ``obs`` (..., width) by part (:meth:`envs.observation.ObservationLayout.views`)."""
        return self.layout.views(obs)


class MusicRecEnv(gym.Env):
    """Sequential music recommendation over a :class:`envs.world.World` (see the module docstring).

    Args:
        world: tracks, latents, neighbour table, reward table and listener population.
        cfg: the ``env`` config group (default :class:`EnvConfig`).
        listener_ids: None: every session is the world's served listener (``personal`` protocol);
            otherwise each reset draws one of these listeners (``population`` protocol).

    Attributes used by baseline policies and evaluation: ``world``, ``cfg``, ``session`` (the
    :class:`envs.listeners.Session` of the episode), ``listener`` (its id), ``track`` (the
    current track), ``current_candidates`` ((k,) track indices, nearest first), ``reward_scale``,
    :meth:`candidate_expected_rewards`, :meth:`candidate_action` and :meth:`expected_reward_of`.
    """

    metadata = {"render_modes": []}
    observation_space: spaces.Box  # (set in __init__: the setup's)

    def __init__(self, world: World, cfg: EnvConfig | None = None,
                 listener_ids: Sequence[int] | None = None) -> None:
        super().__init__()
        cfg = EnvConfig() if cfg is None else cfg
        self.setup = setup = EnvSetup.of(world, cfg)
        self.world, self.cfg = world, cfg
        self.reward_definition = setup.reward
        self.reward_scale = setup.reward_scale
        self._population = world.listeners()
        self._listener_ids = None if listener_ids is None else check_listeners(listener_ids, self._population.n)
        self._served = int(world.meta["served_listener"])
        self._simulator = cfg.reward_source == "simulator"
        self._window = 0 if cfg.no_repeat == "session" else int(cfg.no_repeat)
        self._session_length = cfg.session_length
        self._index = world.candidate_index(cfg.k, min(cfg.n_neighbours, world.neighbours.shape[1]))
        self._latents = world.latents
        self._features = world.features
        self._table = world.reward_table
        self._track_ids = world.track_ids()
        self._n, self._d, self._k = setup.n_tracks, setup.layout.d, cfg.k

        self._latent = cfg.action == "latent"
        self.action_space = setup.action_space
        self.observation_space = setup.observation_space
        self._obs = np.zeros(self.observation_space.shape, dtype=np.float32)
        views = setup.views(self._obs)
        self._cur_block, self._cand_block = views.z, views.z_cands
        self._cur_feat, self._feat_block = views.x, views.x_cands
        self._hist, self._estimate_view = views.hist, views.estimate
        if self._hist is not None:
            h = cfg.history
            self._ring = np.zeros((h, setup.layout.row_width), dtype=np.float32)  # history rows in write order, cyclic
            self._ring_rows = [setup.layout.rows(row) for row in self._ring]
            # ring rows in most-recent-first order, for each position p of the latest write
            self._ring_orders = [np.array([(p - i) % h for i in range(h)]) for p in range(h)]
        self._ring_pos = 0

        self._played = np.zeros(self._n, dtype=bool)
        self._order: list[int] = []
        self._steps = 0
        self.session: Any = None
        self.listener = -1
        self.track = -1
        self.current_candidates = np.zeros(cfg.k, dtype=np.int64)
        self._cand_list: list[int] = []
        self._cand_expected: np.ndarray | None = None
        self._answers: list[tuple[int, float, int]] = []
        self.estimate: ListenerEstimate | None = None  # the session listener's (listener observation)
        self._log_estimates = None if self._estimate_view is None else LogEstimates(
            Estimator.of(world, setup.reward, cfg.k, cfg.session_length), self._n, cfg.log_answers,
            self.reward_scale, setup.layout.estimate_bounds(self.observation_space, "r_fit"))

    def set_listener_estimate(self, estimate: ListenerEstimate | None) -> None:
        """``listener`` observation: the estimate the next sessions observe (evaluation and serving fix the
        listener's log); None: each reset draws a log (``env.log_answers``, the module docstring)."""
        if self._log_estimates is None:
            raise ValueError(f"set_listener_estimate() with env.observation={self.cfg.observation}: only listener")
        self._log_estimates.fixed = estimate

    @property
    def answers(self) -> list[tuple[int, float, int]]:
        """The session's answers so far, ``(track, pct, liked)`` in order (a copy)."""
        return list(self._answers)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a new session: a listener, a start track, an empty played mask and history.

        Args:
            seed: reseeds the env's generator (listener draw, start track, the listener's responses).
            options: ``{"start_track": i}`` overrides ``env.start_track`` (None: random).
        """
        super().reset(seed=seed)
        rng = self.np_random
        ids = self._listener_ids
        self.listener = self._served if ids is None else ids[int(rng.integers(len(ids)))]
        start = (options or {}).get("start_track", self.cfg.start_track)
        start = int(rng.integers(self._n)) if start is None else check_start_track(start, self._n)
        self.session = self._population.session(self.listener, rng)

        if self._log_estimates is not None:
            self.estimate = self._log_estimates.start(self._population, self.listener, self._index,
                                                      self._session_length, self._k, rng)
        self._played[self._order] = False  # O(session), not O(N)
        self._order = [start]
        self._answers = []
        self._played[start] = True
        self._steps = 0
        if self._hist is not None:
            self._ring[:] = 0.0
            self._hist[:] = 0.0
        self._advance(start)
        info = {"track": start, "track_id": self._track_ids[start], "listener": self.listener,
                "candidates": self.current_candidates.copy()}
        return self._obs.copy(), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Recommend candidate ``action``; the listener answers; the chosen track becomes the state.

        ``info``: ``track`` (row), ``track_id``, ``percentage_listened``, ``liked``, ``reward`` (raw, unscaled),
        ``candidates`` (the k candidates the action chose from) and ``listener``. The listener's expected
        rewards of the candidates are not computed on a step (a quarter of its cost): ask
        :meth:`candidate_expected_rewards` before stepping. With ``env.action=latent`` also ``proposed`` (the
        point in ``[0, 1]^d``), ``distance`` (from it to the track played) and ``outside_candidates`` (whether
        that track is none of the k candidates).
        """
        track, latent_info = self._resolve(action)
        session = self.session
        pct, liked = session.respond(track)
        terminated = False
        if self._simulator:
            terminated = session.left
        elif session.left:  # offline rewards: the listener only informs, so a fresh session goes on
            self.session = self._population.session(self.listener, self.np_random)
        obs, scaled, terminated, truncated, info = self._move(track, pct, liked, terminated)
        if latent_info:
            info.update(latent_info)
        return obs, scaled, terminated, truncated, info

    def replay(self, action: Any, pct: float, liked: int) -> tuple[np.ndarray, float, bool, dict[str, Any]]:
        """Recommend candidate ``action`` with the listener's answer given (a logged one) rather than drawn: the
        observations of a logged session, rebuilt. The simulated listener's state does not move.

        Returns the observation, the (scaled) reward, whether the session is truncated, and the info of
        :meth:`step`.
        """
        return self.replay_track(self.track_for(action), pct, liked)

    def replay_track(self, track: int, pct: float, liked: int) -> tuple[np.ndarray, float, bool, dict[str, Any]]:
        """:meth:`replay` of a logged track that need not be one of the candidates (a log of played tracks, such
        as the Spotify MSSD's, shows none)."""
        obs, scaled, _, truncated, info = self._move(int(track), float(pct), int(liked), False)
        return obs, scaled, truncated, info

    def _candidate(self, action: Any) -> int:
        """The track of candidate ``action``."""
        a = int(action)
        if not 0 <= a < self._k:
            raise ValueError(f"action {action!r} outside Discrete({self._k})")
        return self._cand_list[a]

    def proposed_point(self, action: Any) -> np.ndarray:
        """The point of ``[0, 1]^d`` a latent action proposes: ``(a + 1) / 2``, ``a`` clipped to ``[-1, 1]``."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (self._d,):
            raise ValueError(f"action of shape {np.shape(action)} outside Box(-1, 1, ({self._d},))")
        return (np.clip(a, -1.0, 1.0) + 1.0) / 2.0

    def _resolve(self, action: Any) -> tuple[int, dict[str, Any] | None]:
        """The track ``action`` plays now and, for a latent action, the point, its distance to that track and
        whether the track is outside the candidates."""
        if not self._latent:
            return self._candidate(action), None
        point = self.proposed_point(action)
        track, distance = self._index.nearest_unplayed(point, self._played)
        return track, {"proposed": point, "distance": distance, "outside_candidates": track not in self._cand_list}

    def track_for(self, action: Any) -> int:
        """The track ``action`` plays in the current state: candidate ``action`` (discrete), or the unplayed
        track nearest to the proposed point (latent)."""
        return self._resolve(action)[0]

    def candidate_action(self, i: Any) -> Any:
        """The action that plays candidate ``i``: ``i`` (discrete), or the candidate's latent mapped to
        ``[-1, 1]`` (latent; float32, as the Box: the track nearest to it is the candidate itself unless another
        unplayed track lies within float32 rounding of its latent)."""
        track = self._candidate(i)
        if not self._latent:
            return int(i)
        return (2.0 * self._latents[track].astype(np.float64) - 1.0).astype(np.float32)

    def _move(self, track: int, pct: float, liked: int,
              terminated: bool) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """The step's reward, the played set, the history and the next state, after the answer (pct, liked)."""
        raw = reward(pct, liked, self.reward_definition) if self._simulator else float(self._table[track])
        scaled = raw * self.reward_scale
        played, order, window = self._played, self._order, self._window
        played[track] = True
        order.append(track)
        if window and len(order) > window:
            played[order[-window - 1]] = False
        self._steps += 1
        self._answers.append((track, pct, liked))
        if self._log_estimates is not None:
            self._log_estimates.answer(track, pct, liked)
        if self._hist is not None:  # a ring buffer, copied out most recent first
            p = self._ring_pos = (self._ring_pos + 1) % len(self._ring)
            z, x, answer, filled = self._ring_rows[p]
            z[:] = self._latents[track]
            if x is not None:
                x[:] = self._features[track]
            if filled is None:  # element by element: a slice assignment costs more on this hot path
                answer[0] = scaled
            else:
                answer[0], answer[1] = pct, liked
                filled[0] = 1.0
            self._ring.take(self._ring_orders[p], axis=0, out=self._hist, mode="wrap")
        info: dict[str, Any] = {"track": track, "track_id": self._track_ids[track], "percentage_listened": pct,
                                "liked": liked, "reward": raw, "candidates": self.current_candidates,
                                "listener": self.listener}
        self._advance(track)
        truncated = not terminated and self._steps >= self._session_length
        return self._obs.copy(), scaled, terminated, truncated, info

    def _advance(self, track: int) -> None:
        """Make ``track`` current: its candidates and the observation."""
        self.track = track
        cands = self._index.candidates(track, self._played)
        self.current_candidates = cands
        self._cand_list = cands.tolist()
        self._cand_expected = None
        self._cur_block[:] = self._latents[track]
        if self._cand_block is not None:
            self._latents.take(cands, axis=0, out=self._cand_block, mode="wrap")  # unbuffered; indices valid
        if self._feat_block is not None:
            self._cur_feat[:] = self._features[track]
            self._features.take(cands, axis=0, out=self._feat_block, mode="wrap")
        if self._log_estimates is not None:
            self._log_estimates.observe(np.concatenate([[track], cands]), self._estimate_view)

    def excluded_tracks(self) -> list[int]:
        """The tracks the candidates exclude now: the session's so far (the start track included), or its last
        ``no_repeat`` with a window."""
        return self._order[-self._window:] if self._window else list(self._order)

    @property
    def steps_left(self) -> int:
        """Recommendations left before the session is truncated."""
        return self._session_length - self._steps

    def candidate_expected_rewards(self) -> np.ndarray:
        """True expected rewards (raw units) of the current candidates in the listener's current state.

        Computed on demand (a step does not need them; evaluation and the oracle do), once per state.
        """
        if self.session is None:
            raise RuntimeError("candidate_expected_rewards() before the first reset()")
        if self._cand_expected is None:
            self._cand_expected = self.session.expected_reward(
                self.current_candidates, self.reward_definition.like_weight,
                self.reward_definition.early_skip_penalty, self.reward_definition.early_skip_threshold)
        return self._cand_expected.copy()

    def expected_reward_of(self, action: Any) -> float:
        """True expected reward (raw units) of the track ``action`` plays, in the listener's current state: its
        value in :meth:`candidate_expected_rewards` when it is a candidate (always, for a discrete action), else
        computed for that track."""
        track = self.track_for(action)
        expected = self.candidate_expected_rewards()
        if track in self._cand_list:
            return float(expected[self._cand_list.index(track)])
        definition = self.reward_definition
        return float(self.session.expected_reward(np.array([track]), definition.like_weight,
                                                  definition.early_skip_penalty,
                                                  definition.early_skip_threshold)[0])


def make_env(world_dir: str | None = None, **kwargs: Any) -> MusicRecEnv:
    """The ``MusicRec-v0`` entry point: an env over a saved world or a fresh synthetic one.

    Args:
        world_dir: a run's ``world/`` folder (:meth:`envs.world.World.load`); None builds
            :func:`envs.world.synthetic_world`.
        **kwargs: :class:`EnvConfig` fields (``observation=``, ``reward_source=``, ``k=`` ...),
            ``listener_ids`` and, without ``world_dir``, the options of :func:`envs.world.synthetic_world`
            (``n_tracks``, ``latent_dim``, ``seed``, ``listener_seed``, reward and listener config fields).
    """
    from envs.world import World, synthetic_world  # here: envs.world imports EnvConfig from this module

    listener_ids = kwargs.pop("listener_ids", None)
    cfg = EnvConfig(**{key: kwargs.pop(key) for key in list(kwargs) if key in ENV_FIELDS})
    if world_dir is None:
        world = synthetic_world(env_cfg=cfg, **kwargs)
    elif kwargs:
        raise ConfigError(f"MusicRec-v0 options {sorted(kwargs)}: with world_dir= only EnvConfig fields and "
                          "listener_ids are allowed")
    else:
        world = World.load(world_dir)
    return MusicRecEnv(world, cfg, listener_ids=listener_ids)
