#!/usr/bin/env python
"""``music-rl tables`` (music_rl/reports/tables/): ``scripts/tables.py [collect name=... sources=[...]] [check=true]``,
``--help`` for every key."""

from music_rl.cli.main import main  # the interrupt handler first, then the command's modules

if __name__ == "__main__":
    main("tables")
