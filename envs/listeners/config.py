"""The ``listeners`` config group: which listener model a run simulates, its population, the parametric
listener's taste and response parameters (the formulas are in :mod:`envs.listeners.parametric`) and how the
learnt listener is fitted (``listeners.learnt``: the model is :mod:`music_rl.user_model`, outside ``envs``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from music_rl.core.errors import ConfigError


class ListenerModel(StrEnum):
    """Which listener a run simulates (``listeners.model``). ``parametric``: the hand-written hidden-taste listener
    of :mod:`envs.listeners.parametric`; ``learnt``: a listener fitted on the session log ``listeners.fit_log``
    (:mod:`music_rl.user_model`). The ``listeners.*`` response parameters (taste, early skip, partial and full
    listens, likes, boredom, repeats, drift) and ``patience`` apply to ``parametric`` only (a learnt listener
    ends its sessions with its own learnt probability); ``seed``, ``population`` and ``held_out_fraction`` to
    every model; ``fit_log`` and ``learnt.*`` to ``learnt`` only."""

    parametric = "parametric"
    learnt = "learnt"


class LearntKind(StrEnum):
    """``listeners.learnt.kind``: ``sequential``, a GRU over the session's tracks and answers so far beside the
    track and simple session features; ``independent``, an MLP on the track and those simple session features
    only (faster to fit and to step)."""

    sequential = "sequential"
    independent = "independent"


class TasteScaling(StrEnum):
    """``per_feature``: each feature in units of its own spread over the catalog (all features count alike a
    priori). ``pooled``: one common scale, the RMS of the per-feature spreads, so features that spread more
    in [0, 1] (those a representation of the normalised features encodes first) weigh more."""

    per_feature = "per_feature"
    pooled = "pooled"


LISTENER_MODELS: tuple[str, ...] = tuple(ListenerModel)
TASTE_SCALINGS: tuple[str, ...] = tuple(TasteScaling)
LEARNT_KINDS: tuple[str, ...] = tuple(LearntKind)


@dataclass
class LearntConfig:
    """How the learnt listener is fitted on ``listeners.fit_log`` (config group ``listeners.learnt``)."""

    kind: LearntKind = LearntKind.sequential
    """sequential (a GRU over the session so far, beside the track and session features) | independent (an MLP on
    the track and simple session features: faster)"""
    hidden: int = 64
    """width of the two hidden layers that predict an answer"""
    memory: int = 32
    """width of the sequential kind's GRU state"""
    holdout: float = 0.2
    """share of the log's sessions (of its listeners, where it has user ids) held out to measure fidelity
    (listener/fidelity.json); as many again stop the fitting early"""
    max_epochs: int = 200
    """passes over the training sessions at most"""
    early_stopping: int = 8
    """epochs without a better held-out log-likelihood before the fitting stops (the best epoch is kept)"""
    batch_size: int = 64
    """sessions per gradient step"""
    lr: float = 3e-3
    """Adam's learning rate"""

    def checks(self) -> list[tuple[str, Any, bool, str]]:
        """``(key, value, ok, allowed)`` of each ``listeners.learnt.*`` key."""
        return [
            ("learnt.kind", self.kind, self.kind in LEARNT_KINDS, f"must be one of {', '.join(LEARNT_KINDS)}"),
            ("learnt.hidden", self.hidden, self.hidden >= 1, "must be an integer >= 1"),
            ("learnt.memory", self.memory, self.memory >= 1, "must be an integer >= 1"),
            ("learnt.holdout", self.holdout, 0.0 < self.holdout <= 0.3, "must be in (0, 0.3]"),
            ("learnt.max_epochs", self.max_epochs, self.max_epochs >= 1, "must be an integer >= 1"),
            ("learnt.early_stopping", self.early_stopping, self.early_stopping >= 1, "must be an integer >= 1"),
            ("learnt.batch_size", self.batch_size, self.batch_size >= 1, "must be an integer >= 1"),
            ("learnt.lr", self.lr, 0.0 < self.lr <= 1.0, "must be in (0, 1]"),
        ]


@dataclass
class ListenerConfig:
    """The simulated listener population and its response model (config group ``listeners``).

    ``seed`` None: the caller derives the population seed from the run seed. The parametric parameters enter
    the formulas of :mod:`envs.listeners.parametric`'s docstring.
    """

    model: ListenerModel = ListenerModel.parametric
    """the listener model: parametric, the hand-written hidden-taste listener (the taste and response keys of this
    group and patience apply to it only) | learnt, fitted on listeners.fit_log (listeners.learnt.*); seed,
    population and held_out_fraction apply to both"""
    fit_log: str | None = None
    """learnt only: the session log the listener is fitted on (the project's feedback format or the MSSD's
    log_*.csv; CSV or Parquet; at least 10 sessions)"""
    learnt: LearntConfig = field(default_factory=LearntConfig)
    """learnt only: the model's kind and how it is fitted"""
    seed: int | None = None
    """population seed; null: derived from the run seed (so each run seed is another listener)"""
    population: int = 50
    """listeners in the population"""
    held_out_fraction: float = 0.2
    """share of listeners held out for the population protocol"""
    n_taste_centres: int = 2
    """taste centres per listener (each near a real track)"""
    patience: int = 3
    """parametric: the listener leaves after this many consecutive skips (pct < 0.5)"""
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

    @classmethod
    def of(cls, values: dict[str, Any]) -> ListenerConfig:
        """The config of a plain dict (a world's ``meta["listener_config"]``: ``learnt`` nested)."""
        values = dict(values)
        learnt = values.pop("learnt", None)
        return cls(**values, learnt=LearntConfig(**learnt) if isinstance(learnt, dict) else LearntConfig())

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad ``listeners.*`` key, its value, what is allowed."""
        def unit(v: float) -> bool:
            return 0.0 <= v <= 1.0

        learnt = self.model == ListenerModel.learnt
        checks = [
            ("model", self.model in LISTENER_MODELS, f"must be one of {', '.join(LISTENER_MODELS)}"),
            ("fit_log", bool(self.fit_log) or not learnt,
             "listeners.model=learnt is fitted on a session log: give listeners.fit_log=<log>"),
            ("fit_log", not self.fit_log or learnt,
             "is read by listeners.model=learnt only (the parametric listener is not fitted): drop it or add "
             "listeners.model=learnt"),
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
        if learnt:
            checks += [(key, ok, allowed) for key, _, ok, allowed in self.learnt.checks()]
        for key, ok, allowed in checks:
            value = getattr(self.learnt, key[len("learnt."):]) if key.startswith("learnt.") else getattr(self, key)
            if isinstance(value, float) and not math.isfinite(value):
                ok, allowed = False, "must be a finite number"
            if not ok:
                raise ConfigError(f"listeners.{key}={value!r}: {allowed}")
