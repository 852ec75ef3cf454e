"""Off-policy evaluation (OPE) of a target policy from logged recommendation decisions.

A log holds n steps grouped in G sessions (session g has n_g steps). At step i the listener is at state x_i, k
candidates are shown, the logging (behaviour) policy chose candidate a_i with known probability p_i = mu(a_i | x_i)
and the listener's reward r_i was realised. The target gives pi(a | x_i) for every candidate. The quantity
estimated is the target's mean reward per step over the logged states,

    V = (1/n) sum_i sum_a pi(a | x_i) E[r | x_i, a].

With importance weights w_i = pi(a_i | x_i) / p_i and a reward model q(i, a) (:func:`fit_reward_model`):

    IPS    V = (1/n) sum_i w_i r_i
    SNIPS  V = sum_i w_i r_i / sum_i w_i
    DM     V = (1/n) sum_i sum_a pi(a | x_i) q(i, a)
    DR     V = (1/n) sum_i [sum_a pi(a | x_i) q(i, a) + w_i (r_i - q(i, a_i))]
    PDIS   V = (1/n) sum_g sum_t min(rho_gt, c) r_gt,   rho_gt = prod_{s <= t} w_gs   (steps t of session g in
           position order; c the optional clip, infinite without one)

PDIS (:func:`per_decision_is`) is the sequential estimator: it estimates the target's mean reward per step on the
target's own sessions (later states follow the target's earlier choices), the others on the logged states. Its
sessions keep their logged lengths (a session's length is taken not to depend on the policy).

95% intervals are clustered by session, since the steps of one session are correlated. Every estimator above is a
ratio of session sums, V = sum_g S_g / sum_g N_g (N_g = n_g, or for SNIPS the session's weight sum sum_i w_i),
and its half-width is the cluster-robust (sandwich) one, by the delta method for the ratio:

    half-width = 1.96 * sqrt(G / (G - 1) * sum_g (S_g - V N_g)^2) / sum_g N_g

(None with a single session). For IPS, DM, DR and PDIS N_g = n_g and this is the clustered standard error of a
mean, as in ``music_rl.evaluation.evaluate.ratio_mean_ci``. These half-widths are for the value over sessions like
the logged ones (the population they were drawn from): they count the sampling of the sessions' states as well as the
reward noise, so for V over the logged states themselves they are conservative. The DM and DR intervals take the reward
model as given: DR stays valid because the model is cross-fitted (the model that predicts a step never saw that
step's session), but DM's interval ignores the model's error and under-covers whenever the model is biased.

Why not the Open Bandit Pipeline (``obp``): pip resolves only obp 0.4.1 here, unmaintained and of the old
numpy/scikit-learn era, and its intervals are bootstraps over steps rather than clustered by session; these few
estimators are written here instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

ESTIMATORS: tuple[str, ...] = ("ips", "snips", "dm", "dr")
Z95 = 1.959963984540054
ONE = 1.0 - 1e-9
"""a propensity at least this is taken for 1 (a deterministic choice of the logger)"""
ROW_SUM_TOL = 1e-6
"""how far a target row may sum from 1"""
MIN_BOOST_ROWS = 100
"""training steps below which the residual boosting is skipped (40 steps per leaf and a tenth held out for early
stopping leave it nothing to split)"""


@dataclass(frozen=True)
class BanditLog:
    """Logged decisions, one row per step (n steps).

    Array-likes are converted to numpy arrays; shapes, dtypes and ranges are validated (ValueError naming the
    field and what is wrong). A (session, position) pair appears at most once.
    """

    session: np.ndarray
    """(n,) int64, session id (cluster), any integers"""
    position: np.ndarray
    """(n,) int64, 0-based step within its session"""
    action: np.ndarray
    """(n,) int64, chosen candidate index in 0..k-1"""
    propensity: np.ndarray
    """(n,) float64, behaviour probability of the chosen candidate, in (0, 1]"""
    reward: np.ndarray
    """(n,) float64, realised reward"""
    context: np.ndarray
    """(n, k, f) float, per-candidate features for the reward model"""

    def __post_init__(self) -> None:
        for name in ("session", "position", "action", "propensity", "reward", "context"):
            value = np.asarray(getattr(self, name))
            integer = name in ("session", "position", "action")
            if value.dtype.kind not in ("iu" if integer else "iuf"):
                raise ValueError(f"BanditLog.{name} must hold {'integers' if integer else 'real numbers'}, "
                                 f"got dtype {value.dtype}")
            object.__setattr__(self, name, value.astype(np.float64) if name in ("propensity", "reward") else value)
        if self.context.ndim != 3 or 0 in self.context.shape:
            raise ValueError(f"BanditLog.context must be a non-empty (n, k, f) array, got shape {self.context.shape}")
        n, k, _ = self.context.shape
        for name in ("session", "position", "action", "propensity", "reward"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"BanditLog.{name} must have shape ({n},) like context's first axis, "
                                 f"got {getattr(self, name).shape}")
        _check_all(self.position >= 0, "BanditLog.position must be >= 0", self.position)
        _check_all((self.action >= 0) & (self.action < k), f"BanditLog.action must be in 0..{k - 1}", self.action)
        _check_all((self.propensity > 0) & (self.propensity <= 1), "BanditLog.propensity must be in (0, 1]",
                   self.propensity)
        _check_all(np.isfinite(self.reward), "BanditLog.reward must be finite", self.reward)
        if not np.isfinite(self.context).all():
            raise ValueError("BanditLog.context must be finite")
        pairs = np.unique(np.stack([self.session, self.position], axis=1), axis=0)
        if len(pairs) != n:
            raise ValueError(f"BanditLog (session, position) pairs must be unique: {n - len(pairs)} repeated")

    @property
    def n(self) -> int:
        """Number of steps."""
        return len(self.action)

    @property
    def k(self) -> int:
        """Number of candidates shown at each step."""
        return int(self.context.shape[1])

    def weights(self, target: np.ndarray) -> np.ndarray:
        """Importance weights w_i = pi(a_i | x_i) / p_i of a validated target."""
        w: np.ndarray = target[np.arange(self.n), self.action] / self.propensity  # fancy indexing's stubs: Any
        return w


@dataclass(frozen=True)
class Estimate:
    """An estimate of the target's mean reward per step and its 95% half-width."""

    value: float
    ci95: float | None
    """95% half-width, clustered by session; None (not NaN) when undefined (one session)"""


