"""Tests of music_rl/evaluation/ope.py: hand-computed estimates, coverage and error on a synthetic contextual bandit
with sessions, the reward model's choice by measurement, the sequential estimator on a small Markov decision process,
overlap, applicability and validation."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from music_rl.evaluation.ope import (
    ESTIMATORS,
    Z95,
    BanditLog,
    RidgeThenBoost,
    applicable,
    cross_fit,
    estimate,
    fit_reward_model,
    no_overlap,
    per_decision_is,
)

# --- hand-computed cases -----------------------------------------------------------------------------------------
# 2 sessions (7: 3 steps, 9: 2 steps), k = 2; the rows are given out of position order on purpose
HAND = BanditLog(
    session=np.array([7, 9, 7, 7, 9]),
    position=np.array([0, 1, 2, 1, 0]),
    action=np.array([0, 1, 0, 1, 1]),
    propensity=np.array([0.5, 0.5, 0.8, 0.5, 0.25]),
    reward=np.array([2.0, 1.0, 4.0, 0.0, 6.0]),
    context=np.zeros((5, 2, 1)),
)
HAND_TARGET = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [0.2, 0.8]])
HAND_Q = np.array([[1.0, 3.0], [1.0, 1.0], [4.0, 0.0], [2.0, 2.0], [5.0, 5.0]])


def clustered(s7: float, s9: float, n7: float, n9: float) -> tuple[float, float]:
    """A ratio of the two sessions' sums and its half-width, written out: G = 2, G / (G - 1) = 2."""
    value = (s7 + s9) / (n7 + n9)
    return value, Z95 * math.sqrt(2 * ((s7 - value * n7) ** 2 + (s9 - value * n9) ** 2)) / (n7 + n9)


def test_hand_computed_estimates() -> None:
    got = estimate(HAND, HAND_TARGET, HAND_Q)
    # weights pi(a_i)/p_i: session 7 (rows 0, 3, 2): 1/0.5 = 2, 0.5/0.5 = 1, 1/0.8 = 1.25; session 9 (rows 4, 1):
    # 0.8/0.25 = 3.2, 1/0.5 = 2
    ips = clustered(2 * 2 + 1 * 0 + 1.25 * 4, 3.2 * 6 + 2 * 1, 3, 2)  # (9 + 21.2) / 5 = 6.04
    snips = clustered(2 * 2 + 1 * 0 + 1.25 * 4, 3.2 * 6 + 2 * 1, 2 + 1 + 1.25, 3.2 + 2)  # 30.2 / 9.45
    # sum_a pi q: session 7: 1, 0.5*2 + 0.5*2 = 2, 4; session 9: 0.2*5 + 0.8*5 = 5, 1
    dm = clustered(1 + 2 + 4, 5 + 1, 3, 2)
    # + w (r - q(a)): session 7: 2*(2-1) = 2, 1*(0-2) = -2, 1.25*(4-4) = 0; session 9: 3.2*(6-5) = 3.2, 2*(1-1) = 0
    dr = clustered((1 + 2) + (2 - 2) + (4 + 0), (5 + 3.2) + (1 + 0), 3, 2)
    assert list(got) == list(ESTIMATORS)
    for name, (value, ci) in zip(ESTIMATORS, (ips, snips, dm, dr), strict=True):
        assert got[name].value == pytest.approx(value, rel=1e-12), name
        assert got[name].ci95 == pytest.approx(ci, rel=1e-12), name
    assert got["ips"].value == pytest.approx(6.04)
    assert got["ips"].ci95 == pytest.approx(Z95 * 9.12 / 2.5)  # residuals -9.12 and 9.12


