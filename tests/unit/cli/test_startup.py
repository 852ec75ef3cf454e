"""Startup cost: the env modules every command imports must not pull in scikit-learn or scipy.stats."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

# Heavy modules only a few functions need (PCA, K-Means, correlations): imported inside those functions.
LAZY = ("sklearn", "scipy.stats")


def test_env_modules_import_without_sklearn_or_scipy_stats() -> None:
    code = ("import json, sys\n"
            "import envs.music_env, envs.world, envs.rewards, music_rl.data.feedback_store\n"
            f"print(json.dumps({{name: name in sys.modules for name in {LAZY!r}}}))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == dict.fromkeys(LAZY, False), f"imported at startup: {[m for m, on in loaded.items() if on]}"
