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

Observation (a flat float32 ``Box``, so any SB3 policy can read it):

- ``seed``: ``z_current`` (d,);
- ``candidates``: ``[z_current, z_cand_1 .. z_cand_k, x_current, x_cand_1 .. x_cand_k]`` ((1 + k) * (d + F),),
  where ``x`` are a track's F = 11 normalised features when ``candidate_features`` (the default), F = 0
  otherwise;
- ``history``: the candidates layout followed by ``history`` rows of ``[z_played, scaled reward]``, most
  recent first, zero padded ((1 + k) * (d + F) + history * (d + 1),);
- ``listener`` (the ``new_listener`` setting, :mod:`envs.listener_log`): the candidates layout, then what the
  listener's own log says about the current track and each candidate, ``[r_hat_current, r_hat_cand_1 ..
  r_hat_cand_k, evidence_current, evidence_cand_1 .. evidence_cand_k]`` (r̂ times the reward scale; evidence in
  [0, 1): the answers in the track's cluster), ``[r_fit_current, r_fit_cand_1 ..]`` (the answers' ridge fit on
  the tracks' features, times the reward scale, clipped to the reward's range), then ``history`` rows of
  ``[z_played, x_played, pct, liked, 1]`` (the in-session answers, most recent first, zero padded: the last 1
  marks a row as filled) ((1 + k) * (d + F + 3) + history * (d + F + 3),). The log is fixed with
  :meth:`MusicRecEnv.set_listener_estimate` (evaluation, serving) or, by default, drawn at each reset: ``B``
  answers of the session's listener to uniformly random choices (:func:`envs.listener_log.random_answers`),
  ``B`` log-uniform in ``0 .. env.log_answers`` (training: one policy for listeners with any amount of log).

Why the candidates' features: the k candidates are the nearest tracks in latent space, so their latents
nearly coincide; what tells them apart is mostly what the d-dimensional latent does not encode. Measured on
the default world, a regressor of the listener's expected reward on the latent recovers about 0.3 of the
oracle's edge among the candidates, on the features about 0.99 (retrieval by latent, ranking by features:
the usual two-stage recommender). The current track's features come along because the listener's boredom is
a similarity in feature space to what was just played.

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
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.listener_log import ESTIMATES, Estimator, ListenerEstimate, random_answers
from envs.rewards import RewardConfig, reward
from music_rl.core.errors import ConfigError, UnknownTrackError

if TYPE_CHECKING:
    from envs.world import World


class Observation(StrEnum):
    """What the agent observes (the layouts of the module docstring)."""

    seed = "seed"
    candidates = "candidates"
    history = "history"
    listener = "listener"


class RewardSource(StrEnum):
    """Where the env's reward comes from."""

    simulator = "simulator"
    propagated = "propagated"


class ActionKind(StrEnum):
    """What an action is (the module docstring)."""

    discrete = "discrete"
    latent = "latent"


OBSERVATIONS: tuple[str, ...] = tuple(Observation)
REWARD_SOURCES: tuple[str, ...] = tuple(RewardSource)
ACTIONS: tuple[str, ...] = tuple(ActionKind)


