"""A planning reference policy: it knows the listener's state, like the myopic oracle, and plans over the session.

For each of the k candidates, ``samples`` rollouts of ``horizon`` steps are simulated on forks of the
listener's session (:meth:`envs.listeners.ListenerSession.fork`) and of the session's played set: the first
step plays the candidate, the next ones the best candidate by the listener's expected reward (the myopic
oracle); the value of a rollout is the discounted sum of the listener's exact expected rewards along it (the
state moves with drawn answers: drift, boredom, skips and leaving). The candidate with the highest mean value
is played. With ``horizon`` 1 it is the myopic oracle.

The rollouts draw from the planner's own generator, so the planner never sees the real session's response
noise and the evaluation sessions stay the same for every policy (common random numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.baselines import Policy
from envs.music_env import MusicRecEnv


@dataclass
class PlannerConfig:
    """The planning reference of the final evaluation (config group ``eval.planner``)."""

    horizon: int = 5
    """steps of lookahead per rollout, the candidate's own included (1: the myopic oracle)"""
    samples: int = 4
    """rollouts per candidate (the listener's answers, hence drift, boredom and leaving, are drawn)"""
    gamma: float = 0.9
    """discount of the rollouts' expected rewards"""
    n_episodes: int = 50
    """evaluation sessions the planner plays (its cost: 20-30 ms per session; the first of the sessions every
    policy plays; 0: no planner)"""


def rollout_value(env: MusicRecEnv, first: int, horizon: int, gamma: float, rng: np.random.Generator,
                  excluded: np.ndarray) -> float:
    """The discounted expected reward of playing candidate ``first`` now, then the best candidate by expected
    reward for ``horizon - 1`` steps, on a fork of the env's session drawing from ``rng``.

    ``excluded`` is a scratch mask (N,) that holds the env's excluded tracks on entry and on exit.
    """
    cfg, reward = env.cfg, env.reward_definition
    index = env.world.candidate_index(cfg.k, min(cfg.n_neighbours, env.world.neighbours.shape[1]))
    window = 0 if cfg.no_repeat == "session" else int(cfg.no_repeat)
    session = env.session.fork(rng)
    order = env.excluded_tracks()
    added: list[int] = []
    current, candidates = env.track, env.current_candidates
    value, discount = 0.0, 1.0
    try:
        for step in range(min(horizon, env.steps_left)):
            if step:
                candidates = index.candidates(current, excluded)
            expected = session.expected_reward(candidates, reward.like_weight, reward.early_skip_penalty,
                                               reward.early_skip_threshold)
            pick = first if step == 0 else int(np.argmax(expected))
            value += discount * float(expected[pick])
            current = int(candidates[pick])
            session.respond(current)
            if session.left:
                break
            discount *= gamma
            excluded[current] = True
            added.append(current)
            order.append(current)
            if window and len(order) > window:
                excluded[order[-window - 1]] = False
    finally:
        excluded[added] = False
        excluded[env.excluded_tracks()] = True
    return value


def planner_policy(cfg: PlannerConfig, seed: int) -> Policy:
    """The planning reference (module docstring) as an evaluation policy; its rollouts draw from a generator
    seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    scratch: dict[int, np.ndarray] = {}  # one excluded-tracks mask per catalog size, reused

    def act(obs: np.ndarray, env: MusicRecEnv) -> int:
        n = len(env.world.tracks)
        excluded = scratch.setdefault(n, np.zeros(n, dtype=bool))
        current = env.excluded_tracks()
        excluded[current] = True
        try:
            values = [np.mean([rollout_value(env, a, cfg.horizon, cfg.gamma, rng, excluded)
                               for _ in range(cfg.samples)]) for a in range(len(env.current_candidates))]
        finally:
            excluded[current] = False
        return int(np.argmax(values))

    return act
