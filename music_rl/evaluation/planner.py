"""A planning reference policy: it knows the listener's state, like the myopic oracle, and plans over the session.

For each of the ``width`` candidates of highest expected reward (every candidate when ``env.k <= width``),
``samples`` rollouts of ``horizon`` steps are simulated on forks of the listener's session
(:meth:`envs.listeners.Session.fork`) and of the session's played set: the first step plays the
candidate, the next ones the best by the listener's expected reward among the ``width`` nearest unplayed
tracks (the myopic oracle over the first ``width`` candidates); the value of a rollout is the discounted sum of
the listener's exact expected rewards along it (the state moves with drawn answers: drift, boredom, skips and
leaving). The candidate with the highest mean value is played. With ``horizon`` 1 it is the myopic oracle.

Its cost is bounded whatever ``env.k``: a decision simulates at most ``width * samples * horizon`` steps, each
scoring at most ``width`` tracks, and ranks the k candidates once (the unbounded planner scored k candidates at
each of ``k * samples * horizon`` steps: at k = 64 a tiny run's evaluation took 176 times the CPU of k = 4).

The rollouts draw from the planner's own generator, so the planner never sees the real session's response
noise and the evaluation sessions stay the same for every policy (common random numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.music_env import MusicRecEnv
from music_rl.learners.policies import Policy


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
    width: int = 4
    """candidates planned per decision: the width of highest expected reward (all of them when env.k <= width),
    and the width nearest tracks the rollouts' later steps choose among; bounds a decision's cost at
    width * samples * horizon simulated steps of width tracks each, whatever env.k"""


def rollout_value(env: MusicRecEnv, first: int, horizon: int, gamma: float, rng: np.random.Generator,
                  excluded: np.ndarray, width: int) -> float:
    """The discounted expected reward of playing candidate ``first`` now, then for ``horizon - 1`` steps the
    best by expected reward of the ``width`` nearest unplayed tracks, on a fork of the env's session drawing
    from ``rng``.

    ``excluded`` is a scratch mask (N,) that holds the env's excluded tracks on entry and on exit.
    """
    cfg, reward = env.cfg, env.reward_definition
    index = env.world.candidate_index(min(cfg.k, width), min(cfg.n_neighbours, env.world.neighbours.shape[1]))
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
            scored = candidates[first:first + 1] if step == 0 else candidates
            expected = session.expected_reward(scored, reward.like_weight, reward.early_skip_penalty,
                                               reward.early_skip_threshold)
            pick = int(np.argmax(expected))
            value += discount * float(expected[pick])
            current = int(scored[pick])
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
            planned = planned_candidates(env, cfg.width)
            values = [np.mean([rollout_value(env, a, cfg.horizon, cfg.gamma, rng, excluded, cfg.width)
                               for _ in range(cfg.samples)]) for a in planned]
        finally:
            excluded[current] = False
        return int(planned[int(np.argmax(values))])

    return act


def planned_candidates(env: MusicRecEnv, width: int) -> list[int]:
    """The indices of the candidates a decision plans over: all of them in order when there are at most
    ``width``, else the ``width`` of highest expected reward (ties: the nearer), in candidate order."""
    k = len(env.current_candidates)
    if k <= width:
        return list(range(k))
    expected = env.candidate_expected_rewards()
    return sorted(np.argsort(-expected, kind="stable")[:width].tolist())
