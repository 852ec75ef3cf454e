#!/usr/bin/env python
"""``music-rl simulate`` (cli/simulate.py): ``scripts/simulate_online.py run_dir=<run> ...``, ``--help`` for every
key."""

from cli.simulate import app, main

if __name__ == "__main__":
    app.run(main)
