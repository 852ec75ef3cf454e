"""Interval estimates of a configuration's score over replicates, as Agarwal et al. recommend ("Deep Reinforcement
Learning at the Edge of the Statistical Precipice", NeurIPS 2021): the interquartile mean with a stratified
bootstrap interval, and the probability of improvement.

These are the estimators of their library rliable, on ``scipy.stats``: rliable 1.2 (its latest) needs arch < 8,
and arch 7 does not import with pandas 3. Scores are a matrix (runs, tasks), ``scores[i, t]`` run i on task t. A
sweep's configuration has one task (the listener is part of the replicate: a seed picks a listener), so its runs
are its replicates and the stratified bootstrap is the plain bootstrap over them.

Every interval is a 95% percentile interval of ``scipy.stats.bootstrap`` from a seeded generator: the same scores
give the same figures.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

REPS = 10_000  # bootstrap resamples
MIN_REPLICATES = 5  # below this the IQM is (nearly) the mean and a bootstrap interval says little


def t_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The mean of ``values`` and the half-width of its Student-t interval (NaN from a single value)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return float(v.mean()), float("nan")
    half = stats.t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean()), float(half)


def iqm(scores: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """The interquartile mean: the mean of the middle 50% of the scores (a 25% trimmed mean; rliable's
    ``aggregate_iqm``): of 4 to 7 scores the lowest and the highest are left out, of 1 to 3 none."""
    mean: np.ndarray | float = stats.trim_mean(np.asarray(scores, dtype=np.float64), proportiontocut=0.25, axis=axis)
    return mean


def _percentile_interval(samples: tuple[np.ndarray, ...], statistic: Callable[..., np.ndarray | float], reps: int,
                         confidence: float, seed: int, paired: bool = False) -> tuple[float, float]:
    """The percentile bootstrap interval of ``statistic`` (vectorised: it takes ``axis``) over ``samples``: each
    resample draws, from each sample (or, ``paired``, from all at once), as many observations as it has, with
    replacement. Every resample of a single observation is that observation: its statistic is both ends."""
    if min(len(sample) for sample in samples) < 2:  # scipy's bootstrap needs two
        value = float(statistic(*samples, axis=-1))
        return value, value
    result = stats.bootstrap(samples, statistic, n_resamples=reps, confidence_level=confidence,
                             method="percentile", paired=paired, vectorized=True, rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def iqm_interval(scores: np.ndarray, reps: int = REPS, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """The IQM of ``scores`` (runs, tasks) and its stratified-bootstrap percentile interval: each resample draws,
    within each task, as many runs as it has, with replacement (rliable's ``StratifiedBootstrap``).

    A 1-D ``scores`` is one task. Returns (iqm, lo, hi).
    """
    s = np.asarray(scores, dtype=np.float64)
    s = s[:, None] if s.ndim == 1 else s

    def pooled_iqm(*tasks: np.ndarray, axis: int) -> np.ndarray | float:
        return iqm(np.concatenate(tasks, axis=axis), axis=axis)

    return (float(iqm(s)), *_percentile_interval(tuple(s.T), pooled_iqm, reps, confidence, seed))


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) over paired replicates: the share of replicates on which ``x`` beats ``y`` (a tie counts 1/2).

    With each replicate a task of one run, this is rliable's ``probability_of_improvement`` (the Mann-Whitney
    U statistic per task, averaged over tasks).
    """
    return float(_share_better(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)))


def _share_better(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """Along ``axis``, the share of pairs in which x beats y (ties 1/2)."""
    share: np.ndarray | float = np.mean((x > y) + 0.5 * (x == y), axis=axis)
    return share


def improvement_interval(x: np.ndarray, y: np.ndarray, reps: int = REPS, confidence: float = 0.95,
                         seed: int = 0) -> tuple[float, float, float]:
    """:func:`probability_of_improvement` of ``x`` over ``y`` (the same replicates in the same order) and its
    paired bootstrap percentile interval (each resample draws replicates, keeping x and y paired).

    Returns (probability, lo, hi).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) == 0:
        raise ValueError(f"paired replicates: two 1-D arrays of one length > 0, not {x.shape} and {y.shape}")
    return (probability_of_improvement(x, y),
            *_percentile_interval((x, y), _share_better, reps, confidence, seed, paired=True))