def test_hand_computed_per_decision_is() -> None:
    # cumulative weights in position order: session 7: 2, 2*1 = 2, 2*1.25 = 2.5; session 9: 3.2, 3.2*2 = 6.4
    rewards7, rewards9 = 2 * 2 + 2 * 0 + 2.5 * 4, 3.2 * 6 + 6.4 * 1
    value, ci = clustered(rewards7, rewards9, 3, 2)
    got = per_decision_is(HAND, HAND_TARGET)
    assert got.value == pytest.approx(39.6 / 5) and got.value == pytest.approx(value)
    assert got.ci95 == pytest.approx(ci)
    # clipped at 3: session 9 becomes 3 * 6 + 3 * 1
    clipped = per_decision_is(HAND, HAND_TARGET, clip=3.0)
    assert clipped.value == pytest.approx(clustered(rewards7, 3 * 6 + 3 * 1, 3, 2)[0])
    assert clipped.ci95 == pytest.approx(clustered(rewards7, 3 * 6 + 3 * 1, 3, 2)[1])
    assert per_decision_is(HAND, HAND_TARGET, clip=6.4).value == pytest.approx(value)


def test_one_session_has_no_interval() -> None:
    one = BanditLog(HAND.session[[0, 2, 3]], HAND.position[[0, 2, 3]], HAND.action[[0, 2, 3]],
                    HAND.propensity[[0, 2, 3]], HAND.reward[[0, 2, 3]], HAND.context[[0, 2, 3]])
    got = estimate(one, HAND_TARGET[[0, 2, 3]], HAND_Q[[0, 2, 3]])
    assert all(e.ci95 is None for e in got.values())
    assert got["ips"].value == pytest.approx((4 + 5 + 0) / 3)
    assert per_decision_is(one, HAND_TARGET[[0, 2, 3]]).ci95 is None


def test_snips_undefined_without_weight() -> None:
    never = 1.0 - np.eye(2)[HAND.action]  # probability 0 on every logged action
    got = estimate(HAND, never, HAND_Q)
    assert got["ips"].value == 0.0 and math.isnan(got["snips"].value) and got["snips"].ci95 is None


# --- a synthetic contextual bandit with sessions -----------------------------------------------------------------
@dataclass
class Synthetic:
    """A uniform-logger log and what the test knows: the expected reward of every candidate."""

    log: BanditLog
    expected: np.ndarray  # (n, k): E[r | x_i, a], with the session's own effect
    like_feature: np.ndarray  # (n, k): the candidate's feature that drives likes


def expit(z: np.ndarray) -> np.ndarray:
    """The logistic function."""
    return 1.0 / (1.0 + np.exp(-z))


def synthetic(rng: np.random.Generator, sessions: int, steps: int = 20, k: int = 4, d: int = 8,
              linear: bool = False) -> Synthetic:
    """Sessions of ``steps`` steps: candidates drawn around the current track (d features), which becomes the
    chosen one; reward pct + 10 * liked, pct near a sigmoid of the similarity to the current track and a direction,
    liked Bernoulli with a probability of the candidate's features and a session effect (so rewards of a session are
    correlated); a reward std of about 2.4. Features per candidate: its own, the current track's, their difference,
    position / steps (f = 3d + 1). ``linear``: the expected reward is instead linear in those features, plus
    Gaussian noise."""
    direction = np.array([0.9, -0.6, 0.5, 0.0, 0.3, 0.0, -0.4, 0.2])[:d]
    beta = np.random.default_rng(5).normal(0.0, 0.6, 3 * d + 1)
    current = rng.normal(size=(sessions, d))
    mood = rng.normal(0.0, 0.5, sessions)
    rows = np.arange(sessions)
    parts: dict[str, list[np.ndarray]] = {"context": [], "expected": [], "action": [], "reward": [], "like": []}
    for t in range(steps):
        cand = current[:, None, :] + 0.8 * rng.normal(size=(sessions, k, d))
        context = np.concatenate([cand, np.broadcast_to(current[:, None, :], cand.shape), cand - current[:, None, :],
                                  np.full((sessions, k, 1), t / steps)], axis=-1)
        action = rng.integers(0, k, sessions)
        if linear:
            expected = 2.0 + context @ beta + mood[:, None]
            reward = expected[rows, action] + rng.normal(0.0, 2.4, sessions)
        else:
            pct = expit(1.0 - 2.0 * ((cand - current[:, None, :]) ** 2).mean(-1) + 0.8 * np.tanh(cand @ direction))
            like = expit(-2.2 + 1.5 * cand[..., 0] - np.abs(cand[..., 1]) + mood[:, None])
            expected = pct + 10.0 * like
            reward = (pct[rows, action] + rng.uniform(-0.3, 0.3, sessions)
                      + 10.0 * (rng.random(sessions) < like[rows, action]))
        for key, value in zip(parts, (context, expected, action, reward, cand[..., 0]), strict=True):
            parts[key].append(value)
        current = cand[rows, action]
    stack = {key: np.stack(value, axis=1).reshape(sessions * steps, *value[0].shape[1:])
             for key, value in parts.items()}
    log = BanditLog(session=np.repeat(np.arange(sessions), steps), position=np.tile(np.arange(steps), sessions),
                    action=stack["action"], propensity=np.full(sessions * steps, 1.0 / k), reward=stack["reward"],
                    context=stack["context"])
    return Synthetic(log, stack["expected"], stack["like"])


