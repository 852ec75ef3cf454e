"""The machinery of ``music-rl bench``: every stage in a fresh subprocess, its wall and CPU time and peak memory.

A stage is a task function of a measurement module (``music_rl.bench.<module>.<function>``, keyword arguments that
JSON carries, a JSON-able dict back); :meth:`Runner.child` runs it in a fresh interpreter through the private
entry :mod:`music_rl.bench.child`, so the stage's peak resident memory (``ru_maxrss`` from ``os.wait4``: the whole
process, interpreter and imports included) is its own. Inputs that several stages share (synthetic catalogs, a
prepared run folder: :mod:`music_rl.bench.inputs`) are built once per benchmark in the work folder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from music_rl.bench.sizes import Sizes

ROOT = Path(__file__).resolve().parents[2]


class StageFailed(RuntimeError):
    """A benchmark subprocess exited non-zero or timed out."""


@dataclass
class Measured:
    """What a subprocess (and its reaped children) cost: exit code, wall and CPU seconds, peak RSS (MB)."""

    code: int
    wall_s: float
    cpu_s: float
    peak_rss_mb: float


def run_measured(cmd: Sequence[str], log: Path, timeout_s: float) -> Measured:
    """Run ``cmd`` in the repository root (output to ``log``); its wall time, CPU time and peak RSS from
    ``os.wait4``. A timeout kills the process group it started (exit code -9)."""
    with open(log, "w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() - start > timeout_s:
                    raise TimeoutError
                time.sleep(0.05)
        except BaseException:  # timeout or Ctrl-C: stop the process group this call started
            os.killpg(proc.pid, signal.SIGKILL)
            _, status, usage = os.wait4(proc.pid, 0)
            if not isinstance(sys.exc_info()[1], TimeoutError):
                raise
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    return Measured(proc.returncode, time.perf_counter() - start, usage.ru_utime + usage.ru_stime,
                    usage.ru_maxrss / 1024)


def task_name(task: Callable[..., dict[str, Any]]) -> str:
    """``module:function`` of a task, as :mod:`music_rl.bench.child` finds it again."""
    return f"{task.__module__}:{task.__qualname__}"


class Runner:
    """Runs the stages of one benchmark: child tasks, scripts and shared inputs in the work folder."""

    def __init__(self, workdir: Path, sizes: Sizes, repeats: int, timeout_s: float) -> None:
        self.workdir, self.sizes, self.repeats, self.timeout_s = workdir, sizes, repeats, timeout_s
        self.logs = workdir / "logs" / time.strftime("%Y%m%d-%H%M%S")
        self.logs.mkdir(parents=True, exist_ok=True)
        self._count = 0

    def child(self, task: Callable[..., dict[str, Any]], **args: Any) -> tuple[dict[str, Any], Measured]:
        """Run ``task(**args)`` in a fresh interpreter; its JSON result and what it cost."""
        self._count += 1
        stem = self.logs / f"{self._count:02d}-{task.__name__}"
        result = stem.with_suffix(".json")
        cmd = [sys.executable, "-m", "music_rl.bench.child", task_name(task), json.dumps(args), str(result)]
        cost = run_measured(cmd, stem.with_suffix(".log"), self.timeout_s)
        if cost.code != 0 or not result.is_file():
            raise StageFailed(f"{task.__name__} exited {cost.code}; see {stem.with_suffix('.log')}")
        return json.loads(result.read_text()), cost

    def script(self, name: str, cmd: Sequence[str], timeout_s: float) -> Measured:
        """Run a command line (a script of the repository) as one stage; what it cost."""
        log = self.logs / f"{name}.log"
        cost = run_measured(cmd, log, timeout_s)
        if cost.code != 0:
            raise StageFailed(f"{' '.join(cmd[1:])} exited {cost.code}; see {log}")
        return cost

    def prepared(self, name: str, task: Callable[..., dict[str, Any]], **args: Any) -> Path:
        """A shared input folder ``name``, built by ``task(out=..., **args)`` unless present (under a temporary
        name, then renamed: an interrupted build is never reused)."""
        final = self.workdir / name
        if not final.is_dir():
            tmp = self.workdir / f"{name}.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            self.child(task, out=str(tmp), **args)
            tmp.rename(final)
        return final
