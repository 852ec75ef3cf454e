"""The private entry of a benchmark stage's subprocess (:meth:`music_rl.bench.runner.Runner.child` starts it)::

    python -m music_rl.bench.child <module>:<function> '<JSON keyword arguments>' <result.json>

runs the task function ``<function>`` of ``music_rl.bench.<module>`` with the arguments and writes its JSON result.
Not a user command: ``music-rl bench`` is.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

PACKAGE = "music_rl.bench."


def run_task(task: str, args_json: str, out: str) -> None:
    """Run one task of a measurement module of :mod:`music_rl.bench`; write its result to ``out``."""
    module, _, function = task.partition(":")
    if not module.startswith(PACKAGE):
        raise SystemExit(f"{task}: not a task of {PACKAGE.rstrip('.')}")
    result = getattr(importlib.import_module(module), function)(**json.loads(args_json))
    Path(out).write_text(json.dumps(result))


if __name__ == "__main__":
    run_task(*sys.argv[1:])