def one_hot(index: np.ndarray, k: int) -> np.ndarray:
    """A deterministic target choosing ``index`` at every step."""
    return np.eye(k)[index]


def targets(s: Synthetic) -> dict[str, np.ndarray]:
    """Deterministic and stochastic targets over the candidates."""
    k = s.expected.shape[1]
    best = one_hot(s.expected.argmax(1), k)
    logits = s.expected - s.expected.max(1, keepdims=True)
    return {
        "best": best,
        "worst": one_hot(s.expected.argmin(1), k),
        "first": one_hot(np.zeros(len(best), dtype=np.int64), k),
        "like_feature": one_hot(s.like_feature.argmax(1), k),
        "softmax": np.exp(logits) / np.exp(logits).sum(1, keepdims=True),
        "epsilon_greedy": 0.7 * best + 0.3 / k,
    }


def subset(log: BanditLog, rows: slice) -> BanditLog:
    """The steps ``rows`` of a log."""
    return BanditLog(log.session[rows], log.position[rows], log.action[rows], log.propensity[rows], log.reward[rows],
                     log.context[rows])


REPLICATIONS, SESSIONS, STEPS = 100, 50, 20


@pytest.fixture(scope="module")
def replications() -> dict[str, dict[str, np.ndarray]]:
    """For each target: its value over the population of sessions (``population``: 10,000 independent sessions), its
    value over each log's own states (``truth``), and every estimator's value and half-width, over ``REPLICATIONS``
    independent logs of ``SESSIONS`` sessions (1,000 steps each); DM and DR with the cross-fitted reward model."""
    population: dict[str, list[float]] = {}
    rng = np.random.default_rng(2024)
    for _ in range(4):
        draw = synthetic(rng, 2500, STEPS)
        for name, target in targets(draw).items():
            population.setdefault(name, []).append(float((target * draw.expected).sum(1).mean()))
    full = synthetic(rng, REPLICATIONS * SESSIONS, STEPS)
    out: dict[str, dict[str, list[float]]] = {}
    size = SESSIONS * STEPS
    for r in range(REPLICATIONS):
        rows = slice(r * size, (r + 1) * size)
        log = subset(full.log, rows)
        rep = Synthetic(log, full.expected[rows], full.like_feature[rows])
        q_hat = fit_reward_model(log, seed=r)
        for name, target in targets(rep).items():
            cols = out.setdefault(name, {"population": [float(np.mean(population[name]))] * REPLICATIONS})
            cols.setdefault("truth", []).append(float((target * rep.expected).sum(1).mean()))
            for est, e in estimate(log, target, q_hat).items():
                cols.setdefault(est, []).append(e.value)
                cols.setdefault(f"{est}_ci95", []).append(e.ci95)
    return {name: {key: np.array(v, dtype=np.float64) for key, v in cols.items()} for name, cols in out.items()}


