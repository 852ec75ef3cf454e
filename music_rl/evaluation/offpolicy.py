"""Off-policy evaluation (OPE) of a run's policies on a log; :mod:`music_rl.evaluation.ope` holds the estimators.

Two kinds of log:

- **generated** (:func:`explore`): every run plays ``eval.ope_log_steps`` steps of its own listener with a
  stochastic behaviour policy that gives every candidate a non-zero probability (:class:`Behaviour`), and
  records, besides the log itself, what the simulator knows exactly: the listener's expected reward of every
  candidate at every logged state. Each evaluated policy's ``truth`` (its expected reward averaged over the
  logged states, what a per-step estimator targets) is then known, and the estimators' errors are measured;
- **replayed** (:func:`replay`): a log written earlier (by :func:`explore`, ``music-rl simulate``, a cold start)
  or brought by the user, whose steps are rebuilt in the run's world: the session from its start track, the
  candidates checked against the logged ones, the observations of the run's env (``MusicRecEnv.replay``).
  No truth then, and no oracle (the listener's state is not in a log).

The policies estimated: ``ppo`` (as it recommends: the most probable candidate), ``ppo_sample`` (drawing from
its probabilities), ``random``, ``nearest``, ``greedy`` and, on generated logs, ``oracle``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from stable_baselines3.common.policies import ActorCriticPolicy

from envs.music_env import EnvConfig, MusicRecEnv
from envs.rewards import reward
from envs.world import World
from music_rl.core.errors import FeedbackError
from music_rl.data.feedback import write_feedback
from music_rl.evaluation.baselines import greedy_policy, nearest_policy
from music_rl.evaluation.evaluate import Behaviour, EvalConfig, make_eval_env
from music_rl.evaluation.ope import (
    ESTIMATORS,
    BanditLog,
    Estimate,
    applicable,
    estimate,
    fit_reward_model,
    no_overlap,
    per_decision_is,
)
from music_rl.learners.policies import candidate_distributions

Probabilities = Callable[[np.ndarray, MusicRecEnv], np.ndarray]
"""A policy as the probability of each current candidate, given the observation and the env."""


def one_hot(choose: Callable[[np.ndarray, MusicRecEnv], int]) -> Probabilities:
    """A deterministic policy as probabilities: 1 on the candidate it chooses."""
    def probabilities(obs: np.ndarray, env: MusicRecEnv) -> np.ndarray:
        out = np.zeros(len(env.current_candidates))
        out[choose(obs, env)] = 1.0
        return out

    return probabilities


def uniform(obs: np.ndarray, env: MusicRecEnv) -> np.ndarray:
    """Every candidate alike (the random policy)."""
    k = len(env.current_candidates)
    return np.full(k, 1.0 / k)


def behaviour_probabilities(behaviour: str, epsilon: float) -> Probabilities:
    """The logging policy ``behaviour`` (:class:`music_rl.evaluation.evaluate.Behaviour`): ``uniform``, each of the k
    candidates with probability 1/k (the largest importance weight is k); ``epsilon_greedy``, the candidate with
    the highest propagated reward r_hat (what the logs know: a plausible production logger) with probability
    1 - epsilon, else one of the k at random."""
    if behaviour == Behaviour.uniform:
        return uniform
    greedy = one_hot(greedy_policy)
    return lambda obs, env: (1.0 - epsilon) * greedy(obs, env) + epsilon * uniform(obs, env)


def target_policies() -> dict[str, Probabilities]:
    """The baselines OPE estimates step by step (module docstring). PPO's targets come in one batch when the
    log is complete (:func:`policy_targets`), and the oracle's from the truth where a log has it."""
    return {"random": uniform, "nearest": one_hot(nearest_policy), "greedy": one_hot(greedy_policy)}


def policy_targets(policy: ActorCriticPolicy, observations: np.ndarray) -> dict[str, np.ndarray]:
    """PPO's targets at every logged observation (n, obs_dim): ``ppo`` (the deterministic policy: its most
    probable candidate, one-hot) and ``ppo_sample`` (its distribution), (n, k) each."""
    probs = candidate_distributions(policy, observations)
    return {"ppo": argmax_one_hot(probs), "ppo_sample": probs}


