"""Logs in the main job and off-policy evaluation: an MSSD-schema log and track file, a log with unknown tracks,
one that joins nothing, the project's own format with a column mapping, the estimators of every run against
the truth, and ``music-rl evaluate log=...`` on logs written by the project."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import error_line, run_cli, train_here, train_in_process
from mssd import mssd_files

pytestmark = pytest.mark.slow  # trains (a tiny budget, still seconds per test)

SMALL = ("env.session_length=8", "reward.n_clusters=8", "eval.ope_log_steps=600", "eval.planner.n_episodes=4")


@pytest.fixture(scope="module")
def mssd_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mssd")
    tracks, log = mssd_files(folder, unknown=5, no_flag=6)  # as a real log: a few rows with no skip flag
    out = folder / "run"
    said = train_in_process(out, "data=csv", f"data.path={tracks}", f"feedback.path={log}", *SMALL)
    (out / "stdout.txt").write_text(said)
    return out


def test_an_mssd_log_trains_the_main_job(mssd_run):
    text = (mssd_run / "stdout.txt").read_text()
    assert "mssd log" in text and "5 rows whose track is not in the catalog dropped" in text  # reported
    assert "no likes: the reward is the percentage listened" in text and "pooled as one listener" in text
    logged = pd.read_csv(mssd_run / "feedback.csv")
    assert set(logged["user_id"]) == {"mssd"} and (logged["liked"] == 0).all()
    assert (mssd_run / "feedback_holdout.csv").is_file()
    metrics = json.loads((mssd_run / "metrics.json").read_text())
    holdout = metrics["ope_holdout"]
    assert "IPS, SNIPS and DR do not apply" in holdout["not_applicable"]
    assert set(holdout["policies"]["ppo"]) == {"dm"} and holdout["log_steps"] > 0
    assert "not the log's listeners" in metrics["scored_by"]
    info = json.loads((mssd_run / "run_info.json").read_text())["feedback_log"]
    assert info["format"] == "mssd" and info["unknown_rows"] == 5 and info["rows_holdout"] > 0
    assert info["no_flag_rows"] == 6 and "6 rows with no skip flag true read as percentage_listened 0.8" in text
    assert info["rows_joined"] == info["rows_read"] - 5 == info["rows_train"] + info["rows_holdout"]


def test_unknown_tracks_are_fatal_only_when_strict_and_a_log_that_joins_nothing_is_one_line(tmp_path, capsys):
    tracks, log = mssd_files(tmp_path, unknown=3)
    line = error_line(train_here(capsys, tmp_path / "strict", "data=csv", f"data.path={tracks}",
                                 f"feedback.path={log}", "feedback.strict=true", *SMALL))
    assert "3 rows whose track is not in the catalog (e.g. 't_unknown0000')" in line and "strict" in line
    (tmp_path / "other").mkdir()
    other, _ = mssd_files(tmp_path / "other", seed=7)  # the same log, another catalog
    line = error_line(train_here(capsys, tmp_path / "none", "data=csv", f"data.path={other}", f"feedback.path={log}",
                                 *SMALL))
    assert "joins no row of the catalog" in line


def test_a_log_missing_a_column_or_a_folder_is_one_line(tmp_path, capsys):
    tracks, log = mssd_files(tmp_path)
    pd.read_csv(log).drop(columns="skip_2").to_csv(tmp_path / "cut.csv", index=False)
    line = error_line(train_here(capsys, tmp_path / "a", "data=csv", f"data.path={tracks}", "feedback=mssd",
                                 f"feedback.path={tmp_path / 'cut.csv'}", *SMALL))
    assert "missing MSSD column(s) skip_2" in line
    line = error_line(train_here(capsys, tmp_path / "b", f"feedback.path={tmp_path}", *SMALL))
    assert "feedback.path" in line and "a directory" in line and not (tmp_path / "b").exists()


def test_every_run_checks_its_estimators_and_evaluate_replays_its_logs(pristine, tmp_path, capsys):
    metrics = json.loads((pristine / "metrics.json").read_text())
    ope = metrics["ope"]
    assert ope["behaviour"] == "uniform" and ope["log_steps"] > 0
    for name in ("ppo", "ppo_sample", "random", "nearest", "greedy", "oracle"):
        entry = ope["policies"][name]
        assert {"truth", "truth_on_policy", "ips", "snips", "dm", "dr", "pdis"} <= set(entry)
    assert set(ope["rank_correlation"]) == {"ips", "snips", "dm", "dr", "pdis"}
    # the run's own exploration log, replayed with no simulator: the same IPS
    run = Path(shutil.copytree(pristine, tmp_path / "run"))
    assert run_cli("evaluate", f"run_dir={run}", f"log={run / 'exploration.csv'}") == 0
    replayed = json.loads((run / "ope.json").read_text())
    assert replayed["policies"]["ppo"]["ips"]["value"] == pytest.approx(ope["policies"]["ppo"]["ips"]["value"])
    assert "oracle" not in replayed["policies"]  # no listener state in a log
    assert "| ppo |" in capsys.readouterr().out


def test_evaluate_on_a_log_written_by_simulate(pristine, tmp_path, capsys):
    run = Path(shutil.copytree(pristine, tmp_path / "run"))
    assert run_cli("simulate", f"run_dir={run}", "listener_seed=3", "rounds=2", "finetune_every=2",
                   "timesteps=256", "sessions=4", "last=1") == 0
    (log,) = (run / "online").glob("listener3-*.csv")
    logged = pd.read_csv(log)
    online = logged[logged["session_id"].str.contains("-r")]
    assert online["candidates"].notna().all() and online["action_prob"].between(0, 1).all()
    assert set(online["action_prob"].round(6)) <= {round(0.9 + 0.1 / 4, 6), round(0.1 / 4, 6)}
    online.to_csv(tmp_path / "online.csv", index=False)
    assert run_cli("evaluate", f"run_dir={run}", f"log={tmp_path / 'online.csv'}", f"out={tmp_path / 'o.json'}") == 0
    estimates = json.loads((tmp_path / "o.json").read_text())["policies"]["ppo"]
    assert {"ips", "snips", "dm", "dr"} <= set(estimates)


def test_a_log_without_propensities_gets_dm_only_with_the_reason(pristine, tmp_path, capsys):
    logged = pd.read_csv(pristine / "exploration.csv").drop(columns=["candidates", "action_prob"])
    logged.to_csv(tmp_path / "played.csv", index=False)
    assert run_cli("evaluate", f"run_dir={pristine}", f"log={tmp_path / 'played.csv'}",
                   f"out={tmp_path / 'o.json'}") == 0
    out = json.loads((tmp_path / "o.json").read_text())
    assert set(out["policies"]["ppo"]) == {"dm"}
    assert "IPS, SNIPS and DR do not apply: they need the candidates shown and the logging policy's" \
           in out["not_applicable"]