@pytest.mark.parametrize("estimator", ["ips", "snips", "dr"])
def test_coverage_and_accuracy(replications: dict[str, dict[str, np.ndarray]], estimator: str) -> None:
    """Nominal coverage of the population value; conservative for the value over the logged states (the clustered
    half-width also counts the sampling of the sessions' states); unbiased; errors about as wide as the intervals."""
    for name, cols in replications.items():
        half_width = cols[f"{estimator}_ci95"]
        error = cols[estimator] - cols["population"]
        assert 0.85 <= np.mean(np.abs(error) <= half_width) <= 0.99, (name, estimator)
        own = cols[estimator] - cols["truth"]
        assert np.mean(np.abs(own) <= half_width) >= 0.85, (name, estimator)
        assert abs(own.mean()) <= 3 * own.std(ddof=1) / math.sqrt(REPLICATIONS), (name, estimator)
        assert np.sqrt(np.mean(error**2)) <= 1.3 * np.mean(half_width) / Z95, (name, estimator)


def test_dr_beats_ips(replications: dict[str, dict[str, np.ndarray]]) -> None:
    """With the cross-fitted model (which learns much of this reward: test_reward_model_choice), DR's error on the
    value over the logged states is clearly below IPS's for every target (0.5 to 0.75 of it when written)."""
    for name, cols in replications.items():
        rmse = {est: np.sqrt(np.mean((cols[est] - cols["truth"]) ** 2)) for est in ("ips", "dr")}
        assert rmse["dr"] < 0.85 * rmse["ips"], (name, rmse)


def test_reward_model_choice() -> None:
    """The measurement behind :class:`RidgeThenBoost`: cross-fitted error against the known expected reward of every
    candidate, on a nonlinear reward (where ridge alone fails) and a linear one (where boosting alone fails)."""
    candidates = {
        "ridge": lambda seed: make_pipeline(StandardScaler(), Ridge(alpha=1.0)),
        "boost": lambda seed: HistGradientBoostingRegressor(random_state=seed),
        "ridge_then_boost": RidgeThenBoost,
    }
    for linear in (False, True):
        s = synthetic(np.random.default_rng(7), 250, linear=linear)
        rmse = {name: np.sqrt(np.mean((cross_fit(s.log, make, seed=0) - s.expected) ** 2))
                for name, make in candidates.items()}
        best_other, worst_other = sorted([rmse["ridge"], rmse["boost"]])
        assert rmse["ridge_then_boost"] <= 1.25 * best_other, (linear, rmse)
        assert rmse["ridge_then_boost"] <= 0.6 * worst_other, (linear, rmse)


def test_reward_model_cross_fitted_and_deterministic() -> None:
    s = synthetic(np.random.default_rng(3), 30)
    q_hat = fit_reward_model(s.log, seed=1)
    assert q_hat.shape == (s.log.n, 4) and np.isfinite(q_hat).all()
    assert np.array_equal(q_hat, fit_reward_model(s.log, seed=1))
    assert not np.array_equal(q_hat, fit_reward_model(s.log, seed=2))
    # changing one session's rewards leaves that session's predictions as they were: no model that predicts them
    # saw them
    changed = s.log.session == 4
    other = BanditLog(s.log.session, s.log.position, s.log.action, s.log.propensity,
                      np.where(changed, s.log.reward + 100.0, s.log.reward), s.log.context)
    again = fit_reward_model(other, seed=1)
    assert np.array_equal(again[changed], q_hat[changed])
    assert not np.array_equal(again[~changed], q_hat[~changed])
    with pytest.raises(ValueError, match="at least 3 sessions"):
        fit_reward_model(subset(s.log, slice(0, 40)), seed=0, folds=3)
    with pytest.raises(ValueError, match="folds >= 2"):
        fit_reward_model(s.log, seed=0, folds=1)


