"""Simulated listeners: the interface every listener model implements, the models, and the factory that picks
one by ``listeners.model``.

- :mod:`envs.listeners.base`: the interface, :class:`Population` (draw, split, a fresh session's expected
  rewards) and :class:`Session` (answer, end, the expected answer in the current state, fork);
- :mod:`envs.listeners.config`: :class:`ListenerConfig` (config group ``listeners``), :class:`ListenerModel`,
  :class:`LearntConfig` (``listeners.learnt``);
- :mod:`envs.listeners.parametric`: the hand-written hidden-taste listener (``listeners.model=parametric``);
- :mod:`envs.listeners.response`: its response model, the maths written once for a step's scalar path and
  vectorised;
- :mod:`envs.listeners.calibration`: the figures the parametric defaults are calibrated on.

``ListenerPopulation`` and ``ListenerSession`` are the parametric listener's classes under the names importers
have always used. The learnt listener (``listeners.model=learnt``) lives outside ``envs`` (it needs torch to be
fitted): :mod:`music_rl.user_model` fits it and passes the fitted model, a :class:`FittedListener`, to
:func:`make_population` (through :func:`envs.world.build_world` or :meth:`envs.world.World.attach_listener`).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from envs.listeners.base import Population, Session
from envs.listeners.calibration import calibration_report
from envs.listeners.config import (
    LEARNT_KINDS,
    LISTENER_MODELS,
    TASTE_SCALINGS,
    LearntConfig,
    LearntKind,
    ListenerConfig,
    ListenerModel,
    TasteScaling,
)
from envs.listeners.parametric import ParametricPopulation, ParametricSession, taste_scale
from envs.listeners.response import expected_reward, response_moments
from music_rl.core.errors import ConfigError

ListenerPopulation = ParametricPopulation
ListenerSession = ParametricSession

__all__ = [
    "LEARNT_KINDS", "LISTENER_MODELS", "TASTE_SCALINGS", "FittedListener", "LearntConfig", "LearntKind",
    "ListenerConfig", "ListenerModel", "ListenerPopulation", "ListenerSession", "ParametricPopulation",
    "ParametricSession", "Population", "Session", "TasteScaling", "calibration_report", "expected_reward",
    "make_population", "response_moments", "taste_scale",
]


class FittedListener(Protocol):
    """A listener model fitted outside ``envs`` (``listeners.model=learnt``: :mod:`music_rl.user_model`)."""

    def population(self, X: np.ndarray, cfg: ListenerConfig, rng: np.random.Generator,
                   n: int | None = None) -> Population:
        """Draw ``n`` (None: ``cfg.population``) simulated listeners of the fitted model over the catalog ``X``."""


def make_population(X: np.ndarray, cfg: ListenerConfig, rng: np.random.Generator,
                    n: int | None = None, fitted: FittedListener | None = None) -> Population:
    """Draw the population of the model ``cfg.model`` over a catalog's features.

    Args:
        X: normalised features (N, 11) in [0, 1].
        cfg: the listener config (validated here: an unknown ``listeners.model`` is a :class:`ConfigError`
            naming the choices).
        rng: the only source of randomness: same ``X``, ``cfg`` and generator state ⇒ same population.
        n: population size; None: ``cfg.population``.
        fitted: ``listeners.model=learnt``: the fitted model (required); ignored by ``parametric``.
    """
    cfg.validate()
    if ListenerModel(cfg.model) == ListenerModel.parametric:
        return ParametricPopulation.sample(X, cfg, rng, n)
    if fitted is None:
        raise ConfigError(f"listeners.model={cfg.model}: no fitted listener given (music_rl.user_model fits one "
                          "on listeners.fit_log; a run folder keeps it in listener/model.pt)")
    return fitted.population(X, cfg, rng, n)
