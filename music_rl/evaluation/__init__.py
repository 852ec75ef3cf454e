"""How policies are judged: evaluation on ground-truth listeners, the reference policies and the planner,
off-policy estimates and their accuracy, a new listener, adaptive serving."""