# --- the sequential estimator on a small Markov decision process -------------------------------------------------
MEAN = np.array([[1.0, 3.0], [4.0, 0.0]])  # expected reward of action a in state s (the previous action)


def mdp_truth(target: np.ndarray, steps: int) -> float:
    """The target's exact mean reward per step over its own sessions (``target[s]``: its probabilities in state s;
    sessions start in state 0)."""
    state, total = np.array([1.0, 0.0]), 0.0
    for _ in range(steps):
        joint = state[:, None] * target  # P(s, a)
        total += float((joint * MEAN).sum())
        state = joint.sum(0)  # the next state is the action
    return total / steps


def mdp_log(rng: np.random.Generator, sessions: int, steps: int) -> tuple[BanditLog, np.ndarray]:
    """A uniform logger's sessions and each step's state."""
    actions = rng.integers(0, 2, (sessions, steps))
    states = np.concatenate([np.zeros((sessions, 1), dtype=np.int64), actions[:, :-1]], axis=1)
    rewards = MEAN[states, actions] + rng.normal(0.0, 1.0, (sessions, steps))
    log = BanditLog(np.repeat(np.arange(sessions), steps), np.tile(np.arange(steps), sessions), actions.ravel(),
                    np.full(sessions * steps, 0.5), rewards.ravel(), np.eye(2)[states.ravel()][:, None, :].repeat(2, 1))
    return log, states.ravel()


@pytest.mark.parametrize("policy", [[[0.0, 1.0], [0.0, 1.0]], [[0.2, 0.8], [0.7, 0.3]]])
def test_per_decision_is_on_own_sessions(policy: list[list[float]]) -> None:
    target, steps, reps = np.array(policy), 4, 200
    truth = mdp_truth(target, steps)
    rng = np.random.default_rng(11)
    values, covered = [], []
    for _ in range(reps):
        log, states = mdp_log(rng, 100, steps)
        got = per_decision_is(log, target[states])
        values.append(got.value)
        covered.append(abs(got.value - truth) <= got.ci95)
    assert abs(np.mean(values) - truth) <= 3 * np.std(values, ddof=1) / math.sqrt(reps)
    assert 0.85 <= np.mean(covered) <= 0.99
    # the logged states differ from the target's own: IPS over the logged states estimates another value
    log, states = mdp_log(rng, 2000, steps)
    logged_truth = float((target[states] * MEAN[states]).sum(1).mean())
    if policy[0] == [0.0, 1.0]:
        assert truth == pytest.approx(0.75) and abs(logged_truth - truth) > 1.0
        assert estimate(log, target[states], np.zeros((log.n, 2)))["ips"].value == pytest.approx(logged_truth, abs=0.2)


def test_per_decision_is_needs_whole_sessions() -> None:
    gap = BanditLog(HAND.session[1:], HAND.position[1:], HAND.action[1:], HAND.propensity[1:], HAND.reward[1:],
                    HAND.context[1:])  # session 7 without its position 0
    with pytest.raises(ValueError, match="session 7 has a gap"):
        per_decision_is(gap, HAND_TARGET[1:])
    with pytest.raises(ValueError, match="clip must be > 0"):
        per_decision_is(HAND, HAND_TARGET, clip=0.0)


