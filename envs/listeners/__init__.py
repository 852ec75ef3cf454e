"""Simulated listeners: the interface every listener model implements, the models, and the factory that picks
one by ``listeners.model``.

- :mod:`envs.listeners.base`: the interface, :class:`Population` (draw, split, a fresh session's expected
  rewards) and :class:`Session` (answer, end, the expected answer in the current state, fork);
- :mod:`envs.listeners.config`: :class:`ListenerConfig` (config group ``listeners``), :class:`ListenerModel`;
- :mod:`envs.listeners.parametric`: the hand-written hidden-taste listener (``listeners.model=parametric``);
- :mod:`envs.listeners.response`: its response model, the maths written once for a step's scalar path and
  vectorised;
- :mod:`envs.listeners.calibration`: the figures the parametric defaults are calibrated on.

``ListenerPopulation`` and ``ListenerSession`` are the parametric listener's classes under the names importers
have always used.
"""

from __future__ import annotations

import numpy as np

from envs.listeners.base import Population, Session
from envs.listeners.calibration import calibration_report
from envs.listeners.config import LISTENER_MODELS, TASTE_SCALINGS, ListenerConfig, ListenerModel, TasteScaling
from envs.listeners.parametric import ParametricPopulation, ParametricSession, taste_scale
from envs.listeners.response import expected_reward, response_moments

ListenerPopulation = ParametricPopulation
ListenerSession = ParametricSession

__all__ = [
    "LISTENER_MODELS", "TASTE_SCALINGS", "ListenerConfig", "ListenerModel", "ListenerPopulation",
    "ListenerSession", "ParametricPopulation", "ParametricSession", "Population", "Session", "TasteScaling",
    "calibration_report", "expected_reward", "make_population", "response_moments", "taste_scale",
]


def make_population(X: np.ndarray, cfg: ListenerConfig, rng: np.random.Generator,
                    n: int | None = None) -> Population:
    """Draw the population of the model ``cfg.model`` over a catalog's features.

    Args:
        X: normalised features (N, 11) in [0, 1].
        cfg: the listener config (validated here: an unknown ``listeners.model`` is a :class:`ConfigError`
            naming the choices).
        rng: the only source of randomness: same ``X``, ``cfg`` and generator state ⇒ same population.
        n: population size; None: ``cfg.population``.
    """
    cfg.validate()
    samplers = {ListenerModel.parametric: ParametricPopulation.sample}
    return samplers[ListenerModel(cfg.model)](X, cfg, rng, n)
