"""How policies are judged: evaluation on ground-truth listeners, the reference policies and the planner,
off-policy estimates, a new listener, adaptive serving (how accurate a sweep's estimates were is
:mod:`music_rl.reports.ope_accuracy`)."""
