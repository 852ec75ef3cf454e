"""Evaluation against ground-truth simulated listeners, with 95% confidence intervals.

Every policy plays the same fresh sessions (common random numbers), which training never saw, answered by the
simulated listener whatever reward source the policy was trained on (the propagated table never scores).

Metrics per policy, each with ``<name>_ci95`` (the half-width of a 95% interval, clustered by session since
steps of one session are correlated):
``mean_reward`` (per step, pct + like_weight·liked − penalty), ``mean_expected_reward`` (the listener's true
expected reward of the chosen tracks: the same quantity without response noise), ``mean_return``, ``like_rate``,
``mean_pct_listened``, ``skip_rate`` (pct < 0.5), ``early_skip_rate`` (pct < 0.1), ``coverage`` (distinct tracks
/ catalog size), ``diversity`` (mean pairwise latent distance within a session), ``mean_length``.
With ``env.action=latent`` also ``outside_candidates_rate`` (the share of steps whose track is none of the k
candidates) and ``mean_distance`` (from the proposed point to the track played, in the latent space).
``normalized_score`` = (learnt − random) / (oracle − random) on ``mean_expected_reward``, the learnt policy being
``policies.<algo>`` (``ppo`` unless ``algo`` says otherwise); ``normalized_score_realised`` is the same on
``mean_reward``. ``normalized_score_catalog`` = (learnt − random) / (oracle_catalog − random), on
``mean_expected_reward``: one scale for every action, from 0 (a random candidate) to 1 (``policies.oracle_catalog``:
the unplayed track of highest expected reward in the whole catalog, now).

The baselines choose among the k candidates in either action space (:func:`rollout` turns a candidate index into
the env's action), so every policy plays the same env on the same sessions. The expected-reward score is the
headline: the realised reward estimates the same quantity with the listener's response noise (a step's standard
deviation about 3 at like_weight 10), so its interval is several times wider.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from envs.env_config import RewardSource
from envs.music_env import EnvConfig, MusicRecEnv
from envs.world import World
from music_rl.core.errors import require
from music_rl.evaluation.planner import PlannerConfig
from music_rl.learners.policies import CatalogTrack, Policy

Z95 = 1.959963984540054


class Behaviour(StrEnum):
    """The logging policy of a run's exploration log (music_rl/evaluation/offpolicy.py)."""

    uniform = "uniform"
    epsilon_greedy = "epsilon_greedy"


class Protocol(StrEnum):
    """Whom a policy is evaluated on (:func:`eval_listeners`)."""

    personal = "personal"
    population = "population"