def argmax_one_hot(scores: np.ndarray) -> np.ndarray:
    """(n, k): 1 on each row's highest score."""
    out = np.zeros_like(scores, dtype=np.float64)
    out[np.arange(len(scores)), scores.argmax(axis=1)] = 1.0
    return out


def step_context(world: World, current: int, candidates: np.ndarray, position: int, length: int) -> np.ndarray:
    """The reward model's features of each candidate at a step, (k, f): its 11 audio features, their difference
    from the current track's, its latent's offset from the current track's, its rank among the candidates and
    the step's place in the session."""
    x, z = world.features, world.latents
    k = len(candidates)
    rank = np.arange(k, dtype=np.float32)[:, None] / max(k - 1, 1)
    place = np.full((k, 1), position / max(length, 1), dtype=np.float32)
    return np.hstack([x[candidates], x[candidates] - x[current], z[candidates] - z[current], rank, place])


@dataclass
class LoggedRun:
    """A log as OPE reads it: the bandit view, each target's probabilities and, for generated logs, the truth."""

    bandit: BanditLog
    targets: dict[str, np.ndarray]  # (n, k) probabilities of every candidate, per policy
    expected: np.ndarray | None  # (n, k) the listener's expected rewards (generated logs only)
    frame: pd.DataFrame  # the log in the feedback schema (with from_track_id, candidates, action_prob)


class _Recorder:
    """Collects a log's steps (feedback rows and their arrays) as they are played or replayed: :meth:`decide`
    before the env moves (what was shown, the targets' probabilities), :meth:`answer` after it."""

    def __init__(self, policy: ActorCriticPolicy, targets: Mapping[str, Probabilities]) -> None:
        self.policy, self.targets = policy, targets
        self.rows: list[tuple[Any, ...]] = []
        self.arrays: dict[str, list[Any]] = {k: [] for k in ("session", "position", "action", "propensity",
                                                             "reward", "context", "expected", "obs")}
        self.probs: dict[str, list[np.ndarray]] = {name: [] for name in targets}
        self._pending: tuple[Any, ...] = ()

    def decide(self, env: MusicRecEnv, obs: np.ndarray, session: int, position: int, action: int,
               propensity: float, expected: np.ndarray | None) -> None:
        """A decision about to be played: its context, every target's probabilities."""
        ids, candidates = env.world.track_ids(), env.current_candidates
        for name, probabilities in self.targets.items():
            self.probs[name].append(probabilities(obs, env))
        values = {"session": session, "position": position, "action": action, "propensity": propensity,
                  "expected": expected, "obs": obs,
                  "context": step_context(env.world, env.track, candidates, position, env.cfg.session_length)}
        for key, value in values.items():
            self.arrays[key].append(value)
        self._pending = (f"listener-{env.listener}", f"explore-{session}", position + 1,
                         ids[int(candidates[action])], ids[env.track], " ".join(ids[int(c)] for c in candidates),
                         propensity)

    def answer(self, pct: float, liked: int, step_reward: float) -> None:
        """The listener's answer to the pending decision, and its (raw) reward."""
        user, session, position, track, source, shown, propensity = self._pending
        self.arrays["reward"].append(step_reward)
        self.rows.append((user, session, position, track, pct, liked, source, shown, propensity))

    def result(self) -> LoggedRun:
        """The collected log."""
        a = self.arrays
        bandit = BanditLog(session=np.asarray(a["session"], dtype=np.int64),
                           position=np.asarray(a["position"], dtype=np.int64),
                           action=np.asarray(a["action"], dtype=np.int64),
                           propensity=np.asarray(a["propensity"], dtype=np.float64),
                           reward=np.asarray(a["reward"], dtype=np.float64),
                           context=np.asarray(a["context"], dtype=np.float32))
        expected = None if a["expected"][0] is None else np.asarray(a["expected"], dtype=np.float64)
        frame = pd.DataFrame(self.rows, columns=["user_id", "session_id", "position", "track_id",
                                                 "percentage_listened", "liked", "from_track_id", "candidates",
                                                 "action_prob"])
        targets = {**policy_targets(self.policy, np.asarray(a["obs"])),
                   **{n: np.asarray(p) for n, p in self.probs.items()}}
        if expected is not None:
            targets["oracle"] = argmax_one_hot(expected)
        return LoggedRun(bandit, targets, expected, frame)


