"""Policies played in a world listener by listener, and what the protocol reads of them: normalized scores with
bootstrap intervals over listeners, the agreement of two worlds' orders (Kendall's tau) and the transfer ratio.

A world's score of a policy is (policy − random) / (oracle − random) on the per-step mean of the listener's true
expected reward, pooled over its held-out listeners' steps (``random`` and ``oracle``: the random candidate and
the myopic oracle, played on the same sessions: common random numbers). A bootstrap resample draws the
listeners with replacement; the two worlds' listeners are drawn independently (they are different
populations), a ratio within one world on the same draw (paired).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from envs.env_config import ActionKind, EnvConfig
from envs.world import World
from music_rl.evaluation.evaluate import make_eval_env, rollout
from music_rl.learners.policies import Policy

ANCHORS = ("random", "oracle")  # the two ends of the normalized score


@dataclass(frozen=True)
class Player:
    """A policy to play: ``make(seed)`` gives a fresh one for each session (an online bandit starts cold; a random
    policy draws from the session's own ``seed``, so its choices do not depend on what was played before), in an
    env of action formulation ``action``."""

    make: Callable[[int], Policy]
    action: ActionKind = ActionKind.discrete


@dataclass
class Played:
    """Per policy, the expected reward summed over each listener's evaluation steps and the number of steps,
    (L,) each."""

    listeners: list[int]
    sums: dict[str, np.ndarray]
    steps: dict[str, np.ndarray]

    def merged(self, other: Played) -> Played:
        """These policies and ``other``'s, played on the same listeners."""
        if other.listeners != self.listeners:
            raise ValueError("played on other listeners")
        return Played(self.listeners, {**self.sums, **other.sums}, {**self.steps, **other.steps})


def play(world: World, env_cfg: EnvConfig, players: Mapping[str, Player], listeners: Sequence[int],
         n_sessions: int, seed: int) -> Played:
    """Every policy on ``n_sessions`` sessions of each listener, the same sessions for every policy (session i
    of listener l reset with one seed whatever the policy)."""
    sums = {name: np.zeros(len(listeners)) for name in players}
    steps = {name: np.zeros(len(listeners)) for name in players}
    for j, listener in enumerate(listeners):
        envs: dict[str, Any] = {}
        for name, player in players.items():
            env = envs.get(player.action) or envs.setdefault(
                player.action, make_eval_env(world, dataclasses.replace(env_cfg, action=player.action), [listener]))
            for i in range(n_sessions):
                session_seed = seed + 7919 * int(listener) + i
                (episode,) = rollout(env, player.make(session_seed), 1, session_seed)
                sums[name][j] += episode.expected.sum()
                steps[name][j] += len(episode.expected)
    return Played([int(i) for i in listeners], sums, steps)


def bootstrap_weights(n: int, n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """(1 + n_bootstrap, n): row 0 every listener once (the sample itself), then resamples' counts."""
    draws = np.stack([np.bincount(rng.integers(n, size=n), minlength=n) for _ in range(n_bootstrap)])
    return np.vstack([np.ones(n), draws])


def normalized_scores(played: Played, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Each non-anchor policy's normalized score on each row of ``weights``, (1 + B,); NaN where the oracle and
    random score the same."""
    mean = {name: (weights @ played.sums[name]) / (weights @ played.steps[name]) for name in played.sums}
    span = mean["oracle"] - mean["random"]
    with np.errstate(divide="ignore", invalid="ignore"):
        return {name: np.where(np.abs(span) > 1e-12, (m - mean["random"]) / span, np.nan)
                for name, m in mean.items() if name not in ANCHORS[1:]}


def interval(values: np.ndarray) -> list[float] | None:
    """The 2.5% and 97.5% percentiles of finite bootstrap values (None if any is not finite)."""
    if not np.isfinite(values).all():
        return None
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def ranking(reference: dict[str, np.ndarray], learnt: dict[str, np.ndarray], names: Sequence[str]) -> dict[str, Any]:
    """How the learnt simulator orders ``names`` against the reference: both worlds' scores, Kendall's tau-b of
    the two orders with its bootstrap interval, and the mean absolute difference of the scores (the random
    policy, 0 in both by definition, left out of it)."""
    ref = np.stack([reference[n] for n in names], axis=1)  # (1 + B, P)
    sim = np.stack([learnt[n] for n in names], axis=1)
    taus = np.array([_tau(r, s) for r, s in zip(ref, sim, strict=True)])
    moving = [i for i, n in enumerate(names) if n != "random"]
    return {"policies": {n: {"learnt": _number(sim[0, i]), "reference": _number(ref[0, i])}
                         for i, n in enumerate(names)},
            "kendall_tau": _number(taus[0]), "ci95": interval(taus[1:]),
            "mean_abs_difference": _number(np.abs(sim[0, moving] - ref[0, moving]).mean())}


def transfer(reference: dict[str, np.ndarray], inside: str, outside: str) -> dict[str, Any]:
    """``inside``'s reference score over ``outside``'s (paired on the same resamples), with its interval, and their
    difference (meaningful also where ``outside`` scores near or below random, which makes the ratio unstable)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = reference[inside] / reference[outside]
    difference = reference[inside] - reference[outside]
    return {"ratio": _number(ratio[0]), "ci95": interval(ratio[1:]), "difference": _number(difference[0]),
            "difference_ci95": interval(difference[1:]), "trained_inside": inside,
            "trained_outside": outside, "score_inside": _number(reference[inside][0]),
            "score_outside": _number(reference[outside][0])}


def _tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-b of two score vectors (NaN where undefined)."""
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("nan")
    return float(stats.kendalltau(a, b).statistic)


def _number(value: float) -> float | None:
    """A float for strict JSON: None for NaN or infinity."""
    return float(value) if np.isfinite(value) else None