@dataclass
class EvalConfig:
    """Evaluation protocol and budget (config group ``eval``)."""

    protocol: Protocol = Protocol.personal
    """personal: fresh sessions of the run's own listener | population: held-out listeners"""
    n_episodes: int = 200
    """final evaluation sessions per policy (the same sessions for every policy)"""
    eval_freq: int = 50_000
    """periodic eval/* during training, every this many env steps (0: off)"""
    periodic_episodes: int = 40
    """sessions of each periodic evaluation"""
    stop_on_plateau: bool = False
    """stop training once the periodic normalized_score (a running mean of 3 evaluations) has not risen by
    eval.plateau_delta over its best for eval.plateau_patience evaluations in a row (needs eval.eval_freq)"""
    plateau_patience: int = 4
    """evaluations without a new best before eval.stop_on_plateau stops training"""
    plateau_delta: float = 0.02
    """the rise of the smoothed periodic normalized_score that counts as a new best"""
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    """the planning reference of the final evaluation (music_rl/evaluation/planner.py)"""
    ope_log_steps: int = 10_000
    """steps of the exploration log every run generates to check its off-policy estimators against the
    simulator's truth (metrics.json["ope"]; 0: off)"""
    ope_behaviour: Behaviour = Behaviour.uniform
    """the exploration log's logging policy: uniform (each of the k candidates alike) | epsilon_greedy (the
    highest r_hat with probability 1 - eval.ope_epsilon, else at random)"""
    ope_epsilon: float = 0.3
    """exploration rate of ope_behaviour=epsilon_greedy"""
    oracle_catalog_tracks: int | None = None
    """tracks the catalog oracle (policies.oracle_catalog) searches each step: null, the whole catalog (1 ms a step
    at 10M tracks through the parametric listener's taste index) | n, a fixed random subset of n tracks drawn once
    per evaluation from its seed, plus the current candidates (metrics.json oracle_catalog_tracks says which)"""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad ``eval.*`` key (``eval.planner.*`` too)."""
        planner = self.planner
        require([
            ("eval.n_episodes", self.n_episodes, self.n_episodes >= 2, "must be an integer >= 2 (a CI needs two)"),
            ("eval.periodic_episodes", self.periodic_episodes, self.periodic_episodes >= 2, "must be an integer >= 2"),
            ("eval.eval_freq", self.eval_freq, self.eval_freq >= 0, "must be an integer >= 0 (0: off)"),
            ("eval.plateau_patience", self.plateau_patience, self.plateau_patience >= 1, "must be an integer >= 1"),
            ("eval.plateau_delta", self.plateau_delta, 0 <= self.plateau_delta < float("inf"),
             "must be a number >= 0"),
            ("eval.ope_log_steps", self.ope_log_steps, self.ope_log_steps >= 0, "must be an integer >= 0 (0: off)"),
            ("eval.ope_epsilon", self.ope_epsilon, 0 < self.ope_epsilon <= 1,
             "must be in (0, 1] (every candidate needs a non-zero probability)"),
            ("eval.oracle_catalog_tracks", self.oracle_catalog_tracks,
             self.oracle_catalog_tracks is None or self.oracle_catalog_tracks >= 1,
             "must be null (the whole catalog) or an integer >= 1"),
            ("eval.planner.horizon", planner.horizon, planner.horizon >= 1, "must be an integer >= 1 (1: the oracle)"),
            ("eval.planner.samples", planner.samples, planner.samples >= 1, "must be an integer >= 1"),
            ("eval.planner.width", planner.width, planner.width >= 1, "must be an integer >= 1"),
            ("eval.planner.gamma", planner.gamma, 0 <= planner.gamma <= 1, "must be in [0, 1]"),
            ("eval.planner.n_episodes", planner.n_episodes, planner.n_episodes >= 0,
             "must be an integer >= 0 (0: no planner)"),
        ])


@dataclass
class Episode:
    """What one evaluation session produced, step by step."""

    rewards: np.ndarray
    expected: np.ndarray
    oracle_expected: np.ndarray
    pct: np.ndarray
    liked: np.ndarray
    tracks: np.ndarray
    sources: np.ndarray | None = None  # the track each recommendation was made from (T,)
    candidates: np.ndarray | None = None  # the candidates shown (T, k); the chosen one among them unless latent
    distance: np.ndarray | None = None  # latent actions: from the proposed point to the track played (T,)
    outside: np.ndarray | None = None  # latent actions: whether the track played is none of the candidates (T,)


def eval_listeners(world: World, protocol: str) -> list[int] | None:
    """The listeners a protocol evaluates on: None (the run's own listener) or the held-out ids."""
    if protocol == "personal":
        return None
    return [int(i) for i in world.meta["heldout_listeners"]]


def train_listeners(world: World, protocol: str) -> list[int] | None:
    """The listeners a protocol trains on: None (the run's own listener) or the training ids."""
    if protocol == "personal":
        return None
    return [int(i) for i in world.meta["train_listeners"]]


def make_eval_env(world: World, env_cfg: EnvConfig, listener_ids: Sequence[int] | None) -> MusicRecEnv:
    """An env that scores with the simulated listener (ground truth), in the run's observation mode."""
    return MusicRecEnv(world, dataclasses.replace(env_cfg, reward_source=RewardSource.simulator),
                       listener_ids=listener_ids)


def rollout(env: MusicRecEnv, policy: Policy, n_episodes: int, seed: int) -> list[Episode]:
    """Play ``n_episodes`` sessions; episode i is reset with seed ``seed + i`` for every policy alike. A policy
    that returns a candidate index plays that candidate, one that returns a :class:`CatalogTrack` that track
    (:func:`play_track`), whatever the env's action space."""
    latent = env.cfg.action == "latent"
    episodes = []
    for i in range(n_episodes):
        obs, _ = env.reset(seed=seed + i)
        cols: dict[str, list[Any]] = {
            k: []
            for k in (
                "reward",
                "expected_reward",
                "oracle_expected_reward",
                "percentage_listened",
                "liked",
                "track",
                "source",
                "candidates",
                *(("distance", "outside_candidates") if latent else ()),
            )
        }
        done = False
        while not done:
            choice = policy(obs, env)
            expected = env.candidate_expected_rewards()  # the state the action is taken in
            source = env.track
            if isinstance(choice, CatalogTrack):
                chosen = _track_expected(env, choice.row)
                obs, terminated, truncated, info = play_track(env, choice.row)
            else:
                action = env.candidate_action(choice) if np.ndim(choice) == 0 else choice
                chosen = env.expected_reward_of(action)
                obs, _, terminated, truncated, info = env.step(action)
            info.update(expected_reward=chosen, oracle_expected_reward=float(expected.max()), source=source)
            for key, values in cols.items():
                values.append(info[key])
            done = terminated or truncated
        episodes.append(
            Episode(
                rewards=np.asarray(cols["reward"], dtype=np.float64),
                expected=np.asarray(cols["expected_reward"], dtype=np.float64),
                oracle_expected=np.asarray(cols["oracle_expected_reward"], dtype=np.float64),
                pct=np.asarray(cols["percentage_listened"], dtype=np.float64),
                liked=np.asarray(cols["liked"], dtype=np.float64),
                tracks=np.asarray(cols["track"], dtype=np.int64),
                sources=np.asarray(cols["source"], dtype=np.int64),
                candidates=np.asarray(cols["candidates"], dtype=np.int64),
                distance=np.asarray(cols["distance"], dtype=np.float64) if latent else None,
                outside=np.asarray(cols["outside_candidates"], dtype=np.float64) if latent else None,
            )
        )
    return episodes


def _track_expected(env: MusicRecEnv, track: int) -> float:
    """The listener's true expected reward (raw units) of any track in the current state."""
    definition = env.reward_definition
    return float(env.session.expected_reward(np.array([track]), definition.like_weight,
                                             definition.early_skip_penalty, definition.early_skip_threshold)[0])


def play_track(env: MusicRecEnv, track: int) -> tuple[np.ndarray, bool, bool, dict[str, Any]]:
    """Play any track of the catalog in an evaluation env (which scores with the simulated listener), as
    :meth:`envs.music_env.MusicRecEnv.step` plays an action's: the listener answers, the env moves on with that
    answer (:meth:`~envs.music_env.MusicRecEnv.replay_track`), the session ends when the listener leaves.
    Returns the observation, terminated, truncated and the step's info (a latent env's with ``distance`` 0 and
    ``outside_candidates``)."""
    candidates = env.current_candidates.tolist()
    pct, liked = env.session.respond(track)
    obs, _, truncated, info = env.replay_track(track, pct, liked)
    terminated = bool(env.session.left)
    if env.cfg.action == "latent":
        info.update(distance=0.0, outside_candidates=track not in candidates)
    return obs, terminated, truncated and not terminated, info


def ratio_mean_ci(sums: np.ndarray, counts: np.ndarray) -> tuple[float, float | None]:
    """Per-step mean of a quantity summed per session, and its 95% half-width (cluster-robust ratio estimator);
    None for the half-width of a single session."""
    total = counts.sum()
    mean = float(sums.sum() / total)
    n = len(sums)
    if n < 2:
        return mean, None
    resid = sums - mean * counts
    se = np.sqrt(np.sum(resid**2) / (n * (n - 1))) / counts.mean()
    return mean, float(Z95 * se)


def mean_ci(values: np.ndarray) -> tuple[float, float | None]:
    """Mean of per-session values and its 95% half-width (None for a single session)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return float(values.mean()), None
    return float(values.mean()), float(Z95 * values.std(ddof=1) / np.sqrt(len(values)))


def _diversity(latents: np.ndarray, tracks: np.ndarray) -> float:
    z = latents[tracks]
    if len(z) < 2:
        return 0.0
    diff = z[:, None, :] - z[None, :, :]
    dist = np.sqrt((diff**2).sum(-1))
    return float(dist[np.triu_indices(len(z), 1)].mean())


def summarise(episodes: Sequence[Episode], latents: np.ndarray) -> dict[str, Any]:
    """Every metric of the module docstring (with ``_ci95``) of a list of sessions; with one session the
    half-widths are None and ``ci95_reason`` says why."""
    counts = np.array([len(e.rewards) for e in episodes], dtype=np.float64)
    out: dict[str, Any] = {}
    if len(episodes) < 2:
        out["ci95_reason"] = "one session: an interval needs two or more"

    def put(name: str, mean_and_ci: tuple[float, float | None]) -> None:
        out[name], out[f"{name}_ci95"] = mean_and_ci

    per_step: dict[str, list[Any]] = {  # arrays (the latent-only ones optional in an Episode)
        "mean_reward": [e.rewards for e in episodes],
        "mean_expected_reward": [e.expected for e in episodes],
        "mean_oracle_expected_reward": [e.oracle_expected for e in episodes],
        "like_rate": [e.liked for e in episodes],
        "mean_pct_listened": [e.pct for e in episodes],
        "skip_rate": [(e.pct < 0.5).astype(float) for e in episodes],
        "early_skip_rate": [(e.pct < 0.1).astype(float) for e in episodes],
    }
    if episodes[0].outside is not None:  # latent actions
        per_step.update(outside_candidates_rate=[e.outside for e in episodes],
                        mean_distance=[e.distance for e in episodes])
    for name, arrays in per_step.items():
        put(name, ratio_mean_ci(np.array([a.sum() for a in arrays]), counts))
    put("mean_return", mean_ci(np.array([e.rewards.sum() for e in episodes])))
    put("mean_length", mean_ci(counts))
    put("diversity", mean_ci(np.array([_diversity(latents, e.tracks) for e in episodes])))
    all_tracks = np.concatenate([e.tracks for e in episodes])
    out["coverage"] = float(len(np.unique(all_tracks)) / latents.shape[0])
    out["n_episodes"] = len(episodes)
    out["n_steps"] = int(counts.sum())
    return out


def normalized_score(
    metrics: Mapping[str, Mapping[str, float]], policy: str = "ppo", key: str = "mean_reward",
    ceiling: str = "oracle"
) -> float | None:
    """(policy − random) / (ceiling − random) on ``key`` (``policy``: the learnt one, ``policies.<algo>``): 0 is
    random among the candidates, 1 the ``ceiling`` policy (the myopic oracle; ``oracle_catalog``: the catalog
    oracle); None when the ceiling and random score the same (no scale: see :func:`score_undefined`)."""
    lo, hi = metrics["random"][key], metrics[ceiling][key]
    if score_undefined(metrics, key, ceiling):
        return None
    return float((metrics[policy][key] - lo) / (hi - lo))


def score_undefined(metrics: Mapping[str, Mapping[str, float]], key: str, ceiling: str = "oracle") -> str | None:
    """Why a normalized score on ``key`` is undefined (the ``ceiling`` policy scores as random does), or None."""
    lo, hi = metrics["random"][key], metrics[ceiling][key]
    if np.isfinite(hi - lo) and abs(hi - lo) >= 1e-12:
        return None
    return (f"the {ceiling.replace('_', ' ')} and random score the same {key} ({hi:.6g}): every candidate is as "
            "good as another, there is no scale")


def paired_difference(a: Sequence[Episode], b: Sequence[Episode],
                      field: str = "expected") -> tuple[float, float | None]:
    """Per-step mean of ``field`` under ``a`` minus under ``b``, both played on the same sessions (paired), and
    its 95% half-width (the difference of two cluster-robust ratio estimators, by the delta method)."""
    if len(a) != len(b):
        raise ValueError(f"paired episodes differ in number: {len(a)} and {len(b)}")
    sums = [np.array([getattr(e, field).sum() for e in eps]) for eps in (a, b)]
    counts = [np.array([len(e.rewards) for e in eps], dtype=np.float64) for eps in (a, b)]
    means = [s.sum() / c.sum() for s, c in zip(sums, counts, strict=True)]
    difference = float(means[0] - means[1])
    n = len(a)
    if n < 2:
        return difference, None
    resid = [(s - m * c) / c.mean() for s, c, m in zip(sums, counts, means, strict=True)]
    return difference, float(Z95 * np.sqrt(np.sum((resid[0] - resid[1]) ** 2) / (n * (n - 1))))


def evaluate_policies(
    world: World,
    env_cfg: EnvConfig,
    policies: Mapping[str, Policy],
    protocol: str,
    n_episodes: int,
    seed: int,
    planner: tuple[Policy, int] | None = None,
    learnt: str = "ppo",
) -> dict[str, Any]:
    """Roll out every policy on the same fresh sessions; return the ``metrics.json`` structure.

    ``learnt`` names the learnt policy among ``policies``: the normalized scores are its; with ``oracle_catalog``
    among them, ``normalized_score_catalog`` = (learnt − random) / (oracle_catalog − random) on
    ``mean_expected_reward``. ``planner`` (the
    planning reference and how many sessions it plays: the first of the same sessions) adds
    ``policies.planner``, ``normalized_score_planner`` = (learnt − random) / (planner − random) on
    ``mean_expected_reward`` over the sessions the planner played, and ``planner_minus_oracle`` (their paired
    per-step difference in expected reward, with its 95% half-width).
    """
    env = make_eval_env(world, env_cfg, eval_listeners(world, protocol))
    episodes = {name: rollout(env, policy, n_episodes, seed) for name, policy in policies.items()}
    results = {name: summarise(eps, world.latents) for name, eps in episodes.items()}
    out: dict[str, Any] = {
        "protocol": protocol,
        "n_episodes": n_episodes,
        "eval_seed": seed,
        "policies": results,
    }
    if {learnt, "random", "oracle"} <= set(results):
        out["normalized_score"] = normalized_score(results, learnt, key="mean_expected_reward")
        out["normalized_score_realised"] = normalized_score(results, learnt, key="mean_reward")
        for key, name in (("mean_expected_reward", "normalized_score"), ("mean_reward", "normalized_score_realised")):
            reason = score_undefined(results, key)
            if reason:
                out[f"{name}_reason"] = reason
    if {learnt, "random", "oracle_catalog"} <= set(results):  # the scale up to the best track anywhere, now
        out["normalized_score_catalog"] = normalized_score(results, learnt, "mean_expected_reward", "oracle_catalog")
        reason = score_undefined(results, "mean_expected_reward", "oracle_catalog")
        if reason:
            out["normalized_score_catalog_reason"] = reason
    if planner is not None and planner[1] > 0 and {learnt, "random", "oracle"} <= set(results):
        out.update(_planner_scores(env, planner[0], min(planner[1], n_episodes), seed, episodes, world, learnt))
        results["planner"] = out.pop("planner")
    return out


def _planner_scores(env: MusicRecEnv, planner: Policy, n: int, seed: int, episodes: Mapping[str, list[Episode]],
                    world: World, learnt: str) -> dict[str, Any]:
    """The planner on the first ``n`` sessions, and the scores measured against it on those sessions."""
    played = rollout(env, planner, n, seed)
    same = {name: summarise(episodes[name][:n], world.latents) for name in (learnt, "random", "oracle")}
    same["planner"] = summarise(played, world.latents)
    ceiling = dict(same, oracle=same["planner"])  # the scale from random (0) to the planner (1)
    difference, half = paired_difference(played, episodes["oracle"][:n])
    out: dict[str, Any] = {"planner": same["planner"], "planner_episodes": n,
                           "normalized_score_planner": normalized_score(ceiling, learnt,
                                                                        key="mean_expected_reward"),
                           "planner_minus_oracle": {"mean_expected_reward": difference, "ci95": half,
                                                    "oracle_mean_expected_reward":
                                                        same["oracle"]["mean_expected_reward"]}}
    reason = score_undefined(ceiling, "mean_expected_reward")
    if reason:
        out["normalized_score_planner_reason"] = reason.replace("oracle", "planner")
    return out
