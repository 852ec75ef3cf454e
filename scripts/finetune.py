#!/usr/bin/env python
"""``music-rl finetune`` (music_rl/cli/finetune.py): ``scripts/finetune.py run_dir=<run> feedback=<log>``,
``--help`` for every key."""

from music_rl.cli.main import main  # the interrupt handler first, then the command's modules

if __name__ == "__main__":
    main("finetune")
