"""The answer classes every listener model is scored on, and the share heard within each class.

An answer ``(pct, liked)`` falls in one of :data:`N_CLASSES` classes: its percentage class (an early skip below
0.1, five partial bins, a full listen at 1) times liked (0 or 1); class ``2 * p + liked``. Every model's
log-likelihood is measured on these classes (``listener/fidelity.json``), and the skip of the MSSD challenge
(``pct < 0.5``, its ``skip_2``) is a union of classes (:data:`SKIP_CLASSES`). Within a percentage class the
learnt listener draws the share heard from the training answers' quantiles in that class
(:class:`ShareTable`), so its expectations (:meth:`ShareTable.mean`, :meth:`ShareTable.below`) are those of the
draws (:meth:`ShareTable.draw`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PCT_EDGES = np.array([0.1, 0.3, 0.5, 0.7, 0.9, 1.0])
"""Upper edges of the percentage classes: early skip [0, 0.1), partial [0.1, 0.3) .. [0.9, 1), full (pct = 1)."""
N_PCT = len(PCT_EDGES) + 1
N_CLASSES = 2 * N_PCT
SKIP_BELOW = 0.5  # the MSSD's skip_2: a skip is pct < 0.5 (an edge of PCT_EDGES)
SKIP_CLASSES = np.repeat(np.r_[PCT_EDGES, np.inf] <= SKIP_BELOW, 2)
"""(N_CLASSES,) bool: the classes whose share heard is below :data:`SKIP_BELOW`."""
LIKED_CLASSES = np.tile([False, True], N_PCT)
"""(N_CLASSES,) bool: the liked classes."""
_LOWER = np.r_[0.0, PCT_EDGES]
_LEVELS = 17  # quantiles kept per percentage class


def pct_class(pct: np.ndarray) -> np.ndarray:
    """The percentage class (0 .. N_PCT - 1) of each share heard, int64."""
    return np.searchsorted(PCT_EDGES, np.asarray(pct, dtype=np.float64), side="right").astype(np.int64)


def answer_class(pct: np.ndarray, liked: np.ndarray) -> np.ndarray:
    """The answer class ``2 * pct_class + liked`` of each answer, int64."""
    return 2 * pct_class(pct) + np.asarray(liked, dtype=np.int64)


@dataclass(frozen=True)
class ShareTable:
    """The share heard within each percentage class: ``quantiles`` (N_PCT, 17), the inverse CDF at 0, 1/16, .. 1
    of the training answers in the class (a class without any: uniform over its bin; full: 1)."""

    quantiles: np.ndarray

    @classmethod
    def fit(cls, pct: np.ndarray) -> ShareTable:
        """The table of the training answers' shares ``pct``."""
        pct = np.asarray(pct, dtype=np.float64)
        classes = pct_class(pct)
        levels = np.linspace(0.0, 1.0, _LEVELS)
        rows = []
        for p in range(N_PCT):
            inside = pct[classes == p]
            if inside.size:
                rows.append(np.quantile(inside, levels))
            elif p == N_PCT - 1:
                rows.append(np.ones(_LEVELS))
            else:
                rows.append(_LOWER[p] + levels * (PCT_EDGES[p] - _LOWER[p]))
        return cls(np.array(rows))

    def mean(self) -> np.ndarray:
        """E[pct | percentage class], (N_PCT,): the mean of the piecewise-linear inverse CDF :meth:`draw` uses."""
        q = self.quantiles
        mean: np.ndarray = 0.5 * (q[:, 1:] + q[:, :-1]).mean(axis=1)  # mean(axis=)'s stubs: Any
        return mean

    def below(self, threshold: float) -> np.ndarray:
        """P(pct < threshold | percentage class), (N_PCT,), under :meth:`draw`."""
        levels = np.linspace(0.0, 1.0, _LEVELS)
        out = np.empty(N_PCT)
        for p, q in enumerate(self.quantiles):
            if threshold <= q[0]:
                out[p] = 0.0
            elif threshold > q[-1]:
                out[p] = 1.0
            else:  # the level where the inverse CDF reaches the threshold (the first, over flat stretches)
                i = int(np.searchsorted(q, threshold, side="left"))
                lo, hi = q[i - 1], q[i]
                out[p] = levels[i - 1] + (levels[i] - levels[i - 1]) * (threshold - lo) / (hi - lo)
        return out

    def draw(self, p: int, u: float) -> float:
        """The share heard of an answer of percentage class ``p`` at uniform ``u`` (inverse CDF)."""
        x = u * (_LEVELS - 1)
        i = min(int(x), _LEVELS - 2)
        q = self.quantiles[p]
        return float(q[i] + (x - i) * (q[i + 1] - q[i]))

    def class_moments(self, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per answer class (N_CLASSES,): E[pct], liked (0/1) and P(pct < threshold): a class's probabilities
        times these give a model's expected answer."""
        return np.repeat(self.mean(), 2), LIKED_CLASSES.astype(np.float64), np.repeat(self.below(threshold), 2)
