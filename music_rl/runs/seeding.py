"""One run seed, independent streams for every component.

Each component (VAE, world, listeners, PPO, evaluation) gets its own seed derived from ``cfg.seed`` and
its name, so changing one component's consumption of random numbers never shifts another's.
"""

from __future__ import annotations

import zlib

import numpy as np


def derive_seed(seed: int, name: str) -> int:
    """A 31-bit seed for component ``name``, fully determined by the run seed."""
    state = np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]).generate_state(1)[0]
    return int(state) & 0x7FFFFFFF
