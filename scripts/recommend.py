#!/usr/bin/env python
"""``music-rl recommend`` (cli/recommend.py): ``scripts/recommend.py run_dir=<run> ...``, ``--help`` for every key."""

from cli.recommend import app, main

if __name__ == "__main__":
    app.run(main)
