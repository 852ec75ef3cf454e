#!/usr/bin/env python
"""``music-rl recommend`` (music_rl/cli/recommend.py): ``scripts/recommend.py run_dir=<run> ...``, ``--help`` for
every key."""

from music_rl.cli.main import main  # the interrupt handler first, then the command's modules

if __name__ == "__main__":
    main("recommend")
