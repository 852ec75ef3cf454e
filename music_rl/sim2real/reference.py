"""The reference listener as a predictor: the parametric response model's own probabilities of each answer class
(:mod:`music_rl.user_model.answers`) at the affinity the listener had for the track just before answering (its
hidden taste, boredom, repeats and drift: known to the logger, :mod:`music_rl.sim2real.logs`). No model of the
answers can predict them better: the ceiling of ``predictive``.

With ``e = early_skip_max``, at affinity ``a`` (:mod:`envs.listeners.response`): an early skip (``q_e``) hears
``U(0, e)``; a full listen (``(1 - q_e) q_f``) hears 1 and is liked with ``q_like``; a partial listen hears
``e + (1 - e) B``, ``P(B < b) = b^alpha``, ``alpha = m / (1 - m)``, never liked.
"""

from __future__ import annotations

import numpy as np

from envs.listeners.response import ResponseParams, answer_probabilities, exp_array
from music_rl.user_model.answers import N_CLASSES, PCT_EDGES
from music_rl.user_model.fidelity import Predictor
from music_rl.user_model.sessions import LogSessions

_LOWER = np.r_[0.0, PCT_EDGES[:-1]]  # lower edges of the percentage classes below a full listen
_UPPER = PCT_EDGES  # their upper edges (the last partial class ends at 1, a full listen is its own class)


def answer_class_probabilities(a: np.ndarray, params: ResponseParams) -> np.ndarray:
    """(n, N_CLASSES) probabilities of each answer class at affinities ``a`` (n,) (module docstring)."""
    a = np.asarray(a, dtype=np.float64)
    q_e, q_f, m, q_like = answer_probabilities(a, params, exp_array)
    e = params.early_skip_max
    early = np.clip(np.minimum(_UPPER, e) - _LOWER, 0.0, None) / e  # (P,) share of U(0, e) in each class
    alpha = (m / (1.0 - m))[:, None]

    def below(x: np.ndarray) -> np.ndarray:  # P(partial share < x), (n, P)
        return np.clip((x - e) / (1.0 - e), 0.0, 1.0)[None, :] ** alpha

    partial = below(_UPPER) - below(_LOWER)
    full = (1.0 - q_e) * q_f
    out = np.zeros((len(a), N_CLASSES))
    out[:, 0:2 * len(_UPPER):2] = q_e[:, None] * early[None, :] + ((1.0 - q_e) * (1.0 - q_f))[:, None] * partial
    out[:, -2] = full * (1.0 - q_like)
    out[:, -1] = full * q_like
    return out


def reference_predictor(probabilities: np.ndarray, log: LogSessions) -> Predictor:
    """The predictor of class probabilities known per answer: ``probabilities`` (A, N_CLASSES), row i the i-th
    answer of ``log``; a session of any subset of ``log`` is found by its id (:attr:`LogSessions.ids`)."""
    starts = log.starts

    def predict(sessions: LogSessions, s: int, given: int) -> np.ndarray:
        i = int(sessions.ids[s])
        return probabilities[starts[i]:starts[i + 1]]

    return predict
