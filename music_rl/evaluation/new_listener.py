"""The ``new_listener`` protocol: how well a method serves a listener it has never met, against how much the
listener has answered (docs/results/new-listener.md).

For each held-out listener and each budget B of ``new_listener.budgets``: the first B answers of one log of
uniformly random choices among the k candidates in sessions from random start tracks (the budgets are nested
prefixes of the same log), and, with ``new_listener.probe_round``, the row ``"probe80"``: the design's probe
round (``reward.probes_per_cluster`` probes in each of ``reward.n_clusters`` clusters, 4 x 20 = 80 by default;
the row is named ``probe<n>`` after its number of probes, :func:`probe_row`).
Then ``new_listener.n_sessions`` fresh evaluation sessions per listener, the same sessions (start tracks,
listener answers' random streams: common random numbers) for every method and every budget. Before each session
a method gets the listener's log so far: the budget's answers and, with ``new_listener.online``, the answers of
its own earlier evaluation sessions (:class:`music_rl.evaluation.adaptive.ListenerPolicy`).

Scores, per method and budget: ``normalized_score`` = (m − random) / (oracle − random) on the per-step mean of
the listener's true expected reward, pooled over the held-out listeners' steps; ``ci95`` = [low, high], the
2.5% and 97.5% percentiles of the same score over a bootstrap of the listeners (``new_listener.n_bootstrap``
resamples, the same resamples for every method). ``comparisons["a - b"]``: the paired difference of two
methods' scores with its bootstrap interval over listeners (the issue's "beats": low > 0; "at least": low >
-0.05), for ``ppo`` against every method but the references (random, oracle, taste) and for the pairs of
:data:`COMPARED`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from envs.listener_log import AnswerLog, Estimator, probe_answers, random_answers, track_features
from envs.music_env import EnvConfig, EnvSetup
from envs.rewards import RewardConfig
from envs.world import World
from music_rl.core.errors import ConfigError
from music_rl.evaluation.adaptive import (
    Fixed,
    GreedyEstimate,
    LinUCB,
    ListenerPolicy,
    PopulationPosterior,
    SessionAffinity,
    StaticTaste,
)
from music_rl.evaluation.baselines import nearest_policy, oracle_policy, random_policy
from music_rl.evaluation.evaluate import make_eval_env, rollout
from music_rl.evaluation.segments import SegmentThompson, fit_segments
from music_rl.learners.policies import HISTORY_ENCODERS, HistoryEncoder

REFERENCES = ("random", "oracle", "taste")  # the scale's ends and the ceiling of taste: scores, not rivals
COMPARED = (("linucb", "random"), ("segment_ts", "linucb"), ("greedy_pop", "linucb_tuned"),
            ("pop_ts", "greedy_pop"))  # besides ppo against every other method
ESTIMATE_BASELINE = "greedy_pop"  # what the estimate alone identifies (new_listener.decomposition)


@dataclass
class NewListenerConfig:
    """The ``new_listener`` protocol (config group ``new_listener``; docs/results/new-listener.md)."""

    enabled: bool = False
    """after training, evaluate every method on held-out listeners against their log size
    (metrics.json["new_listener"]); +experiment=new_listener sets it"""
    budgets: list[int] = field(default_factory=lambda: [0, 20, 80, 400, 2000])
    """answers to random choices each held-out listener gives before its evaluation sessions"""
    probe_round: bool = True
    """add the row "probe80": the design's probe round (reward.probes_per_cluster in every cluster)"""
    n_sessions: int = 10
    """fresh evaluation sessions per held-out listener and budget (the same for every method)"""
    max_listeners: int | None = None
    """evaluate the first this many held-out listeners; null: all of them"""
    online: bool = True
    """before each evaluation session, a method that reads the log also gets its earlier sessions' answers"""
    linucb_alpha: float = 0.1
    """LinUCB's exploration bonus weight (rewards in the env's scaled units)"""
    linucb_tuned_alpha: float = 0.03
    """linucb_tuned's bonus weight: the best of 0, 0.03, 0.1, 0.3, 1 and 3 on the tuning seed 0
    (docs/results/new-listener.md)"""
    linucb_ridge: float = 1.0
    """LinUCB's prior precision (ridge penalty); also segment_ts's around its segment's centre"""
    segments: int = 8
    """segment_ts: k-means segments of the training listeners' tastes (semi-personalised Thompson sampling)"""
    segment_answers: int = 400
    """segment_ts: answers to random choices of each training listener that its taste is fitted on"""
    n_bootstrap: int = 1000
    """bootstrap resamples of the listeners for ci95"""
    history_encoder: HistoryEncoder = HistoryEncoder.pooled
    """env.observation=listener: how the candidate scorer reads the in-session answer rows: pooled (a set encoding
    of the rows, the same for every candidate) | pairwise (each candidate against each row) | none"""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad ``new_listener.*`` key."""
        checks = [
            ("budgets", bool(self.budgets) and all(isinstance(b, int) and b >= 0 for b in self.budgets)
             and len(set(self.budgets)) == len(self.budgets), "must be a non-empty list of distinct integers >= 0"),
            ("n_sessions", self.n_sessions >= 1, "must be an integer >= 1"),
            ("max_listeners", self.max_listeners is None or self.max_listeners >= 2,
             "must be null (all held-out listeners) or an integer >= 2 (a bootstrap needs two)"),
            ("linucb_alpha", 0 <= self.linucb_alpha < float("inf"), "must be a number >= 0"),
            ("linucb_tuned_alpha", 0 <= self.linucb_tuned_alpha < float("inf"), "must be a number >= 0"),
            ("linucb_ridge", 0 < self.linucb_ridge < float("inf"), "must be a number > 0"),
            ("segments", self.segments >= 1, "must be an integer >= 1"),
            ("segment_answers", self.segment_answers >= 1, "must be an integer >= 1"),
            ("n_bootstrap", self.n_bootstrap >= 10, "must be an integer >= 10"),
            ("history_encoder", self.history_encoder in HISTORY_ENCODERS,
             f"must be one of {', '.join(HISTORY_ENCODERS)}"),
        ]
        for key, ok, allowed in checks:
            if not ok:
                raise ConfigError(f"new_listener.{key}={getattr(self, key)!r}: {allowed}")


Factory = Callable[[], ListenerPolicy]


def probe_row(reward_cfg: RewardConfig) -> str:
    """The probe round's row in ``metrics.json["new_listener"]["budgets"]``: ``probe<probes>``, "probe80" by
    default."""
    return f"probe{reward_cfg.probes_per_cluster * reward_cfg.n_clusters}"


def _constant(policy: ListenerPolicy) -> Factory:
    """A factory that gives ``policy`` itself."""
    return lambda: policy


def method_factories(world: World, cfg: NewListenerConfig, reward_cfg: RewardConfig, env_cfg: EnvConfig,
                     learnt: Mapping[str, ListenerPolicy], seed: int, estimator: Estimator) -> dict[str, Factory]:
    """A fresh policy per listener and budget for every method: ``learnt`` (already built; a learnt policy keeps
    nothing between listeners), LinUCB (its default and its tuned bonus), Thompson sampling over the training
    listeners' segments, greedy on and Thompson sampling from the population-prior posterior, the
    session-affinity heuristic, greedy on r̂ and on r_fit, random, nearest, oracle and the static-taste
    reference."""
    phi = track_features(world.latents, world.features)
    rng = np.random.default_rng(seed)
    scale = EnvSetup.of(world, env_cfg).reward_scale
    segments = fit_segments(world, [int(i) for i in world.meta["train_listeners"]], reward_cfg, scale,
                            cfg.segment_answers, cfg.segments, cfg.linucb_ridge, env_cfg.k, env_cfg.session_length,
                            seed)
    factories: dict[str, Factory] = {name: _constant(policy) for name, policy in learnt.items()}
    factories.update({
        "linucb": lambda: LinUCB(phi, reward_cfg, scale, cfg.linucb_alpha, cfg.linucb_ridge),
        "linucb_tuned": lambda: LinUCB(phi, reward_cfg, scale, cfg.linucb_tuned_alpha, cfg.linucb_ridge),
        "greedy_pop": lambda: PopulationPosterior(estimator.basis),
        "pop_ts": lambda: PopulationPosterior(estimator.basis, rng),
        "segment_ts": lambda: SegmentThompson(phi, segments, reward_cfg, scale, cfg.linucb_ridge, rng),
        "affinity": lambda: SessionAffinity(world.features),
        "greedy": GreedyEstimate,
        "greedy_fit": lambda: GreedyEstimate("r_fit"),
        "random": lambda: Fixed(random_policy(rng)),
        "nearest": lambda: Fixed(nearest_policy),
        "oracle": lambda: Fixed(oracle_policy),
        "taste": StaticTaste,
    })
    return factories


def budget_logs(world: World, listener: int, cfg: NewListenerConfig, reward_cfg: RewardConfig, k: int,
                session_length: int, seed: int) -> dict[int | str, AnswerLog]:
    """The log of every budget row of one listener: nested prefixes of one random-choice log, and the probe
    round."""
    population = world.listeners()
    index = world.candidate_index(k, world.neighbours.shape[1])
    walk = random_answers(population, listener, index, max(cfg.budgets), session_length,
                          np.random.default_rng([seed, listener, 0]), k)
    rows: dict[int | str, AnswerLog] = {b: walk.head(b) for b in cfg.budgets}
    if cfg.probe_round:
        rows[probe_row(reward_cfg)] = probe_answers(population, listener, world.latents, world.clusters,
                                                    world.centroids, reward_cfg,
                                                    np.random.default_rng([seed, listener, 1]))
    return rows


def evaluate_new_listener(world: World, env_cfg: EnvConfig, reward_cfg: RewardConfig, cfg: NewListenerConfig,
                          learnt: Mapping[str, ListenerPolicy], seed: int) -> dict[str, Any]:
    """Every method on every held-out listener and budget (module docstring); the ``metrics.json["new_listener"]``
    structure.

    Args:
        world: the run's world (its held-out listeners).
        env_cfg: the run's env config (the evaluation env answers with the simulated listener).
        reward_cfg: the run's reward definition and propagation settings.
        cfg: the protocol.
        learnt: learnt policies by name (``ppo``), whose observation carries the listener's estimate.
        seed: the protocol's seed (logs, sessions, bootstrap).
    """
    listeners = [int(i) for i in world.meta["heldout_listeners"]][:cfg.max_listeners]
    if len(listeners) < 2:
        raise ConfigError(f"new_listener: {len(listeners)} held-out listener(s); the bootstrap needs two or more "
                          "(raise listeners.population or listeners.held_out_fraction)")
    env_cfg = dataclasses.replace(env_cfg, start_track=None)
    estimator = Estimator.of(world, reward_cfg, env_cfg.k, env_cfg.session_length)
    listener_obs = env_cfg.observation == "listener"
    factories = method_factories(world, cfg, reward_cfg, env_cfg, learnt, seed, estimator)
    rows: list[int | str] = [*cfg.budgets, *([probe_row(reward_cfg)] if cfg.probe_round else [])]
    # sums[m][r, l] and steps[m][r, l]: the expected reward summed over the steps of method m, row r, listener l
    sums = {m: np.zeros((len(rows), len(listeners))) for m in factories}
    steps = {m: np.zeros((len(rows), len(listeners))) for m in factories}
    seconds = dict.fromkeys(factories, 0.0)
    online = {name: cfg.online and factory().online for name, factory in factories.items()}
    for j, listener in enumerate(listeners):
        env = make_eval_env(world, env_cfg, [listener])
        logs = budget_logs(world, listener, cfg, reward_cfg, env_cfg.k, env_cfg.session_length, seed)
        for r, row in enumerate(rows):
            for name, factory in factories.items():
                began = time.perf_counter()
                policy, log = factory(), logs[row]
                for i in range(cfg.n_sessions):
                    estimate = estimator(log)
                    policy.start(log, estimate)
                    if listener_obs:
                        env.set_listener_estimate(estimate)
                    (episode,) = rollout(env, policy, 1, seed + 7919 * listener + i)
                    sums[name][r, j] += episode.expected.sum()
                    steps[name][r, j] += len(episode.expected)
                    if online[name]:
                        log = log + AnswerLog.of(episode.tracks, episode.pct, episode.liked)
                seconds[name] += time.perf_counter() - began
    return scores(rows, listeners, sums, steps, cfg, seed, seconds, online)


def scores(rows: list[int | str], listeners: list[int], sums: Mapping[str, np.ndarray],
           steps: Mapping[str, np.ndarray], cfg: NewListenerConfig, seed: int,
           seconds: Mapping[str, float], online: Mapping[str, bool]) -> dict[str, Any]:
    """The normalized scores pooled over listeners, their bootstrap intervals and the paired comparisons."""
    n = len(listeners)
    rng = np.random.default_rng([seed, 99])
    weights = np.stack([np.bincount(rng.integers(n, size=n), minlength=n) for _ in range(cfg.n_bootstrap)])
    weights = np.vstack([np.ones(n), weights])  # row 0: the sample itself

    def score(name: str) -> np.ndarray:  # (1 + n_bootstrap, rows)
        mean = {m: (weights @ sums[m].T) / (weights @ steps[m].T) for m in (name, "random", "oracle")}
        span = mean["oracle"] - mean["random"]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(np.abs(span) > 1e-12, (mean[name] - mean["random"]) / span, np.nan)

    def summary(values: np.ndarray) -> tuple[list[float | None], list[list[float] | None]]:
        point = [_number(v) for v in values[0]]
        boot = values[1:]
        ci = [None if not np.isfinite(boot[:, r]).all() else
              [float(np.percentile(boot[:, r], 2.5)), float(np.percentile(boot[:, r], 97.5))]
              for r in range(len(rows))]
        return point, ci

    by_method = {m: score(m) for m in sums}
    policies: dict[str, Any] = {}
    for name, values in by_method.items():
        point, ci = summary(values)
        mean = sums[name].sum(axis=1) / steps[name].sum(axis=1)
        policies[name] = {"normalized_score": point, "ci95": ci, "mean_expected_reward": [float(v) for v in mean],
                          "online": online[name],
                          "seconds": round(float(seconds[name]), 3)}
    comparisons = {}
    rivals = [("ppo", name) for name in by_method if name != "ppo" and name not in REFERENCES]
    for a, b in [*rivals, *COMPARED]:
        if a in by_method and b in by_method:
            difference, ci = summary(by_method[a] - by_method[b])
            comparisons[f"{a} - {b}"] = {"difference": difference, "ci95": ci}
    out: dict[str, Any] = {"budgets": rows, "n_listeners": n, "n_sessions": cfg.n_sessions, "online": cfg.online,
                           "policies": policies, "comparisons": comparisons}
    if ESTIMATE_BASELINE in by_method and "taste" in by_method:
        out["decomposition"] = decomposition(by_method, summary)
    if any(v is None for p in policies.values() for v in p["normalized_score"]):
        out["normalized_score_reason"] = "null where the oracle and random score the same (no scale)"
    return out


def decomposition(by_method: Mapping[str, np.ndarray],
                  summary: Callable[[np.ndarray], tuple[list[float | None], list[list[float] | None]]]
                  ) -> dict[str, Any]:
    """Where the score comes from, per budget (``metrics.json["new_listener"]["decomposition"]``): what the
    estimate identifies (``identified``: greedy on the population-prior posterior, and ``identified_share`` of
    ``taste``, the ceiling any number of answers could reach), what the policy adds on top (``policy_adds``: ppo
    minus that greedy) and what is left below the ceiling (``left``: taste minus ppo, or minus the greedy without
    a ppo), each a score with its bootstrap ci95."""
    identified, taste = by_method[ESTIMATE_BASELINE], by_method["taste"]
    point, ci = summary(identified)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = [_number(v) for v in (identified[0] / taste[0])]
    out: dict[str, Any] = {"estimate": ESTIMATE_BASELINE, "identified": {"score": point, "ci95": ci},
                           "identified_share": share}
    best = by_method.get("ppo", identified)
    if "ppo" in by_method:
        adds, adds_ci = summary(by_method["ppo"] - identified)
        out["policy_adds"] = {"difference": adds, "ci95": adds_ci}
    left, left_ci = summary(taste - best)
    out["left"] = {"difference": left, "ci95": left_ci}
    return out


def _number(value: float) -> float | None:
    """A float for strict JSON: None for NaN or infinity."""
    return float(value) if np.isfinite(value) else None
