#!/usr/bin/env python
"""``music-rl train`` (cli/train.py): ``scripts/train.py key=value ...``, ``--help`` for every key."""

from cli.train import app, main

if __name__ == "__main__":
    app.run(main)
