"""What every package uses: the error classes of user errors (:mod:`music_rl.core.errors`) and atomic writes
(:mod:`music_rl.core.atomic`)."""