class Regressor(Protocol):
    """What :func:`cross_fit` needs of a reward model (scikit-learn's fit/predict)."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> Regressor: ...

    def predict(self, x: np.ndarray) -> np.ndarray: ...


class RidgeThenBoost:
    """The reward model: a ridge regression on standardised features, then gradient-boosted trees on its
    residuals (early-stopped on a held-out tenth; skipped under ``MIN_BOOST_ROWS`` training steps).

    Chosen by measurement (tests/unit/evaluation/test_ope.py, ``test_reward_model_choice``: cross-fitted RMSE against
    the known expected reward of every candidate, 5,000 logged steps, k = 4, f = 25): on a nonlinear reward (similarity
    to the current track, like probabilities; sd 3.1) 0.94, against 1.99 for ridge alone and 1.09 for boosting alone
    (scikit-learn's defaults); on a linear reward (sd 5.3) 0.61, against 0.57 and 1.47. At 100,000 steps: 0.61 against
    2.01 and 0.60 (nonlinear), 0.51 against 0.50 and 0.78 (linear)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.ridge = make_pipeline(StandardScaler(), Ridge(alpha=1.0))
        self.boost: HistGradientBoostingRegressor | None = None

    def fit(self, x: np.ndarray, y: np.ndarray) -> RidgeThenBoost:
        """Fit the ridge, then the boosted trees on what it leaves."""
        self.ridge.fit(x, y)
        if len(y) >= MIN_BOOST_ROWS:
            self.boost = HistGradientBoostingRegressor(max_leaf_nodes=15, min_samples_leaf=40, early_stopping=True,
                                                       random_state=self.seed)
            self.boost.fit(x, y - self.ridge.predict(x))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted reward of each row."""
        pred: np.ndarray = self.ridge.predict(x)  # scikit-learn is untyped
        return pred if self.boost is None else pred + self.boost.predict(x)


def cross_fit(log: BanditLog, make_regressor: Callable[[int], Regressor], seed: int, folds: int = 2) -> np.ndarray:
    """q_hat (n, k) of a regressor ``make_regressor(seed)`` fitted on the logged (chosen candidate's features,
    reward) pairs, cross-fitted by session: sessions are dealt at random (``seed``) into ``folds`` folds, and each
    fold's steps are predicted, for every candidate, by a model fitted on the other folds. Single-threaded."""
    if folds < 2:
        raise ValueError(f"cross-fitting needs folds >= 2, got {folds}")
    sessions, which = np.unique(log.session, return_inverse=True)
    if len(sessions) < folds:
        raise ValueError(f"cross-fitting {folds} folds needs at least {folds} sessions, the log has {len(sessions)}")
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(sessions), dtype=np.int64)
    fold_of[rng.permutation(len(sessions))] = np.arange(len(sessions)) % folds
    fold = fold_of[which]
    chosen = log.context[np.arange(log.n), log.action]
    q_hat = np.empty((log.n, log.k))
    with threadpool_limits(limits=1):
        for j in range(folds):
            train, test = fold != j, fold == j
            model = make_regressor(int(rng.integers(2**31))).fit(chosen[train], log.reward[train])
            features = log.context[test].reshape(-1, log.context.shape[2])
            q_hat[test] = model.predict(features).reshape(-1, log.k)
    return q_hat


