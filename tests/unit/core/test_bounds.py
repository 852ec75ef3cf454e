"""Sizes nobody can run are refused before any work (one line, exit 2, no run folder), from the memory the run
would need against the machine's; what fits is not refused. And SIGINT / SIGTERM at any moment of start-up end
in one line and exit 128 + signal."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, TINY, train_here

from music_rl.config import TrainConfig
from music_rl.core.errors import ConfigError
from music_rl.memory_budget import FIXED_BYTES, available_memory, check_memory, estimate, shown

GiB = 2**30


def needed(cfg: TrainConfig) -> int:
    return sum(term.bytes for term in estimate(cfg))


def tiny(**sizes: int) -> TrainConfig:
    """The tiny experiment's sizes (conf/experiment/tiny.yaml), with ``sizes`` (dotted keys as group__key)."""
    cfg = TrainConfig()
    cfg.data.n_tracks, cfg.reward.n_clusters, cfg.ppo.n_envs, cfg.ppo.batch_size = 1500, 8, 2, 128
    cfg.eval.n_episodes = 6
    for key, value in sizes.items():
        group, name = key.split("__")
        setattr(getattr(cfg, group), name, value)
    return cfg


def test_the_estimate_follows_the_measured_peak_of_the_real_build():
    # /usr/bin/time -v of the two commands of music_rl/memory_budget.py's docstring
    small = tiny(data__n_tracks=1_000_000)
    small.eval.ope_log_steps = 0
    assert needed(small) == pytest.approx(1_167_188 * 1024, rel=0.1)
    large = TrainConfig()
    large.data.n_tracks, large.vae.epochs, large.ppo.total_timesteps = 10_000_000, 1, 2048
    assert needed(large) == pytest.approx(4_343_952 * 1024, rel=0.1)
    below = tiny(data__n_tracks=200_000)
    below.eval.ope_log_steps = 0
    assert 686_984 * 1024 < needed(below) < 1.4 * 686_984 * 1024  # above a million tracks' part: high, not low


def test_a_ten_million_track_catalog_fits_an_8_gb_machine_and_100_million_not_this_one():
    cfg = TrainConfig()
    cfg.data.n_tracks = 10_000_000
    check_memory(cfg, (8 * GiB, "in all"))
    assert 3e9 < needed(cfg) < 8 * GiB
    cfg.data.n_tracks = 100_000_000
    with pytest.raises(ConfigError, match="data.n_tracks=100000000"):
        check_memory(cfg, (24 * GiB, "in all"))


@pytest.mark.parametrize(("key", "value", "named"), [
    ("data__n_tracks", 1_000_000_000, "data.n_tracks=1000000000"),
    ("listeners__population", 100_000_000, "listeners.population=100000000"),
    ("ppo__n_steps", 10**12, "ppo.n_steps=1000000000000 x ppo.n_envs=2"),
    ("eval__n_episodes", 10**9, "eval.n_episodes=1000000000"),
])
def test_a_size_beyond_the_machine_is_refused_naming_the_key_what_is_needed_and_what_there_is(key, value, named):
    cfg = tiny(**{key: value})
    with pytest.raises(ConfigError) as err:
        check_memory(cfg, (16 * GiB, "available (MemAvailable)"))
    line = str(err.value)
    assert "\n" not in line and named in line.split("mostly ")[1]
    assert f"needs about {shown(needed(cfg))}" in line and "the machine has 17.2 GB available" in line


def test_every_size_key_counts():
    base = needed(tiny())
    for key, value in [("vae__hidden", [10**6]), ("ppo__net_arch", [10**5]), ("ppo__batch_size", 10**6),
                       ("env__k", 512), ("env__n_neighbours", 4096), ("reward__n_clusters", 10**6),
                       ("eval__ope_log_steps", 10**7), ("eval__periodic_episodes", 10**6)]:
        assert needed(tiny(**{key: value})) > base + 10e6, key
    latent = tiny(env__action="latent")
    latent.algo = "sac"
    small = needed(latent)
    latent.sac.buffer_size = 10**8
    assert needed(latent) > small + 10e9


def test_the_default_run_is_well_within_a_small_machine():
    assert needed(TrainConfig()) < 1.5e9 and needed(TrainConfig()) > FIXED_BYTES


def test_the_machine_figure_is_positive_and_named():
    have, source = available_memory()
    assert have > 0 and source


def test_a_saved_run_is_read_without_the_memory_check():
    cfg = tiny(data__n_tracks=10**9)
    cfg.validate()  # the config alone: a saved run is read on any machine
    with pytest.raises(ConfigError, match="data.n_tracks=1000000000"):
        check_memory(cfg)  # a run about to start (music_rl.cli.folder_guard.open_run)


@pytest.mark.parametrize("override", ["data.n_tracks=1000000000", "listeners.population=100000000",
                                      "ppo.n_steps=1000000000000"])
def test_the_command_refuses_before_any_work_and_leaves_no_folder(tmp_path, capsys, override):
    run = tmp_path / "run"
    proc = train_here(capsys, run, override)  # before any work: in this process (no 4 s of imports)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: this run needs about "), proc.stderr[-2000:]
    assert override.split("=")[0] in lines[0] and "Traceback" not in proc.stderr
    assert not run.exists()


def startup_seconds() -> float:
    """How long this machine's interpreter takes to start (site, the editable install's finder): before it, no
    line of music-rl has run and Python's own handlers apply."""
    began = time.monotonic()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.monotonic() - began


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_at_any_moment_of_start_up_is_one_line_and_128_plus_the_signal(tmp_path, signum):
    first = 2 * startup_seconds()
    for after in (first, first + 0.05, first + 0.2, first + 0.5, first + 1.0):
        proc = subprocess.Popen([str(Path(sys.executable).parent / "music-rl"), "train", *TINY,
                                 f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        time.sleep(after)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
        lines = [line for line in err.splitlines() if line.strip()]
        assert proc.returncode == 128 + signum, (after, err[-2000:])
        assert "Traceback" not in err, (after, err[-2000:])
        assert len(lines) == 1 and lines[0].startswith(f"error: interrupted by {signum.name}"), (after, err)
