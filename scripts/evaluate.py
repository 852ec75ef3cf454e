#!/usr/bin/env python
"""``music-rl evaluate`` (music_rl/cli/evaluate.py): ``scripts/evaluate.py run_dir=<run> ...``, ``--help`` for every
key."""

from music_rl.cli.main import main  # the interrupt handler first, then the command's modules

if __name__ == "__main__":
    main("evaluate")
