"""Listeners learnt from logs (``listeners.model=learnt``): a user model fitted on logged sessions in torch, run
as a simulator in numpy, implementing :class:`envs.listeners.Population` and :class:`envs.listeners.Session` from
outside ``envs`` (which has no torch).

- :mod:`~music_rl.user_model.sessions`: sessions from a log (read by the project's feedback reader), the split;
- :mod:`~music_rl.user_model.answers`: the answer classes every model is scored on, the share heard within one;
- :mod:`~music_rl.user_model.features`: what an answer is predicted from (track, session so far, listener);
- :mod:`~music_rl.user_model.nets`: the two kinds (``sequential``: a GRU; ``independent``: an MLP) and their
  numpy twin;
- :mod:`~music_rl.user_model.fit`: fitting with early stopping;
- :mod:`~music_rl.user_model.simulator`: :class:`LearntListener`, :class:`LearntPopulation`,
  :class:`LearntSession`;
- :mod:`~music_rl.user_model.fidelity`: log-likelihood and skip accuracy beside the baselines;
- :mod:`~music_rl.user_model.run`: the run folder's ``listener/`` (fit, save, load).
"""

from music_rl.user_model.run import (
    attach_run_listener,
    fit_listener,
    fit_run_listener,
    load_listener,
    read_listener_log,
    save_listener,
)
from music_rl.user_model.simulator import LearntListener, LearntPopulation, LearntSession

__all__ = ["LearntListener", "LearntPopulation", "LearntSession", "attach_run_listener", "fit_listener",
           "fit_run_listener", "load_listener", "read_listener_log", "save_listener"]
