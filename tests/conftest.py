"""Shared fixtures: one tiny trained run per test session, torch on one thread."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
TINY_RUN = ["data.n_tracks=1500", "vae.epochs=3", "ppo.total_timesteps=8192", "ppo.n_envs=4",
            "eval.n_episodes=10", "eval.eval_freq=100000", "eval.periodic_episodes=4",
            "ppo.progress_bar=false", "ppo.checkpoint_freq=100000"]


def _tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny trained run per test session (shared by the inference and online tests); treat it as read-only."""
    out = tmp_path_factory.getbasetemp() / "tiny_inference_run"
    if not (out / "metrics.json").is_file():
        cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), *TINY_RUN, f"hydra.run.dir={out}"]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_run(tmp_path_factory)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """As the entry points: torch on one thread (small networks; more threads only contend)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
