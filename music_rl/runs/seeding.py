"""One run seed, independent streams for every component.

Each component (VAE, world, listeners, PPO, evaluation) gets its own seed derived from ``cfg.seed`` and
its name, so changing one component's consumption of random numbers never shifts another's.
"""

from __future__ import annotations

import zlib

import numpy as np

from music_rl.core.errors import ConfigError

SEED_LIMIT = 2**32  # numpy's and SB3's seeds: integers in 0..2**32-1


def derive_seed(seed: int, name: str) -> int:
    """A 31-bit seed for component ``name``, fully determined by the run seed."""
    state = np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]).generate_state(1)[0]
    return int(state) & 0x7FFFFFFF


def check_seed(key: str, value: int | None) -> None:
    """Raise :class:`ConfigError` unless ``value`` is None or a seed in ``0 <= seed < 2**32``."""
    if value is not None and not 0 <= value < SEED_LIMIT:
        raise ConfigError(f"{key}={value}: must be an integer in 0..{SEED_LIMIT - 1} (a seed)")
