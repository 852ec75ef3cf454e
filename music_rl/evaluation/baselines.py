"""Reference policies: random, nearest, greedy (on the propagated table), the oracle among the candidates and the
oracle over the whole catalog.

A policy maps (observation, env) to an action index among the env's current candidates (which
:func:`music_rl.evaluation.evaluate.rollout` plays in either action space) or, a learnt latent policy, to the env's
action itself (a point: :func:`music_rl.learners.algos.model_policy`). Baselines read
what they need from the unwrapped :class:`envs.music_env.MusicRecEnv`: the candidates, the propagated
reward table (what the logs alone know) or the listener's true expected rewards (what only the oracles know).
The catalog oracle chooses any unplayed track (a :class:`music_rl.learners.policies.CatalogTrack`), which
:func:`music_rl.evaluation.evaluate.rollout` plays whatever the action space. The listener finds that track
(:meth:`envs.listeners.Session.best_track`): the parametric listener through its taste index, a few thousand tracks
read a step (milliseconds at 10M tracks, after a one-off sort of the catalog per listener); another listener model
scores every track (one vectorised expected reward per track and step: about 0.5 s a step at 10M tracks for the
parametric listener's arithmetic). ``eval.oracle_catalog_tracks`` bounds the search to a fixed random subset of
the catalog (:func:`oracle_catalog_subset`, drawn once per evaluation) and the current candidates
(:func:`oracle_subset_policy`), so that it never scores below the candidates' oracle.
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
    state (the catalog oracle: myopic, but free of the k candidates); ties go to the lower row. The listener finds
    it (:meth:`envs.listeners.Session.best_track`): the parametric listener reads a few thousand tracks of its
    taste index (milliseconds a step at 10M tracks), any other scores the whole catalog; the same track as
    :func:`best_unplayed` over every row."""
    definition = env.reward_definition
    excluded = np.asarray(env.excluded_tracks(), dtype=np.int64)
    return CatalogTrack(env.session.best_track(env.setup.n_tracks, excluded, definition.like_weight,
                                               definition.early_skip_penalty, definition.early_skip_threshold))


def oracle_subset_policy(subset: np.ndarray) -> Policy:
    """The catalog oracle over a bounded part of the catalog: the best unplayed track among ``subset`` (rows) and
    the current candidates, so never below the candidates' oracle (``eval.oracle_catalog_tracks``)."""

    def act(obs: np.ndarray, env: MusicRecEnv) -> CatalogTrack:
        return best_unplayed(env, merged(subset, env.current_candidates))

    return act


def merged(rows: np.ndarray, extra: np.ndarray) -> np.ndarray:
    """The sorted unique ``rows`` with the distinct ``extra`` rows they lack inserted in order: a few candidates
    merged into a large subset at the cost of a copy (``np.union1d`` sorts the whole again)."""
    extra = np.unique(extra)
    at = np.searchsorted(rows, extra)
    lacking = rows[np.minimum(at, len(rows) - 1)] != extra
    return np.insert(rows, at[lacking], extra[lacking])


def best_unplayed(env: MusicRecEnv, rows: np.ndarray) -> CatalogTrack:
    """The unplayed track among ``rows`` (sorted, unique, holding an unplayed one) of the highest true expected
    reward in the listener's current state; ties go to the lower row."""
    definition = env.reward_definition
    values = env.session.expected_reward(rows, definition.like_weight, definition.early_skip_penalty,
                                         definition.early_skip_threshold)
    excluded = np.asarray(env.excluded_tracks(), dtype=np.int64)
    at = np.minimum(np.searchsorted(rows, excluded), len(rows) - 1)
    values[at[rows[at] == excluded]] = -np.inf
    return CatalogTrack(int(rows[np.argmax(values)]))


def oracle_catalog_subset(n_tracks: int, size: int | None, seed: int) -> np.ndarray | None:
    """The rows the catalog oracle searches besides the candidates (``eval.oracle_catalog_tracks``): ``size``
    distinct rows drawn at random with ``seed``, sorted; None (the whole catalog) when ``size`` is None or covers
    the catalog."""
    if size is None or size >= n_tracks:
        return None
    return np.sort(np.random.default_rng(seed).choice(n_tracks, size=size, replace=False))


def oracle_catalog_tracks(n_tracks: int, subset: np.ndarray | None) -> int:
    """How many tracks the catalog oracle searches each step (``metrics.json["oracle_catalog_tracks"]``): the
    catalog's, or the subset's (the k current candidates are searched too)."""
    return n_tracks if subset is None else len(subset)


def baseline_policies(seed: int, oracle_subset: np.ndarray | None = None) -> dict[str, Policy]:
    """The five reference policies, the random one seeded; the catalog oracle over the whole catalog, or over
    ``oracle_subset`` and the candidates (:func:`oracle_catalog_subset`)."""
    return {
        "random": random_policy(np.random.default_rng(seed)),
        "nearest": nearest_policy,
        "greedy": greedy_policy,
        "oracle": oracle_policy,
        "oracle_catalog": oracle_catalog_policy if oracle_subset is None else oracle_subset_policy(oracle_subset),
    }
