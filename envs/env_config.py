"""MusicRec-v0's config group ``env`` (:class:`EnvConfig`, its choices and checks), validated before any work."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

import numpy as np

from envs.observation import OBSERVATIONS, Observation
from music_rl.core.errors import ConfigError, UnknownTrackError


class RewardSource(StrEnum):
    """Where the env's reward comes from."""

    simulator = "simulator"
    propagated = "propagated"


class ActionKind(StrEnum):
    """What an action is (:mod:`envs.music_env`'s docstring)."""

    discrete = "discrete"
    latent = "latent"


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
    [z, reward] rows | listener: + the listener's r_hat, its evidence, r_fit, and pop and pop_sd (the posterior under
    the population prior) per track, and recent [z, x, pct, liked] rows (docs/results/new-listener.md)"""
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
