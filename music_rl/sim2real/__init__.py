"""The fidelity protocol (``+experiment=sim2real``, ``metrics.json["sim2real"]``): how far a listener learnt from a
log can be trusted, measured against the hand-written listener that generated the log (the reference: it keeps
the ground truth).

- :mod:`~music_rl.sim2real.config`: the ``sim2real`` config group;
- :mod:`~music_rl.sim2real.logs`: the reference population's sessions under a logging policy with propensities;
- :mod:`~music_rl.sim2real.reference`: the reference's own answer-class probabilities (the predictive ceiling);
- :mod:`~music_rl.sim2real.scores`: policies played in a world per listener, their normalized scores, rank
  agreement and transfer with bootstrap intervals over listeners;
- :mod:`~music_rl.sim2real.protocol`: the whole protocol at each log size.
"""
