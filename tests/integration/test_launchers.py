"""Launcher and sweeper plugins without training: a plugin that is not installed, or a Ray cluster that is not
there, is one error line; an Optuna trial whose score is undefined fails and the study goes on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, TINY, last_line, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("sweeps")]  # one worker: Ray instances never overlap

OPTUNA_TINY = "+experiment=[optuna_ppo,tiny]"  # conf/experiment/optuna_ppo.yaml on the tests' budget
# what `pip install -e ".[dev]"` without the extra "sweeps" leaves out, shown by hiding it from the import system
NOT_INSTALLED = [
    ("hydra_plugins.hydra_ray_launcher", (*TINY, "hydra/launcher=ray_local"),
     "hydra/launcher/ray: the Hydra plugin hydra-ray-launcher is not installed"),
    ("ray", (*TINY, "hydra/launcher=ray_cluster"), "hydra-ray-launcher: cannot import ray, not installed"),
    ("hydra_plugins.hydra_optuna_sweeper", (OPTUNA_TINY,),
     "hydra/sweeper/optuna: the Hydra plugin hydra-optuna-sweeper is not installed"),
    ("optuna", (OPTUNA_TINY,), "hydra-optuna-sweeper: cannot import optuna, not installed"),
    ("hydra_plugins.hydra_submitit_launcher", (*TINY, "hydra/launcher=slurm"),
     "hydra/launcher/submitit_slurm: the Hydra plugin hydra-submitit-launcher is not installed"),
    ("submitit", (*TINY, "hydra/launcher=local"), "hydra-submitit-launcher: cannot import submitit, not installed"),
]


def sweep_without(module: str, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    """``music-rl train -m overrides`` with ``module`` missing (None in sys.modules: importing it fails)."""
    code = (f"import sys; sys.modules[{module!r}] = None\n"
            f"from music_rl.cli.main import main; sys.argv = ['music-rl', 'train', '-m', *{list(overrides)!r}]; main()")
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)


def one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = last_line(proc.stderr)
    assert last.startswith("error: "), proc.stderr[-3000:]
    return last


@pytest.mark.parametrize("module, overrides, message", NOT_INSTALLED, ids=[m for m, _, _ in NOT_INSTALLED])
def test_a_plugin_not_installed_is_one_line_naming_the_extra(tmp_path, module, overrides, message):
    proc = sweep_without(module, *overrides, "seed=0", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=ROOT)
    line = one_line(proc)
    assert message in line and 'pip install -e ".[sweeps]"' in line, line


def test_a_ray_cluster_that_is_not_there_is_one_line(tmp_path):
    # an empty Ray temp folder: `address: auto` finds no cluster started from it
    proc = sweep_without("nothing", *TINY, "hydra/launcher=ray_cluster", "seed=0",
                         f"+hydra.launcher.ray.init._temp_dir={tmp_path}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                         cwd=ROOT)
    line = one_line(proc)
    assert "cannot reach its cluster: Could not find any running Ray instance" in line
    assert "hydra.launcher.ray.init.address=" in line


def fake_run(scores: list[float | None]):
    """A stand-in for music_rl.training.pipeline.run that returns the next of ``scores`` as the job's
    normalized_score."""
    def run(cfg, run_dir: Path) -> dict:
        score = scores.pop(0)
        run_dir.mkdir(parents=True, exist_ok=True)
        return {"normalized_score": score, "normalized_score_reason": "the oracle scores as random does",
                "policies": {"ppo": {"mean_reward": 1.0, "mean_reward_ci95": 0.1, "like_rate": 0.1}}}
    return run


def test_an_undefined_score_fails_its_optuna_trial_and_the_study_goes_on(tmp_path, monkeypatch):
    import music_rl.training.pipeline

    monkeypatch.setattr(music_rl.training.pipeline, "run", fake_run([None, 0.5, 0.25]))
    status = run_cli("train", "-m", "+experiment=optuna_ppo", "hydra/launcher=basic", "hydra.sweeper.n_trials=3",
                     "hydra.sweeper.n_jobs=1", f"hydra.sweep.dir={tmp_path}")
    assert status == 0
    results = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert results["best_value"] == 0.5  # trial 0 failed, trials 1 and 2 ran and were scored
