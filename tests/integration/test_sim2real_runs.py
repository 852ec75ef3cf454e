"""``music-rl train`` with the fidelity protocol on (``sim2real.enabled``, what ``+experiment=sim2real`` sets) on the
tiny budget: metrics.json["sim2real"], its files, and the settings it refuses in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import error_line, train_here, train_in_process

from music_rl.data.feedback import read_feedback

SIM2REAL = ("sim2real.enabled=true", "eval.protocol=population", "env.reward_source=simulator",
            "listeners.population=30", "env.session_length=10", "eval.planner.n_episodes=2",
            "sim2real.log_sessions=300", "sim2real.log_sizes=[120]", "sim2real.eval_sessions=2",
            "sim2real.n_bootstrap=50", "listeners.learnt.max_epochs=4")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim2real") / "run"
    train_in_process(out, *SIM2REAL)
    return out


def test_metrics_hold_the_three_measures_at_every_log_size(run: Path) -> None:
    s2r = json.loads((run / "metrics.json").read_text())["sim2real"]
    assert s2r["log_sessions"] == 300 and [e["log_sessions"] for e in s2r["log_sizes"]] == [120, 300]
    assert s2r["listeners"] == {"population": 30, "held_out": 6, "stop": 6, "fit": 18}
    for entry in s2r["log_sizes"]:
        predictive = entry["predictive"]
        for model in ("learnt", "reference", "rates", "previous"):
            assert predictive[model]["log_likelihood"] < 0
        # the listener that generated the log predicts it best: the ceiling
        assert predictive["reference"]["log_likelihood"] > predictive["rates"]["log_likelihood"]
        ranking = entry["ranking"]
        assert set(ranking["policies"]) == {"random", "nearest", "greedy", "affinity", "linucb", "ppo", "ppo_learnt",
                                            "ppo_latent_learnt"}
        assert ranking["policies"]["random"] == {"learnt": 0.0, "reference": 0.0}
        assert -1 <= ranking["kendall_tau"] <= 1 and len(ranking["ci95"]) == 2
        assert ranking["mean_abs_difference"] >= 0
        assert isinstance(entry["transfer"]["ratio"], float) and len(entry["transfer"]["ci95"]) == 2
        assert entry["sessions"]["held_out"] > 0 and entry["sessions"]["fit"] > entry["sessions"]["stop"] > 0
    assert s2r["predictive"] == s2r["log_sizes"][1]["predictive"]


def test_the_log_has_propensities_and_each_size_its_listener_and_learners(run: Path) -> None:
    log = read_feedback(run / "sim2real" / "log.csv")
    assert log["session_id"].nunique() == 300 and log["user_id"].nunique() == 30
    assert (log["action_prob"] == 0.25).all() and log["candidates"].str.split().str.len().eq(4).all()
    for size in (120, 300):
        folder = run / "sim2real" / f"log{size}"
        assert (folder / "listener" / "model.pt").is_file() and (folder / "listener" / "fidelity.json").is_file()
        assert (folder / "ppo" / "ppo.zip").is_file() and (folder / "ppo_latent" / "ppo.zip").is_file()
    run_info = json.loads((run / "run_info.json").read_text())
    assert run_info["cpu_time_s"]["sim2real"] > 0


@pytest.mark.parametrize(("override", "named"), [
    ("env.action=latent", "error: env.action='latent': sim2real.enabled needs env.action=discrete"),
    ("listeners.model=learnt", "error: listeners.model="),
    ("sim2real.log_sessions=5", "error: sim2real.log_sessions=5: must be an integer >= 10"),
    ("env.reward_source=propagated", "error: env.reward_source='propagated': sim2real.enabled needs "
                                     "env.reward_source=simulator"),
    ("sim2real.log_sizes=[20]", "error: sim2real.log_sizes=[20, 300]: every log size (and sim2real.log_sessions) "
                                "must be >= listeners.population=30"),
    ("listeners.population=20", "error: listeners.population=20: sim2real.enabled holds out 4 listener(s)"),
])
def test_settings_the_protocol_cannot_run_are_refused_in_one_line(tmp_path: Path, override: str, named: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    extra = ("listeners.fit_log=x.csv",) if override == "listeners.model=learnt" else ()
    kept = [o for o in SIM2REAL if o.split("=")[0] != override.split("=")[0]]
    proc = train_here(capsys, tmp_path / "run", *kept, override, *extra)  # refused before any work: in this process
    line = error_line(proc)
    assert line.startswith(named)
    assert not (tmp_path / "run" / "metrics.json").exists()
