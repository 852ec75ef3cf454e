#!/usr/bin/env python
"""``music-rl evaluate`` (cli/evaluate.py): ``scripts/evaluate.py run_dir=<run> ...``, ``--help`` for every key."""

from cli.evaluate import app, main

if __name__ == "__main__":
    app.run(main)
