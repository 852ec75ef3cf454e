#!/usr/bin/env python
"""``music-rl finetune`` (cli/finetune.py): ``scripts/finetune.py run_dir=<run> feedback=<log>``, ``--help`` for
every key."""

from cli.finetune import app, main

if __name__ == "__main__":
    app.run(main)