def _is_int(value: Any) -> bool:
    """True for integers (Python or numpy), False for bools."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _is_number(value: Any) -> bool:
    """True for real numbers (Python or numpy), False for bools."""
    real = isinstance(value, int | float | np.integer | np.floating)
    return real and not isinstance(value, bool | np.bool_)


@dataclass
class EnvConfig:
    """The env's observation, reward source and session shape (config group ``env``)."""

    observation: Observation = Observation.candidates
    """seed: z_current | candidates: + the k candidates' latents (and features) | history: + recent
    [z, reward] rows | listener: + the listener's r_hat, its evidence and r_fit per track, and recent [z, x, pct, liked]
    rows (docs/results/new-listener.md)"""
    reward_source: RewardSource = RewardSource.propagated
    """propagated: the world's reward table r_hat, learnt from a feedback log (offline: the design's flow) |
    simulator: the simulated listener answers (online)"""
    action: ActionKind = ActionKind.discrete
    """discrete: Discrete(k), one of the k candidates | latent: a point of the latent space (Box(-1, 1, (d,)),
    mapped to [0, 1]^d); the unplayed track nearest to it is played, inside the candidates or not"""
    k: int = 4
    """candidates per step: the Discrete(k) action space, the candidates observed"""
    n_neighbours: int = 32
    """neighbour table width K, built once per world"""
    session_length: int = 20
    """recommendations per episode (truncated after; terminated earlier if the listener leaves)"""
    history: int = 4
    """rows of [z_played, scaled reward] in the history observation (of [z, x, pct, liked, 1] in listener's)"""
    log_answers: int = 400
    """listener observation: each session's listener log holds B answers to random choices, B drawn
    log-uniformly in 0..log_answers (unless evaluation or serving fixes the log)"""
    no_repeat: Any = "session"
    """session: never repeat within a session | n >= 1: only the last n tracks are excluded"""
    reward_scale: Any = "auto"
    """auto: 1 / (1 + like_weight), rewards of O(1) (1 when the feedback log has no likes) | a number > 0"""
    start_track: int | None = None
    """null: a random start track per session (seeded) | a track index"""
    candidate_features: bool = True
    """add the current and candidate tracks' 11 normalised features to the observation (not in seed mode): the
    k nearest neighbours share nearly the same latent, their features tell them apart"""

    def validate(self, n_tracks: int | None = None) -> None:
        """Raise :class:`ConfigError` naming the first bad key, its value and what is allowed.

        Args:
            n_tracks: catalog size N, when known: checks ``start_track`` and that ``k`` unplayed
                candidates always remain.
        """

        def require(key: str, ok: bool, allowed: str) -> None:
            if not ok:
                raise ConfigError(f"env.{key}={getattr(self, key)!r}: {allowed}")

        require("observation", self.observation in OBSERVATIONS, f"must be one of {', '.join(OBSERVATIONS)}")
        require("action", self.action in ACTIONS, f"must be one of {', '.join(ACTIONS)}")
        require("reward_source", self.reward_source in REWARD_SOURCES,
                f"must be one of {', '.join(REWARD_SOURCES)}")
        require("k", _is_int(self.k) and self.k >= 1, "must be an integer >= 1")
        require("n_neighbours", _is_int(self.n_neighbours) and self.n_neighbours >= self.k,
                f"must be an integer >= env.k ({self.k})")
        require("session_length", _is_int(self.session_length) and self.session_length >= 1,
                "must be an integer >= 1")
        require("history", _is_int(self.history) and self.history >= 1, "must be an integer >= 1")
        require("log_answers", _is_int(self.log_answers) and self.log_answers >= 0, "must be an integer >= 0")
        require("no_repeat", self.no_repeat == "session" or (_is_int(self.no_repeat) and self.no_repeat >= 1),
                "must be 'session' or an integer window >= 1")
        require("reward_scale", self.reward_scale == "auto" or (_is_number(self.reward_scale)
                                                               and np.isfinite(self.reward_scale)
                                                               and self.reward_scale > 0),
                "must be 'auto' (1 / (1 + like_weight)) or a number > 0")
        require("start_track",
                self.start_track is None or (_is_int(self.start_track) and self.start_track >= 0),
                "must be null (random) or a track index >= 0")
        if n_tracks is None:
            return
        require("start_track", self.start_track is None or self.start_track < n_tracks,
                f"must be < the catalog size ({n_tracks} tracks)")
        excluded = self.excluded_tracks()
        require("session_length", excluded + self.k <= n_tracks,
                f"{excluded} tracks excluded at the session's end + env.k={self.k} candidates must be <= "
                f"the catalog size ({n_tracks} tracks): shorten the session or use a no_repeat window")

    def excluded_tracks(self) -> int:
        """Most tracks the played mask excludes at once: the session (start track included) or the window."""
        played = self.session_length + 1
        return played if self.no_repeat == "session" else min(played, int(self.no_repeat))


ENV_FIELDS = frozenset(f.name for f in fields(EnvConfig))


def check_listeners(listener_ids: Sequence[int], n: int) -> list[int]:
    """``listener_ids`` as ints; :class:`ConfigError` unless it is a non-empty list of ids in ``0..n - 1``."""
    ids = [int(i) for i in listener_ids]
    if not ids or any(not 0 <= i < n for i in ids):
        raise ConfigError(f"listener_ids={list(listener_ids)!r}: must be a non-empty list of ids in 0..{n - 1}")
    return ids


