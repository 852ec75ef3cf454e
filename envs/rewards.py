"""Rewards from feedback and their propagation to every track (K-Means + decay).

A feedback row becomes a reward ``pct + like_weight * liked`` (minus an optional early-skip penalty).
Propagation turns the sparse rewards of a few probe tracks into a reward table ``r_hat`` over the whole
catalog: K-Means on the latents; in each cluster the observed tracks keep their (averaged) reward, every
other track gets the cluster's probe mean times ``decay(distance to centroid / max distance in the
cluster)``; clusters without any feedback get a flat prior.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import overload

import numpy as np
from threadpoolctl import threadpool_limits

from music_rl.core.errors import ConfigError

DECAYS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "linear": lambda u, s: np.maximum(0.0, 1.0 - u / s),
    "exponential": lambda u, s: np.exp(-u / s),
    "gaussian": lambda u, s: np.exp(-(u**2) / (2.0 * s**2)),
    "inverse": lambda u, s: 1.0 / (1.0 + u / s),
    "none": lambda u, s: np.ones_like(u),
}
"""Decay of a cluster's probe mean with normalised distance ``u`` in [0, 1] and scale ``s`` > 0.

Each is 1 at ``u = 0``, non-negative and non-increasing in ``u``. ``linear`` reaches 0 at ``u = s``.
"""


class Decay(StrEnum):
    """The decay functions of :data:`DECAYS`."""

    linear = "linear"
    exponential = "exponential"
    gaussian = "gaussian"
    inverse = "inverse"
    none = "none"


class ProbeSelection(StrEnum):
    """Which tracks of a cluster are probed (:func:`select_probes`)."""

    nearest = "nearest"
    random = "random"


PROBE_SELECTIONS: tuple[str, ...] = tuple(ProbeSelection)
PRIORS: tuple[str, ...] = ("global_mean", "zero")
REWARD_LIMIT = 1e6  # the largest like_weight, penalty or prior: rewards, their sums and float32 copies stay finite


@dataclass
class RewardConfig:
    """Reward definition and propagation settings (config group ``reward``)."""

    like_weight: float = 10.0
    """reward = pct + like_weight * liked (the design's lambda: 10 or 100)"""
    early_skip_penalty: float = 0.0
    """subtracted when pct < early_skip_threshold"""
    early_skip_threshold: float = 0.1
    """what counts as an early skip, as a share of the track"""
    decay: Decay = Decay.exponential
    """how a cluster's probe mean decays with the distance to its centroid"""
    decay_scale: float = 1.0
    """s in decay(u, s), u = distance to centroid / max distance in the cluster"""
    n_clusters: int = 20
    """K-Means clusters on the latents"""
    probes_per_cluster: int = 4
    """probe tracks per cluster whose feedback is collected"""
    probe_selection: ProbeSelection = ProbeSelection.nearest
    """nearest (to the centroid) | random"""
    prior: str = "global_mean"
    """reward of clusters without feedback: global_mean | zero | a number written as a string, e.g. '0.5'"""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad ``reward.*`` key, its value and what is allowed."""
        checks = [
            ("like_weight", 0 <= self.like_weight <= REWARD_LIMIT, f"must be a number in [0, {REWARD_LIMIT:g}]"),
            ("early_skip_penalty", 0 <= self.early_skip_penalty <= REWARD_LIMIT,
             f"must be a number in [0, {REWARD_LIMIT:g}]"),
            ("early_skip_threshold", 0 <= self.early_skip_threshold <= 1, "must be in [0, 1]"),
            ("decay", self.decay in DECAYS, f"must be one of {', '.join(DECAYS)}"),
            ("decay_scale", 0 < self.decay_scale <= REWARD_LIMIT, f"must be a number in (0, {REWARD_LIMIT:g}]"),
            ("n_clusters", self.n_clusters >= 1, "must be an integer >= 1"),
            ("probes_per_cluster", self.probes_per_cluster >= 1, "must be an integer >= 1"),
            ("probe_selection", self.probe_selection in PROBE_SELECTIONS,
             f"must be one of {', '.join(PROBE_SELECTIONS)}"),
            ("prior", _parse_prior(self.prior) is not None,
             f"must be one of {', '.join(PRIORS)} or a number in [-{REWARD_LIMIT:g}, {REWARD_LIMIT:g}]"),
        ]
        for key, ok, allowed in checks:
            if not ok:
                raise ConfigError(f"reward.{key}={getattr(self, key)!r}: {allowed}")


def _parse_prior(prior: str) -> str | float | None:
    """``prior`` as a keyword of :data:`PRIORS` or a finite float; None when it is neither."""
    if prior in PRIORS:
        return prior
    try:
        value = float(prior)
    except (TypeError, ValueError):
        return None
    return value if abs(value) <= REWARD_LIMIT else None  # NaN and infinities fail too


@overload
def reward(pct: float, liked: float, cfg: RewardConfig) -> float: ...
@overload
def reward(pct: np.ndarray | float, liked: np.ndarray | float, cfg: RewardConfig) -> np.ndarray | float: ...
def reward(pct: np.ndarray | float, liked: np.ndarray | float, cfg: RewardConfig) -> np.ndarray | float:
    """Reward of feedback: ``pct + like_weight * liked - early_skip_penalty * [pct < early_skip_threshold]``.

    The one place the reward is computed: the env's steps, the feedback logs' rewards and their propagation.

    Args:
        pct: percentage listened in [0, 1] (scalar or array).
        liked: 0/1 (scalar or array, broadcast with ``pct``).
        cfg: the reward config.

    Returns:
        A float for scalar inputs, else a float64 array of the broadcast shape.
    """
    if isinstance(pct, float | int) and isinstance(liked, float | int):  # one env step: no numpy overhead
        return float(pct + cfg.like_weight * liked - cfg.early_skip_penalty * (pct < cfg.early_skip_threshold))
    pct_a = np.asarray(pct, dtype=np.float64)
    liked_a = np.asarray(liked, dtype=np.float64)
    r = pct_a + cfg.like_weight * liked_a - cfg.early_skip_penalty * (pct_a < cfg.early_skip_threshold)
    return float(r) if r.ndim == 0 else r


def fit_clusters(Z: np.ndarray, n_clusters: int, seed: int,
                 sample_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """K-Means on the latents (Lloyd, k-means++ init, one init), deterministic for a given seed.

    Args:
        Z: latents (N, d), an array or a memory map.
        n_clusters: C, config key ``reward.n_clusters``, 1 <= C <= N.
        seed: random state of the initialisation (and of the sample).
        sample_rows: fit on a seeded sample of this many rows when the catalog is larger, then label every row
            with the nearest centroid, a chunk at a time (``world.sample_rows``); None: fit on every row.

    Returns:
        ``labels`` int32 (N,) in [0, C) and ``centroids`` float32 (C, d). A cluster may end up empty when
        the catalog has fewer distinct latents than C.
    """
    n = Z.shape[0]
    if not 1 <= n_clusters <= n:
        raise ConfigError(f"reward.n_clusters={n_clusters}: must be between 1 and the number of tracks ({n})")
    from sklearn.cluster import KMeans  # here, not at module level: sklearn costs ~0.6 s on every command

    sample = None if sample_rows is None or n <= sample_rows else \
        np.sort(np.random.default_rng([seed, _SAMPLE_STREAM]).choice(n, size=sample_rows, replace=False))
    # one OpenMP/BLAS thread: K-Means' reductions otherwise change in the last bits with the thread count
    # (a joblib worker, pytest or a plain run may each have another), and the clusters must not
    with threadpool_limits(limits=1):
        fitted = np.asarray(Z if sample is None else Z[sample], dtype=np.float32)
        km = KMeans(n_clusters=n_clusters, n_init=1, algorithm="lloyd", random_state=seed).fit(fitted)
        if sample is None:
            return km.labels_.astype(np.int32), km.cluster_centers_.astype(np.float32)
        labels = np.empty(n, dtype=np.int32)
        for start in range(0, n, _LABEL_CHUNK):
            labels[start:start + _LABEL_CHUNK] = km.predict(np.asarray(Z[start:start + _LABEL_CHUNK], dtype=np.float32))
    return labels, km.cluster_centers_.astype(np.float32)


_SAMPLE_STREAM = 7  # the sample's random stream of the K-Means seed
QUALITY_SAMPLE = 1_000_000  # tracks propagation_quality compares at most
_LABEL_CHUNK = 1_000_000  # rows labelled at a time when K-Means was fitted on a sample


def _centroid_distances(Z: np.ndarray, labels: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Euclidean distance (float64) of every track to its own cluster's centroid."""
    centroids = np.asarray(centroids, dtype=np.float64)
    distances = np.empty(len(labels))
    for start in range(0, len(labels), _LABEL_CHUNK):  # a chunk at a time: (N, d) float64 would not fit at 100M
        part = slice(start, start + _LABEL_CHUNK)
        diff = np.asarray(Z[part], dtype=np.float64) - centroids[labels[part]]
        distances[part] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return distances


def select_probes(
    Z: np.ndarray,
    labels: np.ndarray,
    centroids: np.ndarray,
    per_cluster: int,
    selection: str = "nearest",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Pick the probe tracks of every cluster: the ones whose feedback is collected.

    Args:
        Z: latents (N, d).
        labels: cluster of every track (N,).
        centroids: (C, d).
        per_cluster: probes per cluster (all members when a cluster is smaller).
        selection: ``nearest`` (the tracks nearest the centroid, ties by index) or ``random`` (members
            drawn without replacement with ``rng``).
        rng: required for ``random``.

    Returns:
        int64 track indices, grouped by cluster (cluster 0 first), nearest first within a cluster for
        ``nearest``.
    """
    if selection not in PROBE_SELECTIONS:
        allowed = ", ".join(PROBE_SELECTIONS)
        raise ConfigError(f"reward.probe_selection={selection!r}: must be one of {allowed}")
    labels = np.asarray(labels)
    n: int = labels.shape[0]
    if selection == "nearest":
        order = np.lexsort((np.arange(n), _centroid_distances(Z, labels, centroids), labels))
    else:
        if rng is None:
            raise ValueError("select_probes(selection='random') needs an np.random.Generator")
        order = np.lexsort((rng.random(n), labels))  # a random permutation within each cluster
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
    rank = np.arange(n) - starts  # position of each track within its cluster's block
    return order[rank < per_cluster].astype(np.int64)


def _prior_value(prior: str, rewards: np.ndarray) -> float:
    """The reward of tracks in clusters without feedback."""
    parsed = _parse_prior(prior)
    if parsed is None:
        raise ConfigError(f"reward.prior={prior!r}: must be one of {', '.join(PRIORS)} or a finite number")
    if parsed == "global_mean":
        return float(rewards.mean())
    if parsed == "zero":
        return 0.0
    return float(parsed)


def propagate(
    Z: np.ndarray,
    labels: np.ndarray,
    centroids: np.ndarray,
    track_idx: np.ndarray,
    rewards: np.ndarray,
    cfg: RewardConfig,
    factors: np.ndarray | None = None,
) -> np.ndarray:
    """Propagate observed rewards to every track (vectorised; O(N + C)).

    - An observed track keeps its reward (the mean of its observations when repeated).
    - In a cluster with at least one observed track, every other track gets the cluster's probe mean
      (the mean over its observed tracks, each counted once) times ``DECAYS[cfg.decay](u, cfg.decay_scale)``,
      ``u`` = distance to the centroid / the largest such distance in the cluster (0 when all coincide).
    - In a cluster without feedback, every track gets the flat prior ``cfg.prior``.

    Args:
        Z: latents (N, d).
        labels: cluster of every track (N,), from :func:`fit_clusters`.
        centroids: (C, d).
        track_idx: observed track indices (M,), repeats allowed.
        rewards: the observed rewards (M,), see :func:`reward`.
        cfg: decay, decay_scale and prior are used.
        factors: :func:`decay_factors` of the same arguments, when the caller keeps them (they do not depend
            on the feedback); None: computed here.

    Returns:
        ``r_hat`` float32 (N,).
    """
    labels = np.asarray(labels)
    track_idx = np.asarray(track_idx, dtype=np.int64)
    rewards = np.asarray(rewards, dtype=np.float64)
    n, n_clusters = labels.shape[0], len(centroids)
    if track_idx.shape != rewards.shape or track_idx.ndim != 1 or track_idx.size == 0:
        raise ValueError(f"track_idx and rewards must be equal, non-empty 1-D arrays, got {track_idx.shape} "
                         f"and {rewards.shape}")
    if track_idx.min() < 0 or track_idx.max() >= n:
        raise ValueError(f"track_idx must lie in [0, {n}), got [{track_idx.min()}, {track_idx.max()}]")
    if cfg.decay not in DECAYS:
        raise ConfigError(f"reward.decay={cfg.decay!r}: must be one of {', '.join(DECAYS)}")

    counts = np.bincount(track_idx, minlength=n)
    observed = counts > 0
    track_mean = np.bincount(track_idx, weights=rewards, minlength=n)[observed] / counts[observed]
    probe_labels = labels[observed]
    n_probes = np.bincount(probe_labels, minlength=n_clusters)
    probe_sum = np.bincount(probe_labels, weights=track_mean, minlength=n_clusters)
    has_feedback = n_probes > 0
    cluster_mean = np.divide(probe_sum, n_probes, out=np.zeros(n_clusters), where=has_feedback)

    decay = decay_factors(Z, labels, centroids, cfg) if factors is None else factors
    r_hat: np.ndarray = cluster_mean[labels] * decay
    r_hat[~has_feedback[labels]] = _prior_value(cfg.prior, rewards)
    r_hat[observed] = track_mean
    return r_hat.astype(np.float32)


def decay_factors(Z: np.ndarray, labels: np.ndarray, centroids: np.ndarray, cfg: RewardConfig) -> np.ndarray:
    """``DECAYS[cfg.decay](u, cfg.decay_scale)`` of every track (N,) float64, ``u`` its distance to its cluster's
    centroid over the largest such distance in the cluster (0 when all coincide): what :func:`propagate`
    multiplies a cluster's mean by."""
    labels = np.asarray(labels)
    n, n_clusters = labels.shape[0], len(centroids)
    dist = _centroid_distances(Z, labels, centroids)
    max_dist = np.zeros(n_clusters)
    np.maximum.at(max_dist, labels, dist)
    for start in range(0, n, _LABEL_CHUNK):  # in place, a chunk at a time: dist becomes the factors
        part = slice(start, start + _LABEL_CHUNK)
        scale = max_dist[labels[part]]
        u = np.divide(dist[part], scale, out=np.zeros(len(scale)), where=scale > 0)
        dist[part] = DECAYS[cfg.decay](u, cfg.decay_scale)
    return dist


def propagation_quality(r_hat: np.ndarray, truth: np.ndarray) -> dict[str, float | str | None]:
    """How well a reward table matches the true expected rewards (over every track; over a seeded sample of
    :data:`QUALITY_SAMPLE` of a larger catalog).

    Returns:
        ``pearson`` and ``spearman`` correlations and ``rmse``; the correlations are None, with ``reason``,
        when either input is constant.
    """
    if np.shape(r_hat) != np.shape(truth) or np.ndim(r_hat) != 1 or np.size(r_hat) == 0:
        raise ValueError(f"r_hat and truth must be equal 1-D arrays, got {np.shape(r_hat)}, {np.shape(truth)}")
    if len(r_hat) > QUALITY_SAMPLE:  # a larger catalog: a seeded sample of its tracks (ranks of 100M cost GBs)
        rows = np.sort(np.random.default_rng(0).choice(len(r_hat), size=QUALITY_SAMPLE, replace=False))
        r_hat, truth = np.asarray(r_hat)[rows], np.asarray(truth)[rows]
    r_hat = np.asarray(r_hat, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    rmse = float(np.sqrt(np.mean((r_hat - truth) ** 2)))
    if r_hat.size < 2 or np.ptp(r_hat) == 0 or np.ptp(truth) == 0:
        return {"pearson": None, "spearman": None, "rmse": rmse,
                "reason": "a constant reward table (or truth): correlations are undefined"}
    from scipy import stats  # here, not at module level: scipy.stats costs ~0.3 s on every command

    return {
        "pearson": float(stats.pearsonr(r_hat, truth).statistic),
        "spearman": float(stats.spearmanr(r_hat, truth).statistic),
        "rmse": rmse,
    }