def explore(world: World, env_cfg: EnvConfig, policy: ActorCriticPolicy, behaviour: str, epsilon: float,
            n_steps: int, seed: int) -> LoggedRun:
    """``n_steps`` steps of the world's listener logged with the behaviour policy, sessions from random start
    tracks, with the truth (the listener's expected rewards) and every target's probabilities."""
    env = make_eval_env(world, env_cfg, None)
    log_policy = behaviour_probabilities(behaviour, epsilon)
    rng = np.random.default_rng(seed)
    recorder = _Recorder(policy, target_policies())
    session, steps = 0, 0
    while steps < n_steps:
        obs, _ = env.reset(seed=seed + session)
        for position in range(env_cfg.session_length):
            mu = log_policy(obs, env)
            action = int(rng.choice(len(mu), p=mu))
            recorder.decide(env, obs, session, position, action, float(mu[action]), env.candidate_expected_rewards())
            obs, _, terminated, truncated, info = env.step(action)
            recorder.answer(info["percentage_listened"], info["liked"], info["reward"])
            steps += 1
            if terminated or truncated or steps >= n_steps:
                break
        session += 1
    return recorder.result()


def replay(world: World, env_cfg: EnvConfig, log: pd.DataFrame, policy: ActorCriticPolicy,
           source: str) -> LoggedRun:
    """A log with candidates and propensities (from_track_id, candidates, action_prob) rebuilt in the run's
    world, session by session in position order; every target's probabilities at every step.

    Raises:
        FeedbackError: a step whose candidates are not the ones the run's world gives there (the log of another
            world or config), or a session without its start track.
    """
    env = make_eval_env(world, env_cfg, None)
    index = world.track_ids().to_index()
    recorder = _Recorder(policy, target_policies())
    ordered = log.sort_values(["user_id", "session_id", "position"], kind="stable")
    row: Any  # a log row: pandas types its fields as any scalar
    for session, (_, steps) in enumerate(ordered.groupby(["user_id", "session_id"], sort=False)):
        first = steps.iloc[0]
        start = index.get_indexer(pd.Index([first["from_track_id"]]))[0]
        if start < 0:
            raise FeedbackError(f"{source}: session {first['session_id']!r}: its first step's from_track_id "
                                f"{first['from_track_id']!r} (its start track) is not in the catalog: it cannot be "
                                "replayed")
        obs, _ = env.reset(seed=session, options={"start_track": int(start)})
        for position, row in enumerate(steps.itertuples(index=False)):
            shown = index.get_indexer(pd.Index(row.candidates.split()))
            if list(shown) != env.current_candidates.tolist():
                raise FeedbackError(f"{source}: session {row.session_id!r} position {row.position}: the logged "
                                    f"candidates are not the run's (k={env.cfg.k}, no_repeat={env.cfg.no_repeat}): a "
                                    "log of another world or config")
            action = int(np.flatnonzero(shown == index.get_indexer(pd.Index([row.track_id]))[0])[0])
            recorder.decide(env, obs, session, position, action, float(row.action_prob), None)
            obs, step_reward, truncated, info = env.replay(action, row.percentage_listened, row.liked)
            recorder.answer(row.percentage_listened, row.liked, info["reward"])
            if truncated:
                break
    return recorder.result()