def fit_reward_model(log: BanditLog, seed: int, folds: int = 2) -> np.ndarray:
    """q_hat (n, k): each step's predicted reward for every candidate, cross-fitted by session folds (the model that
    predicts a step never saw that step's session), with :class:`RidgeThenBoost`. Single-threaded and deterministic
    for a given seed; about 2 s for n = 100,000 steps, k = 4, f = 25 (one core)."""
    return cross_fit(log, RidgeThenBoost, seed, folds)


def estimate(log: BanditLog, target: np.ndarray, q_hat: np.ndarray) -> dict[str, Estimate]:
    """IPS, SNIPS, DM and DR of the target (``target``: (n, k) probabilities, rows summing to 1; ``q_hat``: (n, k)
    predicted rewards, e.g. :func:`fit_reward_model`), each with its 95% half-width clustered by session (module
    docstring). SNIPS is NaN (half-width None) when the target gives probability 0 to every logged action."""
    pi = check_target(log, target)
    q_hat = np.asarray(q_hat, dtype=np.float64)
    if q_hat.shape != (log.n, log.k) or not np.isfinite(q_hat).all():
        raise ValueError(f"q_hat must be a finite ({log.n}, {log.k}) array, got shape {q_hat.shape}")
    w = log.weights(pi)
    steps = np.ones(log.n)
    direct = (pi * q_hat).sum(axis=1)
    correction = w * (log.reward - q_hat[np.arange(log.n), log.action])
    return {
        "ips": cluster_ratio(log.session, w * log.reward, steps),
        "snips": cluster_ratio(log.session, w * log.reward, w),
        "dm": cluster_ratio(log.session, direct, steps),
        "dr": cluster_ratio(log.session, direct + correction, steps),
    }


def per_decision_is(log: BanditLog, target: np.ndarray, clip: float | None = None) -> Estimate:
    """Per-decision importance sampling of the target's mean reward per step on its own sessions: each reward
    weighted by the product of the weights of its session's steps up to it (``position`` order), that product
    clipped at ``clip`` if given; with its 95% half-width clustered by session. Every session must hold its steps
    from position 0 without gaps."""
    pi = check_target(log, target)
    if clip is not None and not clip > 0:
        raise ValueError(f"clip must be > 0 or None, got {clip}")
    order = np.lexsort((log.position, log.session))
    session, position = log.session[order], log.position[order]
    first = np.r_[True, session[1:] != session[:-1]]
    expected = np.arange(log.n) - np.maximum.accumulate(np.where(first, np.arange(log.n), 0))
    if (position != expected).any():
        bad = session[np.argmax(position != expected)]
        raise ValueError(f"per_decision_is needs every step of each session from position 0: session {bad} has a gap")
    w = log.weights(pi)[order]
    rho = w.copy()
    for t in range(1, int(position.max()) + 1):
        at = np.flatnonzero(position == t)
        rho[at] *= rho[at - 1]
    if clip is not None:
        rho = np.minimum(rho, clip)
    return cluster_ratio(session, rho * log.reward[order], np.ones(log.n))


