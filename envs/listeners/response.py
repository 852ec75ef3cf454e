"""The response model of the parametric listener: how a listener answers a track of affinity ``a`` in [0, 1]
(its current affinity, :mod:`envs.listeners.parametric`), with ``e = early_skip_max``::

    early skip, probability q_e = sigmoid((early_skip_threshold - a) / early_skip_slope):  pct ~ U(0, e)
    else full listen, probability q_f = full_listen_scale a:                               pct = 1
    else partial:  pct = e + (1 - e) B,  B ~ Beta(alpha, 1),  alpha = m / (1 - m),
                   m(a) = partial_mean_low + (partial_mean_high - partial_mean_low) a
    liked ~ Bernoulli(like_scale a^like_power) after a full listen, else 0

So, exactly (``h``: the reward's early-skip threshold)::

    E[pct]     = q_e e / 2 + (1 - q_e) (q_f + (1 - q_f) (e + (1 - e) m(a)))
    P(liked)   = (1 - q_e) q_f like_scale a^like_power
    P(pct < h) = q_e min(h / e, 1) + (1 - q_e) (1 - q_f) clip((h - e) / (1 - e), 0, 1)^alpha
                 + (1 - q_e) q_f [h > 1]

and the expected reward is ``E[pct] + like_weight P(liked) - early_skip_penalty P(pct < h)``.

These formulas are written once: :func:`answer_probabilities` (the probabilities an answer is drawn with) and
:func:`moments` / :func:`reward_of` (the exact expectations, built on it). Each runs on one affinity as a Python
float (``exp=exp_scalar``: a step's path, a few candidates, where numpy's per-call overhead would dominate) or on
an array of them (``exp=exp_array``: vectorised), the same arithmetic in the same order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple, TypeVar

import numpy as np

from envs.listeners.config import ListenerConfig

_EXP_MAX = 700.0  # exp of a larger sigmoid argument counts as infinite: P(early skip) = 0 exactly


class ResponseParams(NamedTuple):
    """The response model's parameters, in the order the kernel unpacks them."""

    early_skip_max: float
    early_skip_threshold: float
    early_skip_slope: float
    full_listen_scale: float
    partial_mean_low: float
    partial_mean_span: float
    like_scale: float
    like_power: float

    @classmethod
    def of(cls, cfg: ListenerConfig) -> ResponseParams:
        """The response parameters of a listener config."""
        return cls(cfg.early_skip_max, cfg.early_skip_threshold, cfg.early_skip_slope, cfg.full_listen_scale,
                   cfg.partial_mean_low, cfg.partial_mean_high - cfg.partial_mean_low, cfg.like_scale,
                   cfg.like_power)


A = TypeVar("A", float, np.ndarray)  # one affinity (the per-step path) or an array of them (vectorised)


def exp_scalar(z: float) -> float:
    """``exp(z)`` of a float, infinite above :data:`_EXP_MAX` (where ``math.exp`` would overflow)."""
    return math.exp(z) if z < _EXP_MAX else math.inf


def exp_array(z: np.ndarray) -> np.ndarray:
    """``exp(z)`` of an array, infinite above :data:`_EXP_MAX` (as :func:`exp_scalar`)."""
    return np.exp(np.where(z < _EXP_MAX, z, np.inf))


def answer_probabilities(a: A, p: ResponseParams, exp: Callable[[A], A]) -> tuple[A, A, A, A]:
    """The response model of the module docstring at affinity ``a``: ``(q_e, q_f, m, q_like)``, P(early skip),
    P(full listen | no early skip), the mean share of a partial listen and P(liked | full listen).

    The one formula of the answers (:meth:`envs.listeners.parametric.ParametricSession.respond` draws from it)
    and of their expectations (:func:`moments`): ``a`` a float with ``exp=exp_scalar`` (a step's scalar path) or
    an array with ``exp=exp_array`` (vectorised).
    """
    _, tau, slope, phi, m0, dm, like_scale, gamma = p
    return 1.0 / (1.0 + exp((a - tau) / slope)), phi * a, m0 + dm * a, like_scale * a**gamma


def moments(a: A, p: ResponseParams, exp: Callable[[A], A], threshold: float | None = None
            ) -> tuple[A, A, A, A | None]:
    """Exact ``(E[pct], P(full listen), P(liked | full listen), P(pct < threshold))`` at affinity ``a`` (a float
    or an array, as :func:`answer_probabilities`); ``P(liked)`` is the product of the middle two. The last is
    None when ``threshold`` is (the scalar path skips what it does not need)."""
    e = p.early_skip_max
    q_e, q_f, m, q_like = answer_probabilities(a, p, exp)
    not_early = 1.0 - q_e
    full = not_early * q_f
    part = not_early - full
    e_pct = q_e * e * 0.5 + full + part * (e + (1.0 - e) * m)
    if threshold is None:
        return e_pct, full, q_like, None
    h_part = min(max((threshold - e) / (1.0 - e), 0.0), 1.0)
    p_low = q_e * min(threshold / e, 1.0) + part * h_part ** (m / (1.0 - m)) + full * float(threshold > 1.0)
    return e_pct, full, q_like, p_low


def reward_of(a: A, p: ResponseParams, like_weight: float, early_skip_penalty: float, threshold: float,
              exp: Callable[[A], A]) -> A:
    """Exact expected reward at affinity ``a`` (a float or an array, as :func:`answer_probabilities`):
    ``E[pct] + like_weight * P(liked) - early_skip_penalty * P(pct < threshold)``."""
    e_pct, full, q_like, p_low = moments(a, p, exp, threshold if early_skip_penalty else None)
    reward: A = e_pct + like_weight * full * q_like
    if p_low is not None:
        reward = reward - early_skip_penalty * p_low
    return reward


def expected_reward(a: np.ndarray, cfg: ListenerConfig, like_weight: float, early_skip_penalty: float = 0.0,
                    early_skip_threshold: float = 0.1) -> np.ndarray:
    """Exact expected reward of tracks of affinity ``a`` (any shape, vectorised), float64 like ``a``.

    ``E[pct] + like_weight * P(liked) - early_skip_penalty * P(pct < early_skip_threshold)``.
    """
    return reward_of(np.asarray(a, dtype=np.float64), ResponseParams.of(cfg), like_weight, early_skip_penalty,
                     early_skip_threshold, exp_array)


def response_moments(a: np.ndarray, cfg: ListenerConfig, threshold: float = 0.1
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact ``E[pct]``, ``P(liked)`` and ``P(pct < threshold)`` of tracks of affinity ``a`` (vectorised).

    Args:
        a: affinities in [0, 1], any shape.
        cfg: the response model's parameters.
        threshold: the reward's early-skip threshold ``h``.

    Returns:
        Three float64 arrays shaped like ``a``.
    """
    e_pct, full, q_like, p_low = moments(np.asarray(a, dtype=np.float64), ResponseParams.of(cfg), exp_array,
                                         threshold)
    assert p_low is not None  # a threshold was given
    return e_pct, full * q_like, p_low
