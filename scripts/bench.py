#!/usr/bin/env python
"""``music-rl bench`` (cli/bench/): ``scripts/bench.py only=[a,b] repeats=5 ...``, ``--help`` for every key."""

from cli.bench import app, main

if __name__ == "__main__":
    app.run(main)
