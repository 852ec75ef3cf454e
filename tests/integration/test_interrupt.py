"""Interruption: SIGTERM, SIGINT and SIGKILL during VAE training, PPO training and fine-tuning (subprocesses).

The run folder stays loadable (artifacts are written to a temporary name, then renamed); SIGTERM/SIGINT
end in one line and exit 128 + signal, PPO saving a checkpoint first; ``resume=true`` continues PPO from
the newest checkpoint and ends at the asked total timesteps, then the run evaluates.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, TINY, command, train_in_process
from conftest import train as train_tiny
from stable_baselines3 import PPO

from envs.world import World
from music_rl.config import load_run_config
from music_rl.data.feedback_store import FeedbackStore
from music_rl.learners.models import latest_checkpoint, model_versions
from music_rl.serving.inference import load_run
from music_rl.training.scoring import reevaluate

pytestmark = pytest.mark.slow  # trains (a tiny budget, still seconds per test)

ROLLOUT = 512  # ppo.n_envs * ppo.n_steps
SLOW_VAE = ["vae.epochs=100000", "vae.patience=100000"]
SLOW_PPO = ["ppo.total_timesteps=10000000"]


def temporaries(folder: Path) -> list[Path]:
    """Temporary files of music_rl.core.atomic under ``folder``."""
    return list(folder.rglob(".*.tmp"))


def start(log: Path, name: str, *args: str) -> subprocess.Popen:
    """Start ``music-rl <name>`` with stdout and stderr into ``log``."""
    with open(log, "w") as out:
        return subprocess.Popen(command(name, *args), cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT)


def wait_for(ready: Callable[[], bool], proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    """Poll until ``ready()``; fail when the process ended first or the time is up."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"ended ({proc.returncode}) before the moment to interrupt it:\n"
                        f"{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"not ready after {timeout} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


def interrupt(proc: subprocess.Popen, signum: int) -> int:
    """Send ``signum`` and wait for the exit status."""
    proc.send_signal(signum)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def train(run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    proc = train_tiny(run_dir, *overrides)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def last_line(log: Path) -> str:
    return [line for line in log.read_text().splitlines() if line.strip()][-1]


def assert_clean_stop(log: Path, status: int, signum: int, *fragments: str) -> None:
    """Exit 128 + signal, the last output line is the one ``error:`` line, no traceback."""
    text = log.read_text()
    assert status == 128 + signum, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert last_line(log).startswith(f"error: interrupted by {signal.Signals(signum).name}"), text[-3000:]
    for fragment in fragments:
        assert fragment in last_line(log)


def num_timesteps(path: Path) -> int:
    return PPO.load(path, device="cpu").num_timesteps


# ------------------------------------------------------------------------------------------- VAE

@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_a_signal_during_vae_training_writes_nothing_partial(tmp_path, signum):
    run, log = tmp_path / "run", tmp_path / "train.log"
    proc = start(log, "train", *TINY, *SLOW_VAE, f"hydra.run.dir={run}")
    wait_for(lambda: "catalog:" in log.read_text(), proc, log)
    time.sleep(0.5)  # inside the epochs
    status = interrupt(proc, signum)
    if signum == signal.SIGKILL:
        assert status == -signal.SIGKILL
    else:
        assert_clean_stop(log, status, signum, "the files written so far are complete")
    assert not (run / "vae.pt").exists() and not (run / "world").exists() and not temporaries(run)


def test_a_run_starting_in_a_folder_removes_what_killed_writers_left(tmp_path):
    from music_rl.training.pipeline import remove_stale_temporaries

    for folder in (tmp_path, tmp_path / "world", tmp_path / "checkpoints"):
        folder.mkdir(exist_ok=True)
    stale = [tmp_path / ".vae.pt.abcd1234.tmp", tmp_path / "world" / ".latents.npy.x_y_z123.tmp",
             tmp_path / "checkpoints" / ".ppo_512_steps.zip.00000000.tmp"]
    kept = [tmp_path / "vae.pt", tmp_path / ".hydra.tmp", tmp_path / "world" / "latents.npy"]
    for path in stale + kept:
        path.write_bytes(b"x")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted(stale)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in stale)


# ------------------------------------------------------------------------------------------- PPO

