"""Evaluation statistics: cluster-robust intervals, normalized score, metric summary."""

import numpy as np

from music_rl.evaluation.evaluate import Episode, mean_ci, normalized_score, ratio_mean_ci, score_undefined, summarise


def test_ratio_ci_matches_the_mean_and_covers_the_truth():
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(200):
        counts = rng.integers(5, 20, size=50).astype(float)
        sums = np.array([rng.normal(2.0, 1.0, int(c)).sum() for c in counts])
        mean, half = ratio_mean_ci(sums, counts)
        assert np.isclose(mean, sums.sum() / counts.sum())
        covered += abs(mean - 2.0) <= half
    assert 0.88 <= covered / 200 <= 0.99


def test_mean_ci_of_one_value_is_none_and_of_constants_zero():
    assert mean_ci(np.array([1.0])) == (1.0, None)
    assert ratio_mean_ci(np.array([3.0]), np.array([4.0])) == (0.75, None)
    assert mean_ci(np.array([2.0, 2.0, 2.0])) == (2.0, 0.0)


def test_normalized_score_is_zero_at_random_and_one_at_oracle():
    m = {"random": {"mean_reward": 1.0}, "oracle": {"mean_reward": 3.0}, "ppo": {"mean_reward": 2.5}}
    assert normalized_score(m) == 0.75
    m["ppo"]["mean_reward"] = 1.0
    assert normalized_score(m) == 0.0
    m["oracle"]["mean_reward"] = 1.0
    assert normalized_score(m) is None  # undefined, written as null with its reason
    assert "the oracle and random score the same" in score_undefined(m, "mean_reward")


def test_summary_metrics_from_known_sessions():
    latents = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    ep = Episode(
        rewards=np.array([11.0, 0.05]),
        expected=np.array([5.0, 1.0]),
        oracle_expected=np.array([6.0, 2.0]),
        pct=np.array([1.0, 0.05]),
        liked=np.array([1.0, 0.0]),
        tracks=np.array([0, 1]),
    )
    ep2 = Episode(
        rewards=np.array([0.6]),
        expected=np.array([0.5]),
        oracle_expected=np.array([0.5]),
        pct=np.array([0.6]),
        liked=np.array([0.0]),
        tracks=np.array([3]),
    )
    s = summarise([ep, ep2], latents)
    assert np.isclose(s["mean_reward"], (11.05 + 0.6) / 3)
    assert np.isclose(s["like_rate"], 1 / 3)
    assert np.isclose(s["skip_rate"], 1 / 3)
    assert np.isclose(s["early_skip_rate"], 1 / 3)
    assert np.isclose(s["mean_return"], (11.05 + 0.6) / 2)
    assert np.isclose(s["coverage"], 3 / 4)
    assert np.isclose(s["diversity"], (1.0 + 0.0) / 2)
    assert s["n_steps"] == 3