def check_start_track(start: Any, n_tracks: int) -> int:
    """``start`` as an int; :class:`UnknownTrackError` unless it is a track index in ``0..n_tracks - 1``."""
    if not (_is_int(start) and 0 <= start < n_tracks):
        raise UnknownTrackError(f"start_track={start!r}: must be a track index in 0..{n_tracks - 1}")
    return int(start)


class ObservationViews(NamedTuple):
    """Views into an observation buffer (..., width) by part; None where the mode has no such part."""

    z: np.ndarray  # (..., d) the current track's latent
    z_cands: np.ndarray | None  # (..., k, d) the candidates' latents
    x: np.ndarray | None  # (..., F) the current track's features
    x_cands: np.ndarray | None  # (..., k, F) the candidates' features
    hist: np.ndarray | None  # (..., history, d + 1) [z_played, scaled reward] (listener: d + F + 3), most recent first
    estimate: np.ndarray | None = None  # listener: (..., 3, 1 + k) r_hat, evidence, r_fit of current, candidates


@dataclass(frozen=True, eq=False)
class EnvSetup:
    """What MusicRec-v0 derives from a world and an env config, validated once: the reward definition and
    the observation's layout and space, used by :class:`MusicRecEnv`; build it with :meth:`of`.
    """

    cfg: EnvConfig
    n_tracks: int
    d: int
    n_feat: int  # features per track in the observation (0: none)
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
        n_feat = 0 if cfg.observation == "seed" or not cfg.candidate_features else int(world.features.shape[1])
        base = d if cfg.observation == "seed" else (1 + cfg.k) * (d + n_feat)
        if cfg.observation == "listener":  # r_hat's and r_fit's rows in reward units, the rest in [0, 1]
            n_est = len(ESTIMATES)
            low = np.zeros(base + n_est * (1 + cfg.k) + cfg.history * (d + n_feat + 3), dtype=np.float32)
            high = np.ones_like(low)
            low[base:base + n_est * (1 + cfg.k)].reshape(n_est, 1 + cfg.k)[[0, 2]] = min(0.0, -penalty * scale)
            high[base:base + n_est * (1 + cfg.k)].reshape(n_est, 1 + cfg.k)[[0, 2]] = max(1.0, (1.0 + like_weight)
                                                                                          * scale)
            space = spaces.Box(low, high, dtype=np.float32)
        elif cfg.observation != "history":
            space = spaces.Box(0.0, 1.0, (base,), np.float32)
        else:  # [0, 1] except the history's reward column
            table = world.reward_table
            raw_lo = min(-penalty, float(table.min()))
            raw_hi = max(1.0 + like_weight, float(table.max()))
            low = np.zeros((cfg.history, d + 1), dtype=np.float32)
            high = np.ones((cfg.history, d + 1), dtype=np.float32)
            low[:, d] = min(0.0, raw_lo * scale)
            high[:, d] = max(1.0, raw_hi * scale)
            low = np.concatenate([np.zeros(base, dtype=np.float32), low.ravel()])
            high = np.concatenate([np.ones(base, dtype=np.float32), high.ravel()])
            space = spaces.Box(low, high, dtype=np.float32)
        definition = RewardConfig(like_weight=like_weight, early_skip_penalty=penalty,
                                  early_skip_threshold=float(world.meta["early_skip_threshold"]),
                                  **world.meta.get("propagation", {}))  # a world saved before it: the defaults
        actions = (spaces.Box(-1.0, 1.0, (d,), np.float32) if cfg.action == "latent"
                   else spaces.Discrete(cfg.k))
        return cls(cfg, n, d, n_feat, definition, scale, space, actions)

    @property
    def k(self) -> int:
        """Candidates per step."""
        return int(self.cfg.k)

    def views(self, obs: np.ndarray) -> ObservationViews:
        """Views of ``obs`` (..., width) by part: writing into them writes the observation."""
        d, k, f, lead = self.d, self.k, self.n_feat, obs.shape[:-1]

        def part(start: int, shape: tuple[int, ...]) -> np.ndarray:
            view = obs[..., start:start + int(np.prod(shape))].reshape(*lead, *shape)
            if not np.shares_memory(view, obs):
                raise ValueError("an observation buffer must be C-contiguous: its parts are written through views")
            return view

        if self.cfg.observation == "seed":
            return ObservationViews(part(0, (d,)), None, None, None, None)
        start = (1 + k) * d
        base = (1 + k) * (d + f)
        estimate = None
        if self.cfg.observation == "listener":
            estimate = part(base, (len(ESTIMATES), 1 + k))
            base += len(ESTIMATES) * (1 + k)
        hist = part(base, (self.cfg.history, self.history_width)) if self.history_width else None
        return ObservationViews(part(0, (d,)), part(d, (k, d)), part(start, (f,)) if f else None,
                                part(start + f, (k, f)) if f else None, hist, estimate)

    @property
    def history_width(self) -> int:
        """Values per history row: d + 1 (history), d + F + 3 (listener), 0 (no history rows)."""
        return {"history": self.d + 1, "listener": self.d + self.n_feat + 3}.get(str(self.cfg.observation), 0)


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
        self._n, self._d, self._k = setup.n_tracks, setup.d, cfg.k

        self._latent = cfg.action == "latent"
        self.action_space = setup.action_space
        self.observation_space = setup.observation_space
        self._obs = np.zeros(self.observation_space.shape, dtype=np.float32)
        views = setup.views(self._obs)
        self._cand_block, self._cur_feat, self._feat_block = views.z_cands, views.x, views.x_cands
        self._hist, self._estimate_view = views.hist, views.estimate
        if self._hist is not None:
            h = cfg.history
            self._ring = np.zeros((h, setup.history_width), dtype=np.float32)  # history rows in write order, cyclic
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
        self._listener_obs = cfg.observation == "listener"
        self._fixed_estimate: ListenerEstimate | None = None
        self.estimate: ListenerEstimate | None = None
        if self._listener_obs:
            self._estimator = Estimator(world.latents, world.features, world.clusters, world.centroids,
                                        setup.reward)
            self._est_table = np.zeros((len(ESTIMATES), self._n), dtype=np.float32)  # ESTIMATES per track

    def set_listener_estimate(self, estimate: ListenerEstimate | None) -> None:
        """``listener`` observation: the estimate the next sessions observe (evaluation and serving fix the
        listener's log); None: each reset draws a log (``env.log_answers``, the module docstring)."""
        self._fixed_estimate = estimate

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

        if self._listener_obs:
            self._observe_listener(rng)
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
        if self._hist is not None:  # a ring buffer, copied out most recent first
            p = self._ring_pos = (self._ring_pos + 1) % len(self._ring)
            ring = self._ring
            if self._listener_obs:
                d, f = self._d, self.setup.n_feat
                ring[p, :d] = self._latents[track]
                if f:
                    ring[p, d:d + f] = self._features[track]
                ring[p, -3:] = (pct, liked, 1.0)
            else:
                ring[p, :-1] = self._latents[track]
                ring[p, -1] = scaled
            ring.take(self._ring_orders[p], axis=0, out=self._hist, mode="wrap")
        info = {"track": track, "track_id": self._track_ids[track], "percentage_listened": pct,
                "liked": liked, "reward": raw, "candidates": self.current_candidates, "listener": self.listener}
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
        self._obs[:self._d] = self._latents[track]
        if self._cand_block is not None:
            self._latents.take(cands, axis=0, out=self._cand_block, mode="wrap")  # unbuffered; indices valid
        if self._feat_block is not None:
            self._cur_feat[:] = self._features[track]
            self._features.take(cands, axis=0, out=self._feat_block, mode="wrap")
        if self._estimate_view is not None:
            self._est_table.take(np.concatenate([[track], cands]), axis=1, out=self._estimate_view, mode="wrap")

    def _observe_listener(self, rng: np.random.Generator) -> None:
        """The session listener's estimate (fixed, or from a log drawn now) into the per-track table."""
        estimate = self._fixed_estimate
        if estimate is None:
            top = self.cfg.log_answers
            b = int(np.exp(rng.random() * np.log1p(top))) - 1 if top else 0  # log-uniform in 0..top
            log = random_answers(self._population, self.listener, self._index, min(b, top), self._session_length,
                                 rng, self._k)
            estimate = self._estimator(log)
        self.estimate = estimate
        r_hat, evidence, r_fit = estimate.rows()
        self._est_table[0] = r_hat * self.reward_scale
        self._est_table[1] = evidence
        span = self.observation_space  # a linear fit extrapolates: clipped to the reward's range
        np.clip(r_fit * self.reward_scale, span.low.min(), span.high.max(), out=self._est_table[2])

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
