"""Reference policies: random, nearest, greedy (on the propagated table), the oracle among the candidates and the
oracle over the whole catalog.

A policy maps (observation, env) to an action index among the env's current candidates (which
:func:`music_rl.evaluation.evaluate.rollout` plays in either action space) or, a learnt latent policy, to the env's
action itself (a point: :func:`music_rl.learners.algos.model_policy`). Baselines read
what they need from the unwrapped :class:`envs.music_env.MusicRecEnv`: the candidates, the propagated
reward table (what the logs alone know) or the listener's true expected rewards (what only the oracles know).
The catalog oracle chooses any unplayed track (a :class:`music_rl.learners.policies.CatalogTrack`), which
:func:`music_rl.evaluation.evaluate.rollout` plays whatever the action space.
"""

from __future__ import annotations

import numpy as np

from envs.music_env import MusicRecEnv
from music_rl.learners.policies import CatalogTrack, Policy


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


def oracle_catalog_policy(obs: np.ndarray, env: MusicRecEnv) -> CatalogTrack:
    """The unplayed track of the whole catalog with the highest true expected reward in the listener's current
    state (the catalog oracle: myopic, but free of the k candidates); ties go to the lower row. One vectorised
    call over the catalog per step (:meth:`envs.listeners.Session.expected_reward`)."""
    definition = env.reward_definition
    values = env.session.expected_reward(np.arange(env.setup.n_tracks), definition.like_weight,
                                         definition.early_skip_penalty, definition.early_skip_threshold)
    values[env.excluded_tracks()] = -np.inf
    return CatalogTrack(int(np.argmax(values)))


def baseline_policies(seed: int) -> dict[str, Policy]:
    """The five reference policies, the random one seeded."""
    return {
        "random": random_policy(np.random.default_rng(seed)),
        "nearest": nearest_policy,
        "greedy": greedy_policy,
        "oracle": oracle_policy,
        "oracle_catalog": oracle_catalog_policy,
    }
