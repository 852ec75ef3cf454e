#!/usr/bin/env python
"""``music-rl compare`` (cli/compare.py): ``scripts/compare.py <sweep folder>``, ``--help`` for every key."""

from cli.compare import app, main

if __name__ == "__main__":
    app.run(main)
