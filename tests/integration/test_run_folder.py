"""Nothing lost, nothing silently wrong: run folders are never overwritten, one writer at a time, failures of
sweep jobs are reported while the other jobs finish, results are strict JSON, inputs are checked before any
folder is created."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, TINY, command, last_line, run_cli, train_command, train_here, train_in_process

from music_rl.core.atomic import write_json_atomic
from music_rl.data.feedback_store import FeedbackStore
from music_rl.evaluation.evaluate import Episode, normalized_score, score_undefined, summarise
from music_rl.learners.models import model_versions
from music_rl.runs.run_folder import hold

pytestmark = pytest.mark.slow  # trains (a tiny budget, still seconds per test)


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (the lock file aside)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def one_line(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """The process ended with exit 2 and one ``error:`` line (its last line), holding every fragment."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = last_line(proc.stderr)
    assert last.startswith("error: "), proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in last, (fragment, last)
    return last


def strict_json(path: Path) -> dict:
    """``path`` parsed as strict JSON (a NaN or Infinity token fails)."""
    def refuse(token: str) -> None:
        raise AssertionError(f"{path}: {token} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished tiny run, trained in this process; the tests below take copies. Commands that refuse before any
    work run in this process too (:func:`conftest.train_here`); those whose process is the point (two at once, a
    sweep, the current folder) run as the console runs them."""
    out = tmp_path_factory.mktemp("finished") / "run"
    train_in_process(out)
    return out


# ------------------------------------------------------------------------------------------- never overwritten

def test_a_second_run_into_a_finished_folder_is_refused_and_changes_nothing(finished, tmp_path, capsys):
    run = Path(shutil.copytree(finished, tmp_path / "run"))
    before = digest(run)
    line = one_line(train_here(capsys, run), f"{run}: holds a finished run (metrics.json", "resume=true",
                    "overwrite=true")
    assert "Traceback" not in line and digest(run) == before


def test_resume_with_another_config_names_the_keys(finished, tmp_path, capsys):
    run = Path(shutil.copytree(finished, tmp_path / "run"))
    before = digest(run)
    one_line(train_here(capsys, run, "resume=true", "seed=7", "reward.like_weight=100"),
             "resume=true with another config", "reward.like_weight: 10.0 -> 100.0", "seed: 0 -> 7",
             "ppo.total_timesteps")
    assert digest(run) == before


def test_resume_keeps_the_saved_config_where_a_default_changed_since(finished, tmp_path, capsys):
    run = Path(shutil.copytree(finished, tmp_path / "run"))
    saved = run / ".hydra" / "config.yaml"
    # as if the run had started under an older default of a key that may not change on resume
    saved.write_text(saved.read_text().replace("    n_episodes: 50\n    width:", "    n_episodes: 3\n    width:"))
    train_in_process(run, "resume=true", "ppo.total_timesteps=2048")
    assert "n_episodes: 3\n" in saved.read_text() and "total_timesteps: 2048" in saved.read_text()
    assert json.loads((run / "metrics.json").read_text())["planner_episodes"] == 3  # the saved value ran
    # a key set on the command line still has to match
    one_line(train_here(capsys, run, "resume=true", "ppo.total_timesteps=2048", "eval.planner.n_episodes=4"),
             "resume=true with another config", "eval.planner.n_episodes: 3 -> 4")


def test_resume_of_a_finished_run_with_nothing_to_continue_from_is_refused(finished, tmp_path, capsys):
    run = Path(shutil.copytree(finished, tmp_path / "run"))
    shutil.rmtree(run / "world")
    before = digest(run)
    one_line(train_here(capsys, run, "resume=true"), "resume=true on a finished run with no world/ or no ppo "
             "checkpoint to continue from: a fresh run would replace it; overwrite=true moves it aside first")
    assert digest(run) == before


def test_resume_of_a_fine_tuned_run_is_refused(finished, tmp_path, capsys):
    run = Path(shutil.copytree(finished, tmp_path / "run"))
    shutil.copy(run / "ppo.zip", run / "ppo-v2.zip")
    before = digest(run)
    one_line(train_here(capsys, run, "resume=true", "ppo.total_timesteps=4096"),
             "resume=true on a fine-tuned run (ppo-v2.zip)")
    assert digest(run) == before


def test_overwrite_moves_the_old_run_aside_and_deletes_nothing(finished, tmp_path):
    run = Path(shutil.copytree(finished, tmp_path / "run"))
    before = digest(run)
    train_in_process(run, "overwrite=true", "seed=1")
    (aside,) = tmp_path.glob("run.replaced-*")
    assert digest(aside) == before  # the old run, whole, under its new name
    assert strict_json(run / "metrics.json") != strict_json(aside / "metrics.json")  # the new run, seed 1


# ------------------------------------------------------------------------------------------- one writer

def test_two_trainings_into_one_folder_one_refused_at_once(tmp_path):
    run = tmp_path / "run"
    cmd = train_command(run, "ppo.total_timesteps=4096")
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [subprocess.CompletedProcess(p.args, p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(r.returncode for r in results)
    assert codes == [0, 2], [r.stderr[-2000:] for r in results]
    loser = next(r for r in results if r.returncode == 2)
    assert ("in use by pid" in loser.stderr or "holds a finished run" in loser.stderr), loser.stderr[-2000:]
    assert strict_json(run / "metrics.json")["n_episodes"] == 6  # one whole run, not a mix


def test_default_run_folders_stay_unique_when_two_runs_start_together(tmp_path):
    cmd = command("train", *TINY)
    procs = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    assert len(list((tmp_path / "outputs" / "runs").glob("*/*/metrics.json"))) == 2


def test_concurrent_finetunes_with_the_same_file_log_it_once(pristine, tmp_path):
    run = Path(shutil.copytree(pristine, tmp_path / "run"))
    n_logged = len(FeedbackStore(run / "feedback.csv").read())
    new = pd.DataFrame({"user_id": ["u1"] * 3, "session_id": ["s"] * 3, "position": [1, 2, 3],
                        "track_id": ["syn00000001", "syn00000002", "syn00000003"],
                        "percentage_listened": [1.0, 0.2, 0.9], "liked": [1, 0, 1]})
    new.to_csv(tmp_path / "new.csv", index=False)
    cmd = command("finetune", f"run_dir={run}", f"feedback={tmp_path / 'new.csv'}",
                  "timesteps=512")
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    assert len(FeedbackStore(run / "feedback.csv").read()) == n_logged + 3  # landed once
    assert model_versions(run) == [1, 2, 3]  # each its own version


def test_a_writer_waits_for_the_lock_then_gives_up_in_one_line(pristine, tmp_path, capsys):
    run = Path(shutil.copytree(pristine, tmp_path / "run"))
    pd.DataFrame({"user_id": ["u"], "session_id": ["s"], "position": [1], "track_id": ["syn00000001"],
                  "percentage_listened": [1.0], "liked": [1]}).to_csv(tmp_path / "new.csv", index=False)
    code = f"from music_rl.runs.run_folder import hold; from pathlib import Path; import time\n" \
           f"with hold(Path({str(run)!r}), command='a test'):\n    print('held', flush=True); time.sleep(30)\n"
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        status = run_cli("finetune", f"run_dir={run}", f"feedback={tmp_path / 'new.csv'}", "lock_timeout=1")
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 2 and err[-1].startswith(f"error: {run}: in use by pid {holder.pid}, a test, since")
        assert "waited 1 s" in err[-1] and model_versions(run) == [1]
    finally:
        holder.kill()
        holder.wait()
    with hold(run):  # released when its holder died
        pass


# ------------------------------------------------------------------------------------------- sweeps

def test_a_sweep_with_a_failing_job_finishes_the_others_and_reports_it(tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run(command("train", "-m", *TINY, "reward.n_clusters=8,3000", f"hydra.sweep.dir={sweep}"),
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    one_line(proc, "1 of 2 jobs of the sweep failed", str(sweep))
    assert "failed: 1_+experiment-tiny+reward.n_clusters-3000 (+experiment=tiny reward.n_clusters=3000): " \
           "reward.n_clusters=3000: must be <= the catalog size (1500 tracks)" in proc.stderr
    assert "BrokenProcessPool" not in proc.stderr
    strict_json(sweep / "0_+experiment-tiny+reward.n_clusters-8" / "metrics.json")  # the other job finished
    # compare names the failed job and compares the rest
    assert run_cli("compare", str(sweep)) == 0
    # the same sweep again into its folder: refused, unless resumed
    again = subprocess.run(command("train", "-m", *TINY, "reward.n_clusters=8,3000", f"hydra.sweep.dir={sweep}"),
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    one_line(again, f"{sweep}: holds 2 job folder(s) of an earlier sweep", "resume=true")


def test_compare_skips_broken_and_unfinished_jobs(finished, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for name in ("0_a", "1_b", "2_c"):
        shutil.copytree(finished, sweep / name)
    (sweep / "1_b" / "metrics.json").write_text("{not json")
    (sweep / "2_c" / "metrics.json").unlink()
    assert run_cli("compare", str(sweep)) == 0
    err = capsys.readouterr().err
    assert "skipped 1_b: broken metrics.json" in err and "skipped 2_c: unfinished (no metrics.json)" in err
    assert len(pd.read_csv(sweep / "compare_jobs.csv")) == 1


# ------------------------------------------------------------------------------------------- validation first

@pytest.mark.parametrize("override, fragments", [
    ("seed=-1", ["seed=-1: must be an integer in 0..4294967295"]),
    ("seed=4294967296", ["seed=4294967296"]),
    ("listeners.seed=-5", ["listeners.seed=-5"]),
    ("data.seed=-1", ["data.seed=-1"]),
    ("reward.like_weight=1e308", ["reward.like_weight=1e+308: must be a number in [0, 1e+06]"]),
    ("reward.like_weight=inf", ["reward.like_weight=inf"]),
    ("reward.early_skip_penalty=nan", ["reward.early_skip_penalty=nan"]),
    ("reward.prior=1e400", ["reward.prior='inf': must be one of global_mean, zero or a number"]),
    ("data=csv data.path=/no/such/tracks.csv", ["data.path='/no/such/tracks.csv': no such file"]),
    ("data=csv data.path=/tmp", ["data.path='/tmp': a directory, not a regular file"]),
    ("data.path=/tmp/x.csv", ["data.path='/tmp/x.csv': is set but data.source=synthetic: add data=csv"]),
    ("ppo.ent_coef=inf", ["ppo.ent_coef=inf: must be in [0, 1000]"]),
    ("listeners.drift=inf", ["listeners.drift=inf: must be a finite number"]),
    ("vae.lr=1e10", ["vae.lr=10000000000.0: must be in (0, 1]"]),
    ("eval.protocol=population listeners.held_out_fraction=0", ["eval.protocol=population holds out no listener"]),
])
def test_bad_values_and_inputs_fail_before_any_run_folder(tmp_path, capsys, override, fragments):
    run = tmp_path / "run"
    one_line(train_here(capsys, run, *override.split()), *fragments)
    assert not run.exists()


@pytest.mark.parametrize("command, args", [
    ("recommend", ["track_id=syn00000001", "seed=-1"]),
    ("recommend", ["cold_start=true", "listener_seed=-2"]),
    ("finetune", ["feedback=x.csv", "seed=-3"]),
    ("simulate", ["listener_seed=4294967296"]),
])
def test_every_command_checks_its_seeds(pristine, capsys, command, args):
    assert run_cli(command, f"run_dir={pristine}", *args) == 2
    assert "must be an integer in 0..4294967295 (a seed)" in capsys.readouterr().err


def test_a_degenerate_catalog_is_one_line_and_no_nan_is_written(tmp_path, capsys):
    tracks = pd.read_csv(ROOT / "tests" / "fixtures" / "bad" / "good.csv")
    features = tracks.columns[4:]
    constant = pd.concat([tracks] * 8, ignore_index=True)
    constant["track_id"] = [f"t{i}" for i in range(len(constant))]
    constant[features] = constant[features].iloc[0].to_numpy()
    constant.to_csv(tmp_path / "constant.csv", index=False)
    one_line(train_here(capsys, tmp_path / "run", "data=csv", f"data.path={tmp_path / 'constant.csv'}",
                        "env.session_length=4"),
             "constant.csv (normalised features): every one of the 64 tracks is the same")
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_undefined_metrics_are_null_with_their_reason(tmp_path):
    tie = {"random": {"mean_expected_reward": 1.0}, "oracle": {"mean_expected_reward": 1.0},
           "ppo": {"mean_expected_reward": 1.0}}
    assert normalized_score(tie, key="mean_expected_reward") is None
    assert "no scale" in score_undefined(tie, "mean_expected_reward")
    one = summarise([Episode(*(np.ones(3),) * 5, tracks=np.arange(3))], np.zeros((4, 2)))
    assert one["mean_reward_ci95"] is None and "one session" in one["ci95_reason"]
    write_json_atomic(tmp_path / "m.json", one)
    strict_json(tmp_path / "m.json")
    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "bad.json", {"x": float("nan")})


def test_a_budget_below_one_rollout_says_so(tmp_path, capsys):
    """Every on-policy learner (ppo, recurrent_ppo, a2c: one message) says that it trains a whole rollout."""
    proc = train_here(capsys, tmp_path / "run", "algo=recurrent_ppo", "recurrent_ppo.total_timesteps=100")
    assert proc.returncode == 0, proc.stderr[-2000:]
    said = ("recurrent_ppo.total_timesteps=100 leaves 100 steps, less than one rollout (recurrent_ppo.n_steps x "
            "recurrent_ppo.n_envs = 512): recurrent_ppo trains one whole rollout, 512 steps")
    assert said in proc.stdout + proc.stderr


def test_out_that_is_a_directory_and_a_model_of_another_world_are_one_line(finished, tmp_path, capsys):
    assert run_cli("evaluate", f"run_dir={finished}", f"out={tmp_path}") == 2
    assert f"out='{tmp_path}': a directory" in capsys.readouterr().err
    other = tmp_path / "other"
    train_in_process(other, "vae.latent_dim=2")
    run = Path(shutil.copytree(finished, tmp_path / "run"))
    shutil.copy(other / "ppo.zip", run / "ppo.zip")
    for args in (("n_episodes=2",), (f"log={finished / 'exploration.csv'}",)):  # scoring and estimating check it
        assert run_cli("evaluate", f"run_dir={run}", *args) == 2
        err = capsys.readouterr().err.strip()
        assert "Traceback" not in err
        assert "ppo.zip: reads observations" in err.splitlines()[-1] and "a model of another run?" in err


def test_metrics_and_run_info_are_strict_json(finished):
    for name in ("metrics.json", "run_info.json", "world/meta.json"):
        strict_json(finished / name)
    assert not os.path.exists(finished / ".lock.json")  # the lock was released


@pytest.mark.parametrize("run_dir, fragment", [("", "a run needs a folder of its own"),
                                               ("{file}", "a regular file, not a folder")])
def test_an_empty_run_folder_or_a_file_is_refused(tmp_path, run_dir, fragment):
    (tmp_path / "a_file").write_text("x")
    cmd = command("train", *TINY, f"hydra.run.dir={run_dir.format(file=tmp_path / 'a_file')}")
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    one_line(proc, fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # nothing written in the current folder


def test_evaluate_never_replaces_a_file_of_a_run(finished, tmp_path, capsys):
    before = digest(finished)
    for out in (finished / "metrics.json", finished / "world" / "meta.json", finished / "metrics.json" / "x.json"):
        assert run_cli("evaluate", f"run_dir={finished}", "n_episodes=2", f"out={out}") == 2
        assert "error: " in capsys.readouterr().err
    assert digest(finished) == before
    assert run_cli("evaluate", f"run_dir={finished}", "n_episodes=2", f"out={tmp_path / 'm.json'}") == 0
    strict_json(tmp_path / "m.json")


def test_two_sweeps_into_one_folder_one_refused_at_once(tmp_path):
    sweep = tmp_path / "sweep"
    cmd = command("train", "-m", *TINY, "seed=0,1", f"hydra.sweep.dir={sweep}")
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [subprocess.CompletedProcess(p.args, p.wait(timeout=600), *p.communicate()) for p in procs]
    assert sorted(r.returncode for r in results) == [0, 2], [r.stderr[-2000:] for r in results]
    loser = next(r for r in results if r.returncode == 2)
    # the holder named ("in use by pid ...") or, when the loser looks before the holder has written who it is,
    # "in use by another process"; or, once the winner has finished, its jobs
    assert "in use by" in loser.stderr or "holds 2 job folder(s)" in loser.stderr
    for job in sweep.glob("*_*"):
        assert (job / "metrics.json").is_file() and not (job / "failed.json").exists()
