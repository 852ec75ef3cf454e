"""music-rl compare's jobs: the scores and times a job reports, read from its run folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from music_rl.reports.sweep import aggregate, collect_sweep

POLICY = {"mean_reward": 1.0, "mean_expected_reward": 1.0, "like_rate": 0.1, "skip_rate": 0.5, "coverage": 0.01}


def make_job(sweep: Path, name: str, overrides: list[str], score: float, run_info: dict | None) -> None:
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    policies = {p: dict(POLICY) for p in ("dqn", "random", "greedy", "oracle", "oracle_catalog")}
    policies["random"]["mean_expected_reward"], policies["oracle"]["mean_expected_reward"] = 0.0, 2.0
    (job / "metrics.json").write_text(json.dumps({
        "policies": policies, "algo": "dqn", "normalized_score": score, "normalized_score_catalog": score / 4}))
    if run_info is not None:
        (job / "run_info.json").write_text(json.dumps(run_info))


def test_a_job_reports_the_learners_wall_and_cpu_time_and_its_own(tmp_path):
    times = {"wall_time_s": {"catalog": 1.0, "vae": 2.0, "dqn": 30.0, "evaluation": 4.0},
             "cpu_time_s": {"catalog": 0.5, "vae": 1.5, "dqn": 25.0, "evaluation": 3.0}}
    make_job(tmp_path, "0_seed-0", ["learner=dqn_discrete", "seed=0"], 1.0, times)
    make_job(tmp_path, "1_seed-1", ["learner=dqn_discrete", "seed=1"], 0.6,
             {"wall_time_s": {"dqn": 10.0}})  # a run from before cpu_time_s
    make_job(tmp_path, "2_seed-2", ["learner=dqn_discrete", "seed=2"], 0.8, None)  # no run_info.json
    jobs, skipped = collect_sweep(tmp_path)
    assert not skipped
    first = jobs.iloc[0]
    assert (first["ppo_seconds"], first["ppo_cpu_seconds"], first["job_seconds"]) == (30.0, 25.0, 37.0)
    assert jobs["ppo_cpu_seconds"].isna().tolist() == [False, True, True]
    assert jobs["job_seconds"].iloc[1] == 10.0 and jobs["normalized_score_catalog"].tolist() == [0.25, 0.15, 0.2]
    table, _ = aggregate(jobs)
    row = table.iloc[0]
    assert row["learner"] == "dqn_discrete" and row["n_seeds"] == 3
    assert row["ppo_cpu_seconds"] == 25.0 and row["job_seconds"] == pytest.approx((37.0 + 10.0) / 2)
    assert row["normalized_score_catalog_iqm_lo"] <= row["normalized_score_catalog_iqm"] <= row[
        "normalized_score_catalog_iqm_hi"]
