"""Shared fixtures and helpers: the tiny budget (``+experiment=tiny``), one tiny trained run per test session,
commands run in this process as the console runs them, the train config composed as Hydra composes it, torch on
one thread."""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parent.parent
# a model learning without a logger of its own (SB3's default) logs nowhere but makes a folder: one for all tests,
# not a /tmp/SB3-<time>/ per learn()
os.environ.setdefault("SB3_LOGDIR", str(Path(tempfile.gettempdir()) / "music-rl-tests-sb3"))
TINY = ("+experiment=tiny",)  # conf/experiment/tiny.yaml: every test that trains starts from it
# the shared run that inference and online tests learn from: the tiny budget with more PPO steps, the default
# PPO update and the default clusters (its cold start probes 80 tracks, as the default run's does)
PRISTINE = (*TINY, "ppo.total_timesteps=8192", "ppo.n_envs=4", "ppo.n_epochs=10", "ppo.batch_size=256",
            "reward.n_clusters=20")


MUSIC_RL = str(Path(sys.executable).parent / "music-rl")  # the console command of this venv


def command(name: str, *args: str) -> list[str]:
    """``music-rl <name> args``, the console command a user runs."""
    return [MUSIC_RL, name, *args]


def train_command(run_dir: Path, *overrides: str) -> list[str]:
    """``music-rl train`` with the tiny budget and ``overrides`` into ``run_dir``."""
    return command("train", *TINY, *overrides, f"hydra.run.dir={run_dir}")


def train(run_dir: Path, *overrides: str, timeout: float = 300, **kwargs: object) -> subprocess.CompletedProcess:
    """Run :func:`train_command`; the finished process (stdout and stderr as text)."""
    return subprocess.run(train_command(run_dir, *overrides), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def run_cli(command: str, *args: str) -> int:
    """``music-rl <command> args`` in this process, as the console runs it; its exit status."""
    from hydra.core.global_hydra import GlobalHydra

    module = importlib.import_module(f"music_rl.cli.{command}")
    GlobalHydra.instance().clear()
    argv, sys.argv = sys.argv, [f"music-rl {command}", *args]
    try:
        module.app.run(module.main)
    except SystemExit as stop:
        return int(stop.code or 0)
    finally:
        sys.argv = argv
    return 0


def run_here(capsys: pytest.CaptureFixture[str], command: str, *args: str) -> subprocess.CompletedProcess[str]:
    """:func:`run_cli` as a finished process (its exit status, stdout and stderr): for what a command refuses
    before any work, where a fresh process (about 4 s of imports) is not what the test checks."""
    capsys.readouterr()
    status = run_cli(command, *args)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess([command, *args], status, out, err)


def train_here(capsys: pytest.CaptureFixture[str], run_dir: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    """:func:`train` in this process (:func:`run_here`): for what ``music-rl train`` refuses before it trains."""
    return run_here(capsys, "train", *TINY, *overrides, f"hydra.run.dir={run_dir}")


def run_in_process(command: str, *args: str) -> str:
    """:func:`run_cli` for a command that must finish (exit 0), its output (stdout, then stderr: as a finished
    process's ``stdout + stderr``) returned; the log file a run opens is closed after it (no later record of this
    process lands in the run's train.log)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = run_cli(command, *args)
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
            root.removeHandler(handler)
            handler.close()
    text = out.getvalue() + err.getvalue()
    assert status == 0, f"music-rl {command} {' '.join(args)}: exit {status}\n{text[-3000:]}"
    return text


def train_in_process(run_dir: Path, *overrides: str) -> str:
    """:func:`train` in this process (:func:`run_in_process`): for a run that tests read (a fixture's), where a
    fresh process (about 4 s of imports, CPU time of its own) is not what the tests check; its output."""
    return run_in_process("train", *TINY, *overrides, f"hydra.run.dir={run_dir}")


def compose(*overrides: str) -> DictConfig:
    """``conf/train.yaml`` with ``overrides``, composed by Hydra as ``music-rl train`` composes it (no job run)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import music_rl.cli.train  # noqa: F401  (registers train_schema, which conf/train.yaml selects)

    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        return hydra_compose(config_name="train", overrides=list(overrides))


@pytest.fixture(scope="session")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny trained run per test session (shared by the inference and online tests), trained in this process
    (:func:`train_in_process`); treat it as read-only."""
    out = tmp_path_factory.getbasetemp() / "tiny_inference_run"
    if not (out / "metrics.json").is_file():
        train_in_process(out, *PRISTINE[len(TINY):])
    return out


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """As the entry points: torch on one thread (small networks; more threads only contend)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


INTEGRATION = ROOT / "tests" / "integration"


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/integration/ (whole commands, training runs) is ``slow``: ``make test-fast`` skips it.

    A test file's tests run on one worker, one after the other (``--dist loadgroup``: a file is the group of its
    tests unless they name another): scheduled test by test, a file's module-scoped runs were built again on each
    worker and each time a worker's queue changed file, about a fifth of the suite's time.
    """
    for item in items:
        if item.path.is_relative_to(INTEGRATION):
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.path.relative_to(ROOT).as_posix()))


def last_line(stderr: str) -> str:
    """The last line of a command's stderr, leaving out the warning joblib's resource tracker (a separate process)
    may print on its way out, after the command's own last line, on a loaded machine."""
    lines = [ln for ln in stderr.strip().splitlines()
             if "resource_tracker" not in ln and not ln.startswith("  warnings.warn(")]
    return lines[-1] if lines else ""


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The process ended with exit 2 and no traceback; its last line (the ``error:`` line)."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return last_line(proc.stderr)
