"""Tests of the reward formula, the decays, clustering, probe selection, propagation and its quality."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from envs.rewards import (
    DECAYS,
    RewardConfig,
    fit_clusters,
    propagate,
    propagation_quality,
    reward,
    select_probes,
)
from music_rl.core.errors import ConfigError


@pytest.fixture(scope="module")
def world() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centres = rng.random((4, 3))
    Z = centres[rng.integers(0, 4, 400)] + 0.1 * rng.standard_normal((400, 3))
    Z = np.clip(Z, 0, 1).astype(np.float32)
    labels, centroids = fit_clusters(Z, 6, seed=1)
    return Z, labels, centroids


def test_reward_formula_with_penalty() -> None:
    cfg = RewardConfig(like_weight=10.0, early_skip_penalty=2.0, early_skip_threshold=0.1)
    r = reward(np.array([0.05, 0.1, 0.8]), np.array([0, 1, 1]), cfg)
    np.testing.assert_allclose(r, [-1.95, 10.1, 10.8])
    assert reward(0.5, 0, RewardConfig(like_weight=100.0)) == 0.5
    assert reward(0.5, 1, RewardConfig(like_weight=100.0)) == 100.5
    assert isinstance(reward(0.5, 1, cfg), float)


@pytest.mark.parametrize("name", sorted(DECAYS))
def test_decays_are_one_at_zero_nonnegative_nonincreasing(name: str) -> None:
    u = np.linspace(0.0, 1.0, 101)
    for s in (0.3, 1.0, 3.0):
        d = DECAYS[name](u, s)
        assert d.shape == u.shape and d[0] == 1.0
        assert np.all(d >= 0) and np.all(np.diff(d) <= 0)
    np.testing.assert_allclose(DECAYS["linear"](np.array([0.5, 1.0]), 0.5), [0.0, 0.0])


def test_clusters_are_deterministic(world: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    Z, labels, centroids = world
    labels2, centroids2 = fit_clusters(Z, 6, seed=1)
    np.testing.assert_array_equal(labels, labels2)
    np.testing.assert_array_equal(centroids, centroids2)
    assert labels.dtype == np.int32 and labels.shape == (400,) and centroids.shape == (6, 3)
    assert set(np.unique(labels)) == set(range(6))


def test_fit_clusters_rejects_more_clusters_than_tracks() -> None:
    with pytest.raises(ConfigError, match=r"reward\.n_clusters=11"):
        fit_clusters(np.zeros((10, 2), dtype=np.float32), 11, seed=0)


def test_nearest_probes_are_closest_to_centroid(world: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    Z, labels, centroids = world
    probes = select_probes(Z, labels, centroids, 4, "nearest")
    assert probes.size == 24 and len(set(probes.tolist())) == 24
    dist = np.linalg.norm(Z - centroids[labels], axis=1)
    for c in range(6):
        members = np.flatnonzero(labels == c)
        chosen = probes[labels[probes] == c]
        assert chosen.size == 4
        assert dist[chosen].max() <= np.sort(dist[members])[3] + 1e-12


def test_random_probes_are_seeded_members(world: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    Z, labels, centroids = world
    a = select_probes(Z, labels, centroids, 3, "random", np.random.default_rng(5))
    b = select_probes(Z, labels, centroids, 3, "random", np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert np.array_equal(np.bincount(labels[a], minlength=6), np.full(6, 3))
    assert not np.array_equal(a, select_probes(Z, labels, centroids, 3, "nearest"))
    tiny = select_probes(Z[:3], np.array([0, 0, 1]), centroids[:2], 5, "random", np.random.default_rng(0))
    assert sorted(tiny.tolist()) == [0, 1, 2]  # a small cluster gives all its members


@pytest.mark.parametrize("decay", sorted(DECAYS))
def test_propagation_keeps_probes_and_decays_with_distance(
    decay: str, world: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    Z, labels, centroids = world
    probes = select_probes(Z, labels, centroids, 3, "nearest")
    rewards = 1.0 + np.arange(probes.size, dtype=np.float64)  # positive: r_hat shrinks towards 0
    cfg = RewardConfig(decay=decay, decay_scale=0.7)
    r_hat = propagate(Z, labels, centroids, probes, rewards, cfg)
    assert r_hat.dtype == np.float32 and r_hat.shape == (400,) and np.all(np.isfinite(r_hat))
    np.testing.assert_allclose(r_hat[probes], rewards.astype(np.float32))
    dist = np.linalg.norm(Z.astype(np.float64) - centroids[labels], axis=1)
    others = np.setdiff1d(np.arange(400), probes)
    for c in range(6):
        members = others[labels[others] == c]
        by_dist = members[np.argsort(dist[members], kind="stable")]
        assert np.all(np.diff(r_hat[by_dist]) <= 1e-6)
        probe_mean = rewards[labels[probes] == c].mean()
        assert np.all(r_hat[members] <= probe_mean + 1e-5)
        if decay == "none":
            np.testing.assert_allclose(r_hat[members], probe_mean, rtol=1e-6)


def test_repeated_observations_are_averaged(world: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    Z, labels, centroids = world
    track = int(np.flatnonzero(labels == 0)[0])
    idx = np.array([track, track, track])
    r_hat = propagate(Z, labels, centroids, idx, np.array([1.0, 2.0, 6.0]), RewardConfig(decay="none"))
    assert r_hat[track] == pytest.approx(3.0)
    np.testing.assert_allclose(r_hat[labels == 0], 3.0)  # the cluster mean counts the track once


@pytest.mark.parametrize(("prior", "expected"), [("global_mean", 4.0), ("zero", 0.0), ("-1.5", -1.5)])
def test_clusters_without_feedback_get_the_prior(
    prior: str, expected: float, world: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    Z, labels, centroids = world
    in0, in1 = np.flatnonzero(labels == 0)[:2], np.flatnonzero(labels == 1)[:1]
    idx = np.concatenate([in0, in1])
    r_hat = propagate(Z, labels, centroids, idx, np.array([2.0, 4.0, 6.0]), RewardConfig(prior=prior))
    unseen = ~np.isin(labels, [0, 1])
    np.testing.assert_allclose(r_hat[unseen], expected)
    assert r_hat[in1[0]] == 6.0


def test_propagate_rejects_bad_indices(world: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    Z, labels, centroids = world
    with pytest.raises(ValueError, match="track_idx"):
        propagate(Z, labels, centroids, np.array([400]), np.array([1.0]), RewardConfig())


def test_quality_on_known_inputs() -> None:
    truth = np.array([1.0, 2.0, 3.0, 4.0])
    q = propagation_quality(truth * 2 + 1, truth)
    assert q["pearson"] == pytest.approx(1.0) and q["spearman"] == pytest.approx(1.0)
    assert q["rmse"] == pytest.approx(math.sqrt(np.mean((truth + 1) ** 2)))
    q = propagation_quality(np.array([4.0, 3.0, 2.0, 1.0]), truth ** 3)
    assert q["pearson"] < -0.9 and q["spearman"] == pytest.approx(-1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q = propagation_quality(np.full(4, 2.0), truth)
    assert q["pearson"] is None and q["spearman"] is None and "constant" in q["reason"]
    assert q["rmse"] == pytest.approx(math.sqrt(1.5))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("decay", "foo", "reward.decay='foo': must be one of linear, exponential, gaussian, inverse, none"),
        ("like_weight", -1.0, "reward.like_weight=-1.0: must be a number in [0, 1e+06]"),
        ("n_clusters", 0, "reward.n_clusters=0"),
        ("probes_per_cluster", 0, "reward.probes_per_cluster=0"),
        ("decay_scale", 0.0, "reward.decay_scale=0.0: must be a number in (0, 1e+06]"),
        ("early_skip_threshold", 1.5, "reward.early_skip_threshold=1.5: must be in [0, 1]"),
        ("probe_selection", "far", "reward.probe_selection='far'"),
        ("prior", "nan", "reward.prior='nan'"),
        ("prior", "median", "reward.prior='median'"),
    ],
)
def test_config_validation(field: str, value: object, message: str) -> None:
    cfg = RewardConfig(**{field: value})
    with pytest.raises(ConfigError) as err:
        cfg.validate()
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_default_config_is_valid() -> None:
    RewardConfig().validate()
    RewardConfig(prior="0.25").validate()
