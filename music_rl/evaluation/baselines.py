"""Reference policies: random, nearest, greedy (on the propagated table) and the oracle.

A policy maps (observation, env) to an action index among the env's current candidates (which
:func:`music_rl.evaluation.evaluate.rollout` plays in either action space) or, a learnt latent policy, to the env's
action itself (a point: :func:`music_rl.learners.algos.model_policy`). Baselines read
what they need from the unwrapped :class:`envs.music_env.MusicRecEnv`: the candidates, the propagated
reward table (what the logs alone know) or the listener's true expected rewards (what only the oracle knows).
"""

from __future__ import annotations

import numpy as np

from envs.music_env import MusicRecEnv
from music_rl.learners.policies import Policy


def random_policy(rng: np.random.Generator) -> Policy:
    """Choose uniformly among the k candidates."""

    def act(obs: np.ndarray, env: MusicRecEnv) -> int:
        return int(rng.integers(len(env.current_candidates)))

    return act


def nearest_policy(obs: np.ndarray, env: MusicRecEnv) -> int:
    """Always the nearest candidate (candidates are ordered nearest first)."""
    return 0


def greedy_policy(obs: np.ndarray, env: MusicRecEnv) -> int:
    """The candidate with the highest propagated reward r̂: what the feedback log alone knows."""
    return int(np.argmax(env.world.reward_table[env.current_candidates]))


def oracle_policy(obs: np.ndarray, env: MusicRecEnv) -> int:
    """The candidate with the highest true expected reward in the listener's current state (myopic oracle)."""
    return int(np.argmax(env.candidate_expected_rewards()))


def baseline_policies(seed: int) -> dict[str, Policy]:
    """The four reference policies, the random one seeded."""
    return {
        "random": random_policy(np.random.default_rng(seed)),
        "nearest": nearest_policy,
        "greedy": greedy_policy,
        "oracle": oracle_policy,
    }
