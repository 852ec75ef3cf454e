"""The ``listeners`` config group: which listener model a run simulates, its population, and the parametric
listener's taste and response parameters (the formulas are in :mod:`envs.listeners.parametric`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from music_rl.core.errors import ConfigError


class ListenerModel(StrEnum):
    """Which listener a run simulates (``listeners.model``). ``parametric``: the hand-written hidden-taste listener
    of :mod:`envs.listeners.parametric`, the only model today. The ``listeners.*`` response parameters (taste,
    early skip, partial and full listens, likes, boredom, repeats, drift) apply to ``parametric`` only; ``seed``,
    ``population``, ``held_out_fraction`` and ``patience`` to every model."""

    parametric = "parametric"


class TasteScaling(StrEnum):
    """``per_feature``: each feature in units of its own spread over the catalog (all features count alike a
    priori). ``pooled``: one common scale, the RMS of the per-feature spreads, so features that spread more
    in [0, 1] (those a representation of the normalised features encodes first) weigh more."""

    per_feature = "per_feature"
    pooled = "pooled"


LISTENER_MODELS: tuple[str, ...] = tuple(ListenerModel)
TASTE_SCALINGS: tuple[str, ...] = tuple(TasteScaling)


@dataclass
class ListenerConfig:
    """The simulated listener population and its response model (config group ``listeners``).

    ``seed`` None: the caller derives the population seed from the run seed. The parametric parameters enter
    the formulas of :mod:`envs.listeners.parametric`'s docstring.
    """

    model: ListenerModel = ListenerModel.parametric
    """the listener model: parametric, the hand-written hidden-taste listener (the taste and response keys of this
    group apply to it only; seed, population, held_out_fraction and patience to every model)"""
    seed: int | None = None
    """population seed; null: derived from the run seed (so each run seed is another listener)"""
    population: int = 50
    """listeners in the population"""
    held_out_fraction: float = 0.2
    """share of listeners held out for the population protocol"""
    n_taste_centres: int = 2
    """taste centres per listener (each near a real track)"""
    patience: int = 3
    """the listener leaves after this many consecutive skips (pct < 0.5)"""
    taste_scaling: TasteScaling = TasteScaling.per_feature
    """s_j in the taste kernel: per_feature (each feature's catalog std) | pooled (one common scale)"""
    taste_width: float = 0.8
    """kernel width, in units of s: a_c(x) = exp(-sum_j w_cj ((x_j - mu_cj) / s_j)^2 / (2 taste_width^2))"""
    centre_noise: float = 0.1
    """a taste centre = a random track + this * s * N(0, 1)"""
    weight_concentration: float = 0.1
    """Dirichlet concentration of the feature weights (small: a few features matter)"""
    mixture_concentration: float = 2.0
    """Dirichlet concentration of the mixture weights over the centres"""
    early_skip_threshold: float = 0.25
    """P(early skip) = sigmoid((threshold - a) / slope); then pct ~ U(0, early_skip_max)"""
    early_skip_slope: float = 0.08
    """slope of the early-skip sigmoid"""
    early_skip_max: float = 0.1
    """an early skip hears at most this share of the track"""
    full_listen_scale: float = 1.0
    """P(full listen | no early skip) = full_listen_scale * a"""
    partial_mean_low: float = 0.3
    """mean share of a partial listen (Beta(alpha, 1) above early_skip_max) at a = 0"""
    partial_mean_high: float = 0.8
    """... and at a = 1"""
    like_scale: float = 1.0
    """P(liked | full listen) = like_scale * a^like_power"""
    like_power: float = 3.0
    """exponent of the like probability"""
    boredom: float = 0.25
    """a *= 1 - boredom * max over the window of exp(-dist^2 / (2 boredom_width^2))"""
    boredom_window: int = 3
    """recent tracks that bore (0: no boredom)"""
    boredom_width: float = 0.5
    """in units of s, on the first 3 principal components"""
    repeat_penalty: float = 0.9
    """a *= 1 - repeat_penalty for a track already played in the session"""
    drift: float = 0.05
    """std of the per-step random walk of the log mixture weights"""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad ``listeners.*`` key, its value, what is allowed."""
        def unit(v: float) -> bool:
            return 0.0 <= v <= 1.0

        checks = [
            ("model", self.model in LISTENER_MODELS, f"must be one of {', '.join(LISTENER_MODELS)}"),
            ("seed", self.seed is None or 0 <= self.seed < 2**32, "must be null or an integer in 0..2**32-1"),
            ("population", self.population >= 1, "must be an integer >= 1"),
            ("held_out_fraction", 0.0 <= self.held_out_fraction < 1.0, "must be in [0, 1)"),
            ("n_taste_centres", self.n_taste_centres >= 1, "must be an integer >= 1"),
            ("patience", self.patience >= 1, "must be an integer >= 1"),
            ("taste_scaling", self.taste_scaling in TASTE_SCALINGS,
             f"must be one of {', '.join(TASTE_SCALINGS)}"),
            ("taste_width", self.taste_width > 0, "must be > 0"),
            ("centre_noise", self.centre_noise >= 0, "must be >= 0"),
            ("weight_concentration", self.weight_concentration > 0, "must be > 0"),
            ("mixture_concentration", self.mixture_concentration > 0, "must be > 0"),
            ("early_skip_threshold", unit(self.early_skip_threshold), "must be in [0, 1]"),
            ("early_skip_slope", self.early_skip_slope > 0, "must be > 0"),
            ("early_skip_max", 0.0 < self.early_skip_max < 1.0, "must be in (0, 1)"),
            ("full_listen_scale", unit(self.full_listen_scale), "must be in [0, 1]"),
            ("partial_mean_low", 0.0 < self.partial_mean_low < 1.0, "must be in (0, 1)"),
            ("partial_mean_high", self.partial_mean_low <= self.partial_mean_high < 1.0,
             "must be in [listeners.partial_mean_low, 1)"),
            ("like_scale", unit(self.like_scale), "must be in [0, 1]"),
            ("like_power", self.like_power > 0, "must be > 0"),
            ("boredom", unit(self.boredom), "must be in [0, 1]"),
            ("boredom_window", self.boredom_window >= 0, "must be an integer >= 0"),
            ("boredom_width", self.boredom_width > 0, "must be > 0"),
            ("repeat_penalty", unit(self.repeat_penalty), "must be in [0, 1]"),
            ("drift", 0 <= self.drift <= 10, "must be in [0, 10]"),
        ]
        for key, ok, allowed in checks:
            value = getattr(self, key)
            if isinstance(value, float) and not math.isfinite(value):
                ok, allowed = False, "must be a finite number"
            if not ok:
                raise ConfigError(f"listeners.{key}={value!r}: {allowed}")
