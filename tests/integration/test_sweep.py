"""Sweeps: a 2-job multirun under the joblib launcher, submitit_local (``hydra/launcher=local``) and a Ray instance
started for the sweep (``hydra/launcher=ray_local``), with determinism across them: a job's ``metrics.json`` is
byte-identical to the same config run singly; a Ray cluster given by its address (``hydra/launcher=ray_cluster``)
with a failing job reported; a 2-trial Optuna study (``+experiment=optuna_ppo``)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import MUSIC_RL, ROOT, TINY, last_line, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("sweeps")]  # one worker: Ray instances never overlap

SEEDS = (0, 1)
# Ray on this machine's loopback only (its node address 127.0.0.1, not the network's), no usage statistics, no
# token written to ~/.ray
RAY_ENV = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "disabled"}
RAY_CPUS = 2
RAY_OBJECT_STORE = 78_643_200  # bytes: Ray's smallest


def command(*overrides: str, multirun: bool = False) -> list[str]:
    flags = ["-m"] if multirun else []
    return [MUSIC_RL, "train", *flags, *TINY, *overrides]


def check(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])


def sweep(sweep_dir: Path, *launcher: str) -> list[Path]:
    """A 2-job sweep over the seeds; returns the job folders in job order."""
    seeds = ",".join(map(str, SEEDS))
    check(subprocess.run(command(f"seed={seeds}", *launcher, f"hydra.sweep.dir={sweep_dir}", multirun=True),
                         cwd=ROOT, capture_output=True, text=True, timeout=600, env=RAY_ENV))
    return [sweep_dir / f"{job}_+experiment-tiny+seed-{seed}" for job, seed in enumerate(SEEDS)]


@pytest.fixture
def ray_temp() -> Iterator[Path]:
    """A short folder for Ray's files (its socket paths must stay under 108 characters), removed after."""
    folder = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def single_runs(tmp_path_factory) -> list[Path]:
    """The same configs run one by one (both at once: they are independent processes)."""
    out = tmp_path_factory.mktemp("single")
    runs = [out / f"seed{seed}" for seed in SEEDS]
    procs = [subprocess.Popen(command(f"seed={seed}", f"hydra.run.dir={run}"), cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for seed, run in zip(SEEDS, runs, strict=True)]
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        check(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return runs


LAUNCHERS = {
    "joblib": [],
    "submitit_local": ["hydra/launcher=local"],
    "ray_local": ["hydra/launcher=ray_local", f"hydra.launcher.ray.init.num_cpus={RAY_CPUS}",
                  f"+hydra.launcher.ray.init.object_store_memory={RAY_OBJECT_STORE}"],
}


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_a_two_job_sweep_gives_each_job_a_whole_run_folder_identical_to_the_single_run(tmp_path, single_runs,
                                                                                        ray_temp, launcher):
    ray = [f"+hydra.launcher.ray.init._temp_dir={ray_temp}"] if launcher.startswith("ray") else []
    jobs = sweep(tmp_path / "sweep", *LAUNCHERS[launcher], *ray)
    for job, single in zip(jobs, single_runs, strict=True):
        for name in ("metrics.json", "run_info.json", "ppo.zip", "vae.pt", "world/latents.npy",
                     ".hydra/config.yaml"):
            assert (job / name).is_file(), (job, name)
        assert (job / "metrics.json").read_bytes() == (single / "metrics.json").read_bytes()
        for array in sorted((single / "world").glob("*.npy")):  # K-Means too, whatever the worker's threads
            assert (job / "world" / array.name).read_bytes() == array.read_bytes(), array.name
    # different seeds, different results
    assert (jobs[0] / "metrics.json").read_bytes() != (jobs[1] / "metrics.json").read_bytes()
    if launcher == "submitit_local":
        assert list((tmp_path / "sweep" / ".submitit").glob("*/*_log.out"))  # it ran through submitit
    elif launcher == "ray_local":  # it ran on Ray, which the sweep stopped at its end
        assert list(ray_temp.glob("session_*/logs/raylet.out"))
        assert not list(ray_temp.glob("session_*/sockets/raylet")), "Ray still running"
    else:  # job folders that the other commands take unquoted
        assert run_cli("evaluate", f"run_dir={jobs[0]}", "n_episodes=2") == 0
        assert run_cli("compare", str(tmp_path / "sweep")) == 0
        assert (tmp_path / "sweep" / "compare.csv").is_file()


def test_a_sweep_whose_folder_names_are_too_long_fails_with_one_line(tmp_path):
    proc = subprocess.run(command("seed=0,1", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                                  "hydra.sweep.subdir=" + "x" * 300 + "${hydra.job.num}", multirun=True),
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert last_line(proc.stderr).startswith("error: ")
    assert "File name too long" in proc.stderr and "hydra.sweep.subdir='${hydra.job.num}'" in proc.stderr


def free_port() -> int:
    """A TCP port free on the loopback now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ray_head(ray_temp: Path) -> Iterator[str]:
    """A Ray head node on the loopback (``ray start --head --block``), stopped by the test: SIGTERM to that
    process ends every Ray process it started. Yields its address."""
    port = free_port()
    log = (ray_temp / "head.log").open("w")
    head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={port}",
                             "--node-ip-address=127.0.0.1", f"--num-cpus={RAY_CPUS}",
                             f"--object-store-memory={RAY_OBJECT_STORE}", "--include-dashboard=false",
                             "--disable-usage-stats", f"--temp-dir={ray_temp}"],
                            cwd=ROOT, env=RAY_ENV, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in (ray_temp / "head.log").read_text():
            assert head.poll() is None and time.monotonic() < deadline, (ray_temp / "head.log").read_text()[-3000:]
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        head.terminate()
        head.wait(timeout=90)
        log.close()


def test_a_sweep_on_a_ray_cluster_reports_a_failing_job_and_finishes_the_other(tmp_path, ray_head):
    sweep_dir = tmp_path / "sweep"
    proc = subprocess.run(command("reward.n_clusters=8,3000", "hydra/launcher=ray_cluster",
                                  f"hydra.launcher.ray.init.address={ray_head}", f"hydra.sweep.dir={sweep_dir}",
                                  multirun=True),
                          cwd=ROOT, capture_output=True, text=True, timeout=600, env=RAY_ENV)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert last_line(proc.stderr).startswith("error: 1 of 2 jobs of the sweep failed")
    assert "reward.n_clusters=3000: must be <= the catalog size (1500 tracks)" in proc.stderr
    assert (sweep_dir / "0_+experiment-tiny+reward.n_clusters-8" / "metrics.json").is_file()
    assert (sweep_dir / "1_+experiment-tiny+reward.n_clusters-3000" / "failed.json").is_file()


@pytest.mark.parametrize(("study", "params"), [
    ("optuna_ppo", {"ppo.learning_rate", "ppo.ent_coef", "ppo.gamma", "ppo.n_epochs", "ppo.clip_range"}),
    ("optuna_time_to_quality", {"ppo.n_envs", "ppo.batch_size", "ppo.n_epochs", "ppo.learning_rate",
                                "ppo.lr_schedule"}),
])
def test_a_two_trial_optuna_study_on_the_tiny_budget(tmp_path, study, params):
    # the study and the tiny budget in one +experiment (the key given once: a second one is refused)
    proc = subprocess.run([MUSIC_RL, "train", "-m", f"+experiment=[{study},tiny]", "hydra.sweeper.n_trials=2",
                           f"hydra.sweep.dir={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    check(proc)
    results = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    jobs = sorted(tmp_path.glob("*/metrics.json"))
    assert len(jobs) == 2 and set(results["best_params"]) == params
    scores = [yaml.safe_load(job.read_text())["normalized_score"] for job in jobs]
    assert results["best_value"] == max(scores)
    assert run_cli("compare", str(tmp_path)) == 0  # each trial its own configuration
