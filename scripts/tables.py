#!/usr/bin/env python
"""``music-rl tables`` (cli/tables/): ``scripts/tables.py [collect name=... sources=[...]] [check=true]``,
``--help`` for every key."""

from cli.tables import app, main

if __name__ == "__main__":
    app.run(main)
