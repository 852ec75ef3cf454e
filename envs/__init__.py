"""music-rl's simulated world: listeners, rewards, the candidate index, the world, the ``MusicRec-v0`` env and
logs played by simulated listeners (catalogs and log I/O: :mod:`music_rl.data`).

Importing ``envs`` registers ``MusicRec-v0`` with Gymnasium (entry point :func:`envs.music_env.make_env`;
episodes end by the env's own truncation, so no ``max_episode_steps``). The public names below are
imported on first use, so importing one module of ``envs`` does not load the others.
"""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium

ENV_ID = "MusicRec-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="envs.music_env:make_env", max_episode_steps=None)

_EXPORTS = {
    "EnvConfig": "envs.music_env",
    "MusicRecEnv": "envs.music_env",
    "make_env": "envs.music_env",
    "World": "envs.world",
    "build_world": "envs.world",
    "synthetic_world": "envs.world",
}

__all__ = ["ENV_ID", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first access."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'envs' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