def estimates(run: LoggedRun, seed: int, truth_on_policy: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Every estimator's value and 95% half-width for every target, with the truth where the log has it.

    Returns the ``ope`` structure of ``metrics.json`` (``log_steps``, ``policies``: per policy ``truth``,
    ``truth_on_policy``, ``ips``, ``snips``, ``dm``, ``dr``, ``pdis`` (per-decision importance sampling of the
    policy's own sessions, compared with ``truth_on_policy``), ``no_overlap`` where the log says nothing about
    the policy; ``rank_correlation``: per estimator, Spearman's rho over the policies between its values and
    ``truth_on_policy``).
    """
    q_hat = fit_reward_model(run.bandit, seed)
    policies: dict[str, Any] = {}
    for name, target in run.targets.items():
        entry: dict[str, Any] = {key: _entry(e) for key, e in estimate(run.bandit, target, q_hat).items()}
        entry["pdis"] = _entry(per_decision_is(run.bandit, target))
        if run.expected is not None:
            entry["truth"] = float((target * run.expected).sum(axis=1).mean())
        if truth_on_policy is not None and name in truth_on_policy:
            entry["truth_on_policy"] = truth_on_policy[name]
        reason = no_overlap(run.bandit, target)
        if reason:
            entry["no_overlap"] = reason
        policies[name] = entry
    return {"log_steps": int(len(run.bandit.action)), "policies": policies,
            "rank_correlation": rank_correlation(policies)}


def rank_correlation(policies: Mapping[str, Mapping[str, Any]]) -> dict[str, float | None]:
    """Spearman's rho over the policies between each estimator's values and ``truth_on_policy`` (None with
    fewer than three policies that have both, or a constant side)."""
    from scipy import stats

    out: dict[str, float | None] = {}
    for est in (*ESTIMATORS, "pdis"):
        pairs = [(p[est]["value"], p["truth_on_policy"]) for p in policies.values()
                 if est in p and "truth_on_policy" in p and p[est]["value"] is not None]
        if len(pairs) < 3 or len({a for a, _ in pairs}) < 2 or len({b for _, b in pairs}) < 2:
            out[est] = None
            continue
        out[est] = float(stats.spearmanr(*zip(*pairs, strict=True)).statistic)
    return out



def check_estimators(world: World, env_cfg: EnvConfig, policy: ActorCriticPolicy, eval_cfg: EvalConfig,
                     truth_on_policy: Mapping[str, float], seed: int, log_path: Path) -> dict[str, Any]:
    """A run's check of its estimators: an exploration log of ``eval_cfg.ope_log_steps`` steps of the world's
    listener (saved to ``log_path``, replayable), every target estimated on it against the truth; the ``ope``
    entry of ``metrics.json`` (:func:`estimates`, with ``behaviour``)."""
    logged = explore(world, env_cfg, policy, eval_cfg.ope_behaviour, eval_cfg.ope_epsilon, eval_cfg.ope_log_steps,
                     seed)
    write_feedback(logged.frame, log_path)
    behaviour = (f"{eval_cfg.ope_behaviour} (epsilon {eval_cfg.ope_epsilon})"
                 if eval_cfg.ope_behaviour == Behaviour.epsilon_greedy else str(eval_cfg.ope_behaviour))
    return {"behaviour": behaviour, "log": log_path.name, **estimates(logged, seed, truth_on_policy)}


def replay_played(world: World, env_cfg: EnvConfig, log: pd.DataFrame, policy: ActorCriticPolicy) -> LoggedRun:
    """A log of played tracks only (no candidates, no propensities: the Spotify MSSD's) rebuilt in the run's
    world: at each step after a session's first, the state is the tracks played before, the run's candidates
    there are the alternatives, and the logged track is candidate 0 of the :class:`BanditLog` (which the
    targets never choose: they choose among the run's candidates). Only DM reads it."""
    env = make_eval_env(world, env_cfg, None)
    index = world.track_ids().to_index()
    targets = target_policies()
    arrays: dict[str, list[Any]] = {k: [] for k in ("session", "position", "reward", "context", "obs")}
    probs: dict[str, list[np.ndarray]] = {name: [] for name in targets}
    ordered = log.sort_values(["user_id", "session_id", "position"], kind="stable")
    row: Any  # a log row: pandas types its fields as any scalar
    for session, (_, steps) in enumerate(ordered.groupby(["user_id", "session_id"], sort=False)):
        tracks = index.get_indexer(pd.Index(steps["track_id"].astype(str)))
        obs, _ = env.reset(seed=session, options={"start_track": int(tracks[0])})
        for position, (track, row) in enumerate(zip(tracks[1:], steps.iloc[1:].itertuples(index=False),
                                                    strict=True)):
            if env.steps_left <= 0 or track in env.excluded_tracks():
                break  # beyond the run's session length, or a repeat the run's env would never offer
            shown = np.concatenate([[track], env.current_candidates])
            for name, probabilities in targets.items():
                probs[name].append(np.concatenate([[0.0], probabilities(obs, env)]))
            arrays["session"].append(session)
            arrays["position"].append(position)
            arrays["obs"].append(obs)
            arrays["context"].append(step_context(world, env.track, shown, position, env_cfg.session_length))
            arrays["reward"].append(reward(row.percentage_listened, row.liked, env.reward_definition))
            obs, *_ = env.replay_track(int(track), row.percentage_listened, row.liked)
    if not arrays["session"]:
        raise FeedbackError("the log has no step after a session's first track that the run's world can replay")
    n = len(arrays["session"])
    bandit = BanditLog(session=np.asarray(arrays["session"], dtype=np.int64),
                       position=np.asarray(arrays["position"], dtype=np.int64),
                       action=np.zeros(n, dtype=np.int64), propensity=np.ones(n),
                       reward=np.asarray(arrays["reward"], dtype=np.float64),
                       context=np.asarray(arrays["context"], dtype=np.float32))
    policies = {name: np.hstack([np.zeros((n, 1)), p])  # the logged track, column 0, is never a target's choice
                for name, p in policy_targets(policy, np.asarray(arrays["obs"])).items()}
    return LoggedRun(bandit, {**policies, **{name: np.asarray(p) for name, p in probs.items()}}, None, log)


def estimate_log(world: World, env_cfg: EnvConfig, policy: ActorCriticPolicy, log: pd.DataFrame,
                 source: str, seed: int) -> dict[str, Any]:
    """The run's policies estimated off-policy on a log joined to its catalog, with no simulator behind it:
    ``{"log_steps", "policies": {name: {estimator: {"value", "ci95"}}}}`` and ``"not_applicable"`` (one line)
    for the estimators the log cannot feed (a log without candidates or propensities: DM only)."""
    has_candidates = "candidates" in log and bool((log["candidates"].astype(str) != "").all())
    has_propensities = "action_prob" in log and bool(log["action_prob"].notna().all())
    usable, why_not = applicable(has_candidates, has_propensities)
    if has_candidates and has_propensities:
        found = estimates(replay(world, env_cfg, log, policy, source), seed)
    else:
        logged = replay_played(world, env_cfg, log, policy)
        q_hat = fit_reward_model(logged.bandit, seed)
        found = {"log_steps": logged.bandit.n, "policies": {
            name: {"dm": _entry(estimate(logged.bandit, target, q_hat)["dm"])}
            for name, target in logged.targets.items()}}
    out: dict[str, Any] = {"log": source, "log_steps": found["log_steps"], "policies": found["policies"]}
    if why_not:
        out["not_applicable"] = why_not
    return out


def estimate_log_file(world: World, env_cfg: EnvConfig, policy: ActorCriticPolicy, log_path: str | Path,
                      seed: int) -> dict[str, Any]:
    """:func:`estimate_log` of a log file (``music-rl evaluate log=...``), read and joined to the run's catalog
    (rows of unknown tracks reported in ``join``)."""
    from music_rl.data.log_import import FeedbackConfig, read_log

    joined, report = read_log(FeedbackConfig(path=str(log_path)), world.track_ids())
    return {"join": report.line(log_path), **estimate_log(world, env_cfg, policy, joined, str(log_path), seed)}


def _entry(e: Estimate) -> dict[str, float | None]:
    """An estimate as JSON: its value (None when undefined) and 95% half-width."""
    value = e.value if np.isfinite(e.value) else None
    return {"value": value, "ci95": e.ci95 if value is not None else None}