# --- overlap, applicability, validation --------------------------------------------------------------------------
def test_no_overlap() -> None:
    s = synthetic(np.random.default_rng(5), 3, steps=5)
    assert no_overlap(s.log, np.full((s.log.n, 4), 0.25)) is None
    assert no_overlap(s.log, one_hot(s.expected.argmax(1), 4)) is None  # uniform logger: every candidate possible
    deterministic = BanditLog(s.log.session, s.log.position, s.log.action, np.ones(s.log.n), s.log.reward,
                              s.log.context)
    assert no_overlap(deterministic, one_hot(s.log.action, 4)) is None  # the target does what the logger did
    other = one_hot((s.log.action + 1) % 4, 4)
    line = no_overlap(deterministic, other)
    assert line is not None and "every propensity is 1" in line and "15 of 15 steps" in line
    mixed_propensity = np.where(np.arange(s.log.n) < 3, 1.0, 0.25)
    mixed = BanditLog(s.log.session, s.log.position, s.log.action, mixed_propensity, s.log.reward, s.log.context)
    line = no_overlap(mixed, np.full((s.log.n, 4), 0.25))
    assert line is not None and "deterministic on 3 of 15 steps" in line and "on 3 of 15 steps" in line
    line = no_overlap(s.log, other)
    assert line is not None and "probability 0 to every one of the 15 logged actions" in line
    assert "\n" not in line


def test_applicable() -> None:
    assert applicable(True, True) == (list(ESTIMATORS), None)
    names, why = applicable(True, False)
    assert names == ["dm"] and "propensities" in why and "candidates" not in why
    names, why = applicable(False, True)
    assert names == ["dm"] and "the candidates shown" in why and "propensities" not in why
    names, why = applicable(False, False)
    assert names == ["dm"] and "the candidates shown and the logging policy's propensities" in why
    for has in ((True, False), (False, True), (False, False)):
        assert "\n" not in applicable(*has)[1]


def bad_log(**change: object) -> BanditLog:
    """The hand log with some fields replaced."""
    fields = {name: getattr(HAND, name) for name in ("session", "position", "action", "propensity", "reward",
                                                      "context")}
    return BanditLog(**{**fields, **change})


@pytest.mark.parametrize(("change", "message"), [
    ({"session": np.array([7.0, 9, 7, 7, 9])}, r"session must hold integers"),
    ({"action": np.array([0, 1, 0, 1])}, r"action must have shape \(5,\)"),
    ({"action": np.array([0, 1, 2, 1, 1])}, r"action must be in 0..1: 1 of 5 steps are not \(first: step 2, 2\)"),
    ({"position": np.array([0, 1, 2, -1, 0])}, r"position must be >= 0"),
    ({"position": np.array([0, 1, 2, 2, 0])}, r"pairs must be unique: 1 repeated"),
    ({"propensity": np.array([0.5, 0.5, 0.0, 0.5, 0.25])}, r"propensity must be in \(0, 1\]"),
    ({"propensity": np.array([0.5, 1.5, 0.8, 0.5, 0.25])}, r"propensity must be in \(0, 1\]"),
    ({"reward": np.array([2.0, np.nan, 4, 0, 6])}, r"reward must be finite"),
    ({"reward": np.array(["a", "b", "c", "d", "e"])}, r"reward must hold real numbers"),
    ({"context": np.zeros((5, 2))}, r"context must be a non-empty \(n, k, f\) array"),
    ({"context": np.full((5, 2, 1), np.inf)}, r"context must be finite"),
])
def test_bandit_log_validation(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bad_log(**change)


def test_target_and_model_validation() -> None:
    with pytest.raises(ValueError, match=r"target must have shape \(5, 2\)"):
        estimate(HAND, HAND_TARGET[:, :1], HAND_Q)
    with pytest.raises(ValueError, match="target rows must sum to 1"):
        estimate(HAND, HAND_TARGET * 0.5, HAND_Q)
    with pytest.raises(ValueError, match="target must hold probabilities >= 0"):
        no_overlap(HAND, HAND_TARGET * np.array([-1.0, 3.0]))
    with pytest.raises(ValueError, match=r"q_hat must be a finite \(5, 2\) array"):
        estimate(HAND, HAND_TARGET, HAND_Q[:4])
