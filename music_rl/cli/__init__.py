"""The entry points of music-rl: one Hydra app per command (``music-rl <command>``, :mod:`music_rl.cli.main`),
the error policy they share (:mod:`music_rl.cli.errors`) and their ``--help`` (:mod:`music_rl.cli.help`)."""
