#!/usr/bin/env python
"""``music-rl compare`` (music_rl/cli/compare.py): ``scripts/compare.py <sweep folder>``, ``--help`` for every key."""

from music_rl.cli.main import main  # the interrupt handler first, then the command's modules

if __name__ == "__main__":
    main("compare")
