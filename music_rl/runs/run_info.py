"""``run_info.json``: what is needed to trust and reproduce a run (seed, code, versions, data, timings)."""

from __future__ import annotations

import hashlib
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from music_rl.core.atomic import write_json_atomic

FORMAT_VERSION = 1
CODE_DIR = Path(__file__).resolve().parents[2]  # the project's checkout: its git commit is the run's code
PACKAGES = (
    "music-rl",
    "torch",
    "stable-baselines3",
    "gymnasium",
    "hydra-core",
    "omegaconf",
    "numpy",
    "pandas",
    "scikit-learn",
)


def git_commit(repo: Path) -> str:
    """The commit of the code that ran (``-dirty`` when uncommitted changes exist), or ``unknown`` outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def versions() -> dict[str, str]:
    """Python and key package versions."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


class RunInfo:
    """Collects the facts of a run and the wall time of each stage; ``write`` saves them atomically."""

    def __init__(self, seed: int, input_path: str | None, code_dir: Path = CODE_DIR) -> None:
        self.data: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "seed": seed,
            "git_commit": git_commit(code_dir),
            "versions": versions(),
            "input_data": {"path": input_path, "sha256": sha256_file(input_path) if input_path else None},
            "command_line": [sys.executable, *sys.argv],
            "platform": platform.platform(),
            "wall_time_s": {},
            "cpu_time_s": {},
            "peak_rss_mb": {},  # the process's peak resident memory when each stage ended (so far: a running max)
        }

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage of the pipeline into ``wall_time_s[name]``, and the process's CPU time in it into
        ``cpu_time_s[name]`` (what other processes' load does not change: one torch thread per job); the process's
        peak resident memory so far into ``peak_rss_mb[name]``."""
        start, start_cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.data["wall_time_s"][name] = round(time.perf_counter() - start, 3)
            self.data["cpu_time_s"][name] = round(time.process_time() - start_cpu, 3)
            self.data["peak_rss_mb"][name] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

    def write(self, path: Path) -> None:
        """Save as strict JSON (atomic)."""
        write_json_atomic(path, self.data)
