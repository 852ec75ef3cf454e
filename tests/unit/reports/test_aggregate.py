"""Interval estimates over replicates (music_rl/reports/aggregate.py) on hand-computed cases, and compare's table of a
sweep (music_rl/reports/sweep.py, music-rl compare) on job folders written here (no training)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

from music_rl.reports.aggregate import improvement_interval, iqm, iqm_interval, probability_of_improvement, t_interval
from music_rl.reports.sweep import aggregate, is_config_column, markdown


@pytest.mark.parametrize("scores, expected", [
    ([1, 2, 3, 4, 100], 3.0),            # 5 scores: the lowest and the highest left out
    ([4, 1, 3, 2], 2.5),                 # 4: the middle two
    ([7, 0, 6, 1, 5, 2, 4, 3], 3.5),     # 8: two left out at each end
    ([2, 9, 4], 5.0),                    # 3: none left out, the mean
    (np.arange(12.0).reshape(4, 3), 5.5),  # runs x tasks: over all 12 scores, 3 left out at each end
])
def test_iqm_of_known_scores(scores, expected):
    assert iqm(scores) == pytest.approx(expected)


def test_t_interval_of_known_values():
    mean, half = t_interval(np.array([1.0, 2.0, 3.0]))
    assert mean == 2.0 and half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)  # t(0.975, 2) * s / sqrt(n)
    assert math.isnan(t_interval(np.array([5.0]))[1])


def test_the_iqm_bootstrap_interval_holds_the_truth_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    trials, hits = 400, 0
    for trial in range(trials):  # the IQM of a symmetric distribution is its centre, 0
        _, lo, hi = iqm_interval(rng.standard_t(df=3, size=30), reps=1000, seed=trial)
        hits += lo <= 0.0 <= hi
    assert 0.89 <= hits / trials <= 0.99, hits / trials  # the percentile bootstrap undercovers a little


def test_the_bootstrap_is_stratified_by_task():
    # each task's runs agree: resampling runs within each task always gives the same scores, so no width;
    # resampling the 8 scores as one pool would not
    scores = np.array([[0.0, 10.0], [0.0, 10.0], [0.0, 10.0], [0.0, 10.0]])
    assert iqm_interval(scores) == (5.0, 5.0, 5.0)
    _, lo, hi = iqm_interval(scores.ravel())
    assert lo < 5.0 < hi


def test_an_interval_is_the_same_for_the_same_scores():
    scores = np.array([0.1, 0.5, 0.3, 0.9, 0.4])
    assert iqm_interval(scores) == iqm_interval(scores)
    lo, hi = iqm_interval(scores)[1:]
    assert scores.min() <= lo < iqm(scores) < hi <= scores.max()



@pytest.mark.parametrize("seed", [0, 3])
def test_the_intervals_are_the_percentile_bootstrap_of_a_seeded_generator(seed):
    """scipy.stats.bootstrap draws what the hand-written bootstrap drew (replicate indices from
    default_rng(seed).integers, one resample per row) and takes the same percentiles: the figures compare printed
    before it stay."""
    scores = np.array([0.31, 0.12, 0.95, 0.47, 0.52, 0.08, 0.77])
    other = np.array([0.30, 0.20, 0.90, 0.50, 0.40, 0.10, 0.70])
    picks = np.random.default_rng(seed).integers(0, len(scores), size=(2000, len(scores)))
    assert iqm_interval(scores, reps=2000, seed=seed)[1:] == pytest.approx(
        np.percentile(iqm(scores[picks], axis=1), [2.5, 97.5]), abs=1e-12)
    share = np.mean((scores[picks] > other[picks]) + 0.5 * (scores[picks] == other[picks]), axis=1)
    assert improvement_interval(scores, other, reps=2000, seed=seed)[1:] == pytest.approx(
        np.percentile(share, [2.5, 97.5]), abs=1e-12)
    assert iqm_interval(scores[:1]) == (0.31, 0.31, 0.31)  # one replicate: every resample is itself

def test_probability_of_improvement_pairs_replicates():
    x, y = np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array([0.0, 2.0, 2.0, 5.0, 1.0])
    assert probability_of_improvement(x, y) == pytest.approx((1 + 0.5 + 1 + 0 + 1) / 5)
    # dominated on every replicate: 1, and no resample says otherwise
    assert improvement_interval(x + 1, x) == (1.0, 1.0, 1.0)
    assert improvement_interval(x, x + 1) == (0.0, 0.0, 0.0)
    assert improvement_interval(x, x) == (0.5, 0.5, 0.5)  # tied
    # paired: y beats x on each replicate, although across replicates x often scores more (unpaired 2/9)
    assert probability_of_improvement([1.0, 2.0, 3.0], [2.0, 3.0, 4.0]) == 0.0
    with pytest.raises(ValueError, match="paired replicates"):
        improvement_interval(x, y[:3])


def jobs_of(scores: dict[str, list[float | None]], seeds: list[int] | None = None) -> pd.DataFrame:
    """A collected sweep: one row per job, configurations by vae.latent_dim, replicates by seed."""
    rows = []
    for dim, values in scores.items():
        for seed, value in zip(seeds or range(len(values)), values, strict=True):
            rows.append({"job": f"{len(rows)}_d{dim}_s{seed}", "vae.latent_dim": dim, "seed": str(seed),
                         "normalized_score": value, "greedy_normalized_score": 0.0, "ppo_mean_reward": 1.0,
                         "ppo_like_rate": 0.1, "ppo_skip_rate": 0.2, "ppo_coverage": 0.3})
    return pd.DataFrame(rows)


def test_aggregate_groups_replicates_and_compares_the_best_with_each_other():
    best = [0.9, 0.8, 1.0, 0.7, 0.95]
    jobs = jobs_of({"2": [s - 0.5 for s in best], "5": best, "4": [0.85, 0.85, 0.85, 0.85, 0.85]})
    table, notes = aggregate(jobs)
    assert list(table["vae.latent_dim"]) == ["5", "4", "2"] and list(table["n_seeds"]) == [5, 5, 5]
    assert [c for c in table.columns if is_config_column(c)] == ["vae.latent_dim"]  # what the chart's labels show
    assert table.loc[0, "normalized_score_iqm"] == pytest.approx((0.8 + 0.9 + 0.95) / 3)  # 0.7 and 1.0 left out
    assert math.isnan(table.loc[0, "poi_best"])  # the best itself
    worst = table.loc[2]
    assert (worst["poi_best"], worst["poi_best_lo"], worst["poi_best_hi"], worst["n_paired"]) == (1, 1, 1, 5)
    assert table.loc[1, "poi_best"] == pytest.approx(3 / 5)  # 0.9, 1.0, 0.95 beat 0.85
    assert notes == []
    text = markdown(table)
    assert "| 5 | 5 | 0.870 ± " in text and "1.000 [1.000, 1.000]" in text and "| – |" in text


def test_listener_seeds_are_replicates_too_and_pairing_uses_both():
    jobs = jobs_of({"5": [1.0, 2.0], "4": [0.0, 3.0]})
    jobs["listeners.seed"] = ["7", "8", "8", "7"]  # d4's first job is d5's second listener
    table, _ = aggregate(jobs)
    assert list(table["n_seeds"]) == [2, 2]  # listeners.seed does not make configurations
    assert table.loc[1, "n_paired"] == 0  # (seed, listeners.seed) never the same in both
    assert "share no replicate" in " ".join(aggregate(jobs)[1])


def test_undefined_scores_and_few_replicates_are_said():
    jobs = jobs_of({"5": [0.5, None, 0.7], "4": [0.1, 0.2, 0.3]})
    table, notes = aggregate(jobs)
    assert table.loc[0, "normalized_score"] == pytest.approx(0.6) and table.loc[0, "n_seeds"] == 3
    assert table.loc[1, "n_paired"] == 2  # the replicate without a score is left out of the pairs
    assert any(n.startswith("normalized_score: undefined in 1 of 6 jobs (1_d5_s1)") for n in notes), notes
    assert any("2 of 2 configurations have fewer than 5 replicates (fewest: 3)" in n for n in notes), notes


def write_job(sweep, name: str, overrides: list[str], score: float | None) -> None:
    """A finished job folder as a sweep leaves it: its overrides and a metrics.json (the figures compare reads)."""
    (sweep / name / ".hydra").mkdir(parents=True)
    (sweep / name / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    policy = {"mean_reward": 1.0, "mean_expected_reward": 1.0, "like_rate": 0.1, "skip_rate": 0.2, "coverage": 0.3}
    policies = {"ppo": policy, "random": {**policy, "mean_expected_reward": 0.5},
                "oracle": {**policy, "mean_expected_reward": 1.5}, "greedy": policy}
    metrics = {"policies": policies, "normalized_score": score,
               "normalized_score_reason": None if score is not None else "the oracle scores as random does"}
    (sweep / name / "metrics.json").write_text(json.dumps(metrics))


def test_compare_writes_its_files_and_says_what_the_figures_cannot(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for seed in range(3):
        write_job(sweep, f"{2 * seed}_d2_s{seed}", ["vae.latent_dim=2", f"seed={seed}"], 0.1 * seed)
        write_job(sweep, f"{2 * seed + 1}_d5_s{seed}", ["vae.latent_dim=5", f"seed={seed}"],
                  None if seed == 2 else 1.0 + seed)
    assert run_cli("compare", str(sweep)) == 0
    out = capsys.readouterr().out
    assert "note: normalized_score: undefined in 1 of 6 jobs (5_d5_s2)" in out
    assert "note: 2 of 2 configurations have fewer than 5 replicates" in out
    table = pd.read_csv(sweep / "compare.csv")
    assert list(table["vae.latent_dim"]) == [5, 2]
    for column in ("n_seeds", "normalized_score", "normalized_score_ci95", "normalized_score_iqm",
                   "normalized_score_iqm_lo", "normalized_score_iqm_hi", "poi_best", "poi_best_lo", "poi_best_hi",
                   "n_paired", "greedy_normalized_score"):
        assert column in table.columns, column
    assert table.loc[1, "poi_best"] == 1.0 and table.loc[1, "n_paired"] == 2
    assert len(pd.read_csv(sweep / "compare_jobs.csv")) == 6
    assert (sweep / "compare.png").read_bytes()[:4] == b"\x89PNG"