def first_checkpoint(run: Path) -> Callable[[], bool]:
    return lambda: latest_checkpoint(run / "checkpoints") is not None


def test_sigterm_during_ppo_saves_a_checkpoint_and_resume_ends_at_the_asked_total(tmp_path):
    run, log = tmp_path / "run", tmp_path / "train.log"
    proc = start(log, "train", *TINY, *SLOW_PPO, f"hydra.run.dir={run}")
    wait_for(first_checkpoint(run), proc, log)
    status = interrupt(proc, signal.SIGTERM)
    assert_clean_stop(log, status, signal.SIGTERM, "checkpoint saved in", "continue with resume=true")
    saved = latest_checkpoint(run / "checkpoints")
    steps = int(saved.name.split("_")[1])
    # the checkpoint holds what was trained: whole rollouts, the interrupted one discarded
    assert steps % ROLLOUT == 0 and num_timesteps(saved) == steps
    assert not (run / "ppo.zip").exists() and not (run / "metrics.json").exists() and not temporaries(run)
    World.load(run / "world")

    total = steps + 2 * ROLLOUT
    train(run, "resume=true", f"ppo.total_timesteps={total}")
    assert f"resuming from {saved.name} at {steps} timesteps" in (run / "train.log").read_text()
    assert num_timesteps(run / "ppo.zip") == total
    assert (run / "metrics.json").is_file() and not temporaries(run)


def test_sigkill_during_ppo_then_resume_reaches_the_timesteps_and_evaluates(tmp_path):
    run, log = tmp_path / "run", tmp_path / "train.log"
    proc = start(log, "train", *TINY, *SLOW_PPO, f"hydra.run.dir={run}")
    wait_for(first_checkpoint(run), proc, log)
    time.sleep(0.3)
    assert interrupt(proc, signal.SIGKILL) == -signal.SIGKILL
    saved = latest_checkpoint(run / "checkpoints")
    steps = int(saved.name.split("_")[1])
    assert num_timesteps(saved) == steps  # whole, loadable
    World.load(run / "world")

    total = steps + 2 * ROLLOUT
    train(run, "resume=true", f"ppo.total_timesteps={total}")
    assert num_timesteps(run / "ppo.zip") == total
    cfg = load_run_config(run)
    cfg.eval.n_episodes = 4
    metrics = reevaluate(run, cfg)
    assert set(metrics["policies"]) >= {"ppo", "random", "oracle"}
    assert np.isfinite(metrics["normalized_score"])


# ------------------------------------------------------------------------------------------- fine-tuning

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished tiny run (trained in this process: the fine-tunings below are the processes interrupted)."""
    run = tmp_path_factory.mktemp("interrupt") / "run"
    train_in_process(run)
    return run


def feedback_file(run: Path, path: Path) -> Path:
    ids = pd.read_csv(run / "world" / "tracks.csv", dtype=str, keep_default_na=False)["track_id"][:6]
    pd.DataFrame({"user_id": "me", "session_id": "s1", "position": np.arange(1, 7), "track_id": ids,
                  "percentage_listened": np.linspace(0.1, 1.0, 6), "liked": [0, 0, 1, 0, 1, 1]}).to_csv(
        path, index=False)
    return path


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_signal_during_fine_tuning_leaves_the_run_loadable(finished_run, tmp_path, signum):
    run, log = tmp_path / "run", tmp_path / "finetune.log"
    shutil.copytree(finished_run, run)
    feedback = feedback_file(run, tmp_path / "new.csv")
    proc = start(log, "finetune", f"run_dir={run}", f"feedback={feedback}", "timesteps=10000000")
    wait_for(lambda: any((run / "tb").glob("finetune-v*/events.out.tfevents.*")), proc, log)
    time.sleep(0.5)  # inside PPO's learning
    status = interrupt(proc, signum)
    if signum == signal.SIGKILL:
        assert status == -signal.SIGKILL
    else:
        assert_clean_stop(log, status, signum)
    assert model_versions(run) == [1] and not (run / "ppo-v2.zip").exists()
    loaded = load_run(run)
    assert loaded.version == 1 and len(loaded.world.track_ids()) == 1500
    assert len(FeedbackStore(run / "feedback.csv").read()) >= 6
    assert not temporaries(run)
