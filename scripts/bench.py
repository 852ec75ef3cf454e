#!/usr/bin/env python
"""``music-rl bench`` (music_rl/bench/): ``scripts/bench.py only=[a,b] repeats=5 ...``, ``--help`` for every key."""

from music_rl.cli.main import main  # the interrupt handler first, then the command's modules

if __name__ == "__main__":
    main("bench")