def no_overlap(log: BanditLog, target: np.ndarray) -> str | None:
    """One line when the log cannot tell (all of) the target's value, None when it can: the logger chose
    deterministically (propensity 1) on steps where the target puts probability on other candidates, which the
    logger never takes at such states (IPS, SNIPS and DR miss that probability; DM only extrapolates to it); or the
    target gives probability 0 to every logged action. With propensities below 1 the logger's support is unknown
    (only the chosen candidate's probability is logged), so such steps are taken to overlap."""
    pi = check_target(log, target)
    chosen = pi[np.arange(log.n), log.action]
    deterministic = log.propensity >= ONE
    unseen = np.where(deterministic, 1.0 - chosen, 0.0)
    off = unseen > ROW_SUM_TOL
    if off.any():
        where = ("a deterministic logger (every propensity is 1)" if deterministic.all()
                 else f"a logger deterministic on {deterministic.sum()} of {log.n} steps (propensity 1)")
        return (f"no overlap: {where}, and the target chooses otherwise on {off.sum()} of {log.n} steps "
                f"(probability {unseen.sum() / log.n:.3g} per step on candidates the logger never takes there), "
                "which IPS, SNIPS and DR cannot see")
    if not (chosen > 0).any():
        return (f"no overlap: the target gives probability 0 to every one of the {log.n} logged actions, "
                "so IPS is 0 and SNIPS undefined whatever the rewards")
    return None


def applicable(has_candidates: bool, has_propensities: bool) -> tuple[list[str], str | None]:
    """The estimators of ``ESTIMATORS`` that apply to a log, and one line saying which do not and why (None when
    all apply).

    IPS, SNIPS and DR need the logging probability of each chosen candidate among the candidates shown. DM needs
    neither: a reward model fitted on the logged (state, track) pairs scores the candidates the run's world gives
    at each logged state (for a log of played tracks only, such as the Spotify MSSD's, the states are rebuilt
    from the tracks played before).
    """
    if has_candidates and has_propensities:
        return list(ESTIMATORS), None
    missing = " and ".join(what for what, has in (("the candidates shown", has_candidates),
                                                  ("the logging policy's propensities", has_propensities)) if not has)
    return ["dm"], (f"IPS, SNIPS and DR do not apply: they need {missing}, which this log does not record; DM "
                    "applies, as good as its reward model fitted on the logged tracks")


def check_target(log: BanditLog, target: np.ndarray) -> np.ndarray:
    """``target`` as a float64 (n, k) array after checking it holds probabilities with rows summing to 1."""
    pi = np.asarray(target, dtype=np.float64)
    if pi.shape != (log.n, log.k):
        raise ValueError(f"target must have shape ({log.n}, {log.k}), got {pi.shape}")
    _check_all(np.asarray(np.isfinite(pi).all(axis=1) & (pi >= 0).all(axis=1)),
               "target must hold probabilities >= 0", pi)
    _check_all(np.abs(pi.sum(axis=1) - 1.0) <= ROW_SUM_TOL, "target rows must sum to 1", pi.sum(axis=1))
    return pi


def cluster_ratio(session: np.ndarray, numerator: np.ndarray, denominator: np.ndarray) -> Estimate:
    """sum(numerator) / sum(denominator) and its cluster-robust 95% half-width (delta method on the per-session
    sums, module docstring); NaN value if the denominator sums to 0, None half-width then or with one session."""
    _, which = np.unique(session, return_inverse=True)
    sums = np.bincount(which, weights=numerator)
    counts = np.bincount(which, weights=denominator)
    total = counts.sum()
    if total == 0:
        return Estimate(float("nan"), None)
    value = float(sums.sum() / total)
    g = len(sums)
    if g < 2:
        return Estimate(value, None)
    resid = sums - value * counts
    return Estimate(value, float(Z95 * np.sqrt(g / (g - 1) * np.sum(resid**2)) / total))


def _check_all(ok: np.ndarray, message: str, values: np.ndarray) -> None:
    """Raise ``message`` with a count and the first offender unless every entry of ``ok`` holds."""
    if not ok.all():
        first = int(np.argmax(~ok))
        raise ValueError(f"{message}: {int((~ok).sum())} of {len(ok)} steps are not (first: step {first}, "
                         f"{values[first]})")
