"""The reference population's logged sessions: a logging policy with propensities plays sessions of every
listener of a (parametric) world, listener after listener each round, and the log keeps, beside each answer,
the affinity the answering listener had for the track just before answering (the hidden state the reference
predictor reads: :mod:`music_rl.sim2real.reference`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from envs.env_config import EnvConfig
from envs.listeners import ParametricSession
from envs.music_env import MusicRecEnv
from envs.observation import Observation
from envs.simulated_logs import feedback_frame
from envs.world import World
from music_rl.evaluation.evaluate import make_eval_env
from music_rl.evaluation.offpolicy import behaviour_probabilities

_Step = tuple[int, np.ndarray, int, float, int, float, float]
"""One logged step: ``(previous track, candidates, track, pct, liked, action_prob, affinity)``."""


@dataclass(frozen=True)
class ReferenceLog:
    """Logged sessions of the reference listeners, listener after listener (the order
    :func:`music_rl.user_model.sessions.sessions_of` reads them in).

    Attributes:
        frame: the project's feedback format with ``from_track_id``, ``candidates`` and ``action_prob``.
        affinity: (A,) the listener's affinity of each played track in its state just before the answer.
        listener: (S,) the listener of each session.
        rank: (S,) each session's place in the logging order (round after round): a log of ``n`` sessions is
            the sessions of rank below ``n``.
    """

    frame: pd.DataFrame
    affinity: np.ndarray
    listener: np.ndarray
    rank: np.ndarray


def log_reference(world: World, env_cfg: EnvConfig, n_sessions: int, behaviour: str, epsilon: float,
                  seed: int) -> ReferenceLog:
    """``n_sessions`` sessions of the world's listeners (all of them, in turn: round r plays one session of
    each), each from a random start track, every step chosen among the k candidates by the logging policy
    ``behaviour`` (:func:`music_rl.evaluation.offpolicy.behaviour_probabilities`).

    Raises:
        TypeError: the world's listeners are not parametric (the reference keeps its hidden state).
    """
    n_listeners = world.listeners().n
    # the logging policy reads the candidates alone: an observation that draws at reset (the listener's log)
    # would move the answers' random stream
    logging_env = dataclasses.replace(env_cfg, observation=Observation.candidates)
    policy = behaviour_probabilities(behaviour, epsilon)
    rng = np.random.default_rng([seed, 1])
    per_listener: list[list[tuple[int, list[_Step]]]] = [[] for _ in range(n_listeners)]
    envs: dict[int, MusicRecEnv] = {}
    for rank in range(n_sessions):
        listener = rank % n_listeners
        env = envs.get(listener) or envs.setdefault(listener, make_eval_env(world, logging_env, [listener]))
        obs, info = env.reset(seed=int(np.random.SeedSequence([seed, rank]).generate_state(1)[0]))
        session = env.session
        if not isinstance(session, ParametricSession):
            raise TypeError(f"the reference log needs parametric listeners, not {type(session).__name__}")
        steps: list[_Step] = []
        previous, done = int(info["track"]), False
        while not done:
            mu = policy(obs, env)
            action = int(rng.choice(len(mu), p=mu))
            candidates = env.current_candidates.copy()
            affinity = session.affinity_now(int(candidates[action]))
            obs, _, terminated, truncated, info = env.step(action)
            steps.append((previous, candidates, int(info["track"]), float(info["percentage_listened"]),
                          int(info["liked"]), float(mu[action]), affinity))
            previous, done = int(info["track"]), terminated or truncated
        per_listener[listener].append((rank, steps))
    return _assemble(per_listener, world.track_ids())


def _assemble(per_listener: list[list[tuple[int, list[_Step]]]], track_ids: Sequence[str]) -> ReferenceLog:
    """The log, listener after listener, each listener's sessions in their order."""
    rows, affinity, listeners, ranks = [], [], [], []
    for listener, sessions in enumerate(per_listener):
        user = f"listener-{listener:05d}"
        for round_, (rank, steps) in enumerate(sessions):
            listeners.append(listener)
            ranks.append(rank)
            for position, (previous, candidates, track, pct, liked, prob, a) in enumerate(steps, start=1):
                rows.append((user, f"{user}-{round_:05d}", position, track_ids[track], pct, liked,
                             track_ids[previous], " ".join(track_ids[c] for c in candidates), prob))
                affinity.append(a)
    return ReferenceLog(feedback_frame(rows), np.asarray(affinity, dtype=np.float64),
                        np.asarray(listeners, dtype=np.int64), np.asarray(ranks, dtype=np.int64))
