"""Sweeps: a 2-job multirun under the joblib launcher and under submitit_local (``hydra/launcher=local``),
and determinism across them: a job's ``metrics.json`` is byte-identical to the same config run singly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TINY, run_cli

pytestmark = pytest.mark.slow  # trains (a tiny budget, still seconds per test)

SEEDS = (0, 1)


def command(*overrides: str, multirun: bool = False) -> list[str]:
    flags = ["-m"] if multirun else []
    return [sys.executable, str(ROOT / "scripts" / "train.py"), *flags, *TINY, *overrides]


def check(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])


def sweep(sweep_dir: Path, *launcher: str) -> list[Path]:
    """A 2-job sweep over the seeds; returns the job folders in job order."""
    seeds = ",".join(map(str, SEEDS))
    check(subprocess.run(command(f"seed={seeds}", *launcher, f"hydra.sweep.dir={sweep_dir}", multirun=True),
                         cwd=ROOT, capture_output=True, text=True, timeout=600))
    return [sweep_dir / f"{job}_+experiment-tiny+seed-{seed}" for job, seed in enumerate(SEEDS)]


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


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=local"]], ids=["joblib", "submitit_local"])
def test_a_two_job_sweep_gives_each_job_a_whole_run_folder_identical_to_the_single_run(tmp_path, single_runs,
                                                                                        launcher):
    jobs = sweep(tmp_path / "sweep", *launcher)
    for job, single in zip(jobs, single_runs, strict=True):
        for name in ("metrics.json", "run_info.json", "ppo.zip", "vae.pt", "world/latents.npy",
                     ".hydra/config.yaml"):
            assert (job / name).is_file(), (job, name)
        assert (job / "metrics.json").read_bytes() == (single / "metrics.json").read_bytes()
        for array in sorted((single / "world").glob("*.npy")):  # K-Means too, whatever the worker's threads
            assert (job / "world" / array.name).read_bytes() == array.read_bytes(), array.name
    # different seeds, different results
    assert (jobs[0] / "metrics.json").read_bytes() != (jobs[1] / "metrics.json").read_bytes()
    if launcher:
        assert list((tmp_path / "sweep" / ".submitit").glob("*/*_log.out"))  # it ran through submitit
    else:  # job folders that the other commands take unquoted
        assert run_cli("evaluate", f"run_dir={jobs[0]}", "n_episodes=2") == 0
        assert run_cli("compare", str(tmp_path / "sweep")) == 0
        assert (tmp_path / "sweep" / "compare.csv").is_file()


def test_a_sweep_whose_folder_names_are_too_long_fails_with_one_line(tmp_path):
    proc = subprocess.run(command("seed=0,1", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                                  "hydra.sweep.subdir=" + "x" * 300 + "${hydra.job.num}", multirun=True),
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.rstrip().splitlines()[-1].startswith("error: ")
    assert "File name too long" in proc.stderr and "hydra.sweep.subdir='${hydra.job.num}'" in proc.stderr
