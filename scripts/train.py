#!/usr/bin/env python
"""``music-rl train`` (music_rl/cli/train.py): ``scripts/train.py key=value ...``, ``--help`` for every key."""

from music_rl.cli.main import main  # the interrupt handler first, then the command's modules

if __name__ == "__main__":
    main("train")
