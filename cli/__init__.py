"""The entry points of music-rl: one Hydra app per command (``music-rl <command>``, :mod:`cli.main`), the
error policy they share (:mod:`cli.errors`) and their ``--help`` (:mod:`cli.help`)."""
