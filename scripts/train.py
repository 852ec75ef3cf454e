#!/usr/bin/env python
"""``music-rl train`` (cli/train.py): ``scripts/train.py key=value ...``, ``--help`` for every key."""

from cli.main import main  # the interrupt handler first, then the command's modules

if __name__ == "__main__":
    main("train")
