"""The population prior: what the training listeners' answers teach about how tastes are shaped, made the prior of
a Bayesian regression of one new listener's answers (the ``pop`` estimate of :mod:`envs.listener_log`).

A listener's expected *answer* at a track, ``y = pct + LIKE_WEIGHT * liked``, is modelled as linear in a fixed
nonlinear basis of the track::

    b(t) = [s, s**2, exp(-|s - a_j|**2 / (2 WIDTH**2)) for j < ANCHORS, 1]

with ``s`` the track's ``[z, x]`` (latent, the 11 features) standardised over the catalog and ``a_j`` k-means
anchors of the catalog in the same units. A taste that is a few Gaussian bumps over a few features has a
log-affinity quadratic in ``s``; the anchors let two bumps in different places coexist.

:func:`fit_population_prior`: each training listener's weights are a ridge fit on their log; the mean and
covariance of those weights over the listeners are the prior of a listener nobody has met, the variance of the
answers around each listener's own fit the answer noise (empirical Bayes). :meth:`PopulationPrior.posterior`: a
new listener's Gaussian posterior over the weights given any number of answers (none: the prior itself, the
population's average taste and its spread), in closed form; :class:`Posterior` gives its mean and standard
deviation at any track and takes one more answer in O(p**2). Seen as a function of the track this is a Gaussian
process whose mean and kernel ``k(t, t') = b(t)' S0 b(t')`` were learnt from the population.

Why the answer and not the reward: with ``like_weight`` 10 the reward is dominated by rare likes, whose noise
drowns what the share listened says. On the tuning seed (0), greedy on the posterior mean among the 4 nearest
candidates recovered 0.56 of the taste's edge after 80 answers fitted on pct alone, 0.585 on ``pct + 0.5 liked``,
0.49 on the reward; the anchors added about 0.02 (docs/results/new-listener.md).
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from music_rl.core.errors import RunFolderError

if TYPE_CHECKING:
    from envs.candidates import CandidateIndex
    from envs.listeners import Population

PRIOR_ANSWERS = 2000  # answers to random choices each training listener gives to fit the prior
LIKE_WEIGHT = 0.5  # the weight of a like in the fitted answer pct + LIKE_WEIGHT * liked
ANCHORS = 48  # k-means anchors of the basis's bumps
WIDTH = 4.0  # their width, in catalog standard deviations of [z, x]
FIT_RIDGE = 1e-2  # the ridge of each training listener's own fit
JITTER = 1e-6  # added to the prior covariance's diagonal
STREAM = 5  # the world seed's random stream of the prior's logs (envs.world's are 1 to 4)

Array = NDArray[np.float64]


@dataclass(frozen=True)
class PopulationPrior:
    """The basis and the Gaussian prior over its weights (module docstring).

    Attributes:
        centre, spread: (q,) the catalog's mean and standard deviation of ``[z, x]``.
        anchors: (A, q) the bumps' centres, in standardised units.
        mean: (p,) the prior mean of the weights; cov: (p, p) their prior covariance.
        noise: the variance of an answer around its listener's own fit.
        like_weight: the weight of a like in the answer.
        width: the bumps' width.
    """

    centre: Array
    spread: Array
    anchors: Array
    mean: Array
    cov: Array
    noise: float
    like_weight: float = LIKE_WEIGHT
    width: float = WIDTH

    def basis(self, latents: np.ndarray, features: np.ndarray) -> Array:
        """``b(t)`` of every track, (N, p) float64."""
        return _basis(np.hstack([latents, features]).astype(np.float64), self.centre, self.spread, self.anchors,
                      self.width)

    def answers(self, pct: np.ndarray, liked: np.ndarray) -> Array:
        """The answer ``pct + like_weight * liked`` of each row."""
        return np.asarray(answer(np.asarray(pct, np.float64), np.asarray(liked, np.float64), self.like_weight))

    def posterior(self, basis_rows: np.ndarray, answers: np.ndarray) -> Posterior:
        """The posterior over a listener's weights given their answers (``basis_rows`` (n, p), ``answers`` (n,));
        n = 0: the prior."""
        if not len(answers):
            return Posterior(self.mean.copy(), self.cov.copy(), self.noise, self.like_weight)
        if len(answers) <= len(self.mean):  # the covariance form: an (n, n) solve, no inverse of the prior
            gain = self.cov @ basis_rows.T
            innovation = basis_rows @ gain + self.noise * np.eye(len(answers))
            solved = np.linalg.solve(innovation, np.column_stack([answers - basis_rows @ self.mean, gain.T]))
            mean, cov = self.mean + gain @ solved[:, 0], self.cov - gain @ solved[:, 1:]
        else:  # the precision form: a (p, p) inverse
            prior_precision, prior_shift = self._precision
            cov = np.asarray(np.linalg.inv(prior_precision + basis_rows.T @ basis_rows / self.noise), np.float64)
            mean = cov @ (prior_shift + basis_rows.T @ answers / self.noise)
        return Posterior(mean, (cov + cov.T) / 2.0, self.noise, self.like_weight)

    @cached_property
    def _precision(self) -> tuple[Array, Array]:
        """The prior's precision ``S0^-1`` and ``S0^-1 m0``, computed once."""
        precision = np.asarray(np.linalg.inv(self.cov), np.float64)
        return precision, precision @ self.mean

    @classmethod
    def read(cls, path: Path, width: int) -> PopulationPrior:
        """:meth:`load` for a world of ``width`` track columns (``[z, x]``); :class:`RunFolderError` naming the file
        for one that is not such a prior."""
        try:
            prior = cls.load(path)
        except ValueError as err:
            raise RunFolderError(f"{path}: not a readable population prior ({err}); delete it to fit the prior "
                                 "again") from None
        if prior.centre.shape != (width,):
            raise RunFolderError(f"{path}: a prior of {prior.centre.shape} track columns, the world has {width}")
        return prior

    def save(self, path: str | Path) -> None:
        """Write the prior as one ``.npz`` (the caller writes it atomically)."""
        with open(path, "wb") as fh:
            np.savez(fh, centre=self.centre, spread=self.spread, anchors=self.anchors, mean=self.mean, cov=self.cov,
                     scalars=np.array([self.noise, self.like_weight, self.width]))

    @classmethod
    def load(cls, path: str | Path) -> PopulationPrior:
        """Read a prior written by :meth:`save`; :class:`ValueError` (one line) for a file that is not one: not an
        ``.npz`` of its arrays, shapes that do not fit together, or a value that is not finite."""
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: np.asarray(data[name], np.float64)
                          for name in ("centre", "spread", "anchors", "mean", "cov", "scalars")}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            raise ValueError("not an .npz of the prior's arrays (centre, spread, anchors, mean, cov, scalars)"
                             ) from None
        q = arrays["centre"].shape[0] if arrays["centre"].ndim == 1 else -1
        a = arrays["anchors"].shape[0] if arrays["anchors"].ndim == 2 else -1
        p = 2 * q + a + 1
        shapes = {"centre": (q,), "spread": (q,), "anchors": (a, q), "mean": (p,), "cov": (p, p), "scalars": (3,)}
        for name, shape in shapes.items():
            if arrays[name].shape != shape or min(shape, default=0) < 0:
                raise ValueError(f"{name} has shape {arrays[name].shape}, {shape} expected")
            if not np.isfinite(arrays[name]).all():
                raise ValueError(f"{name} holds a value that is not finite")
        noise, like_weight, width = (float(v) for v in arrays.pop("scalars"))
        if noise <= 0 or width <= 0 or (arrays["spread"] <= 0).any():
            raise ValueError("the noise, the width and every spread must be > 0")
        return cls(**arrays, noise=noise, like_weight=like_weight, width=width)


class Posterior:
    """A listener's Gaussian posterior over the basis weights: ``mean`` (p,), ``cov`` (p, p); ``noise`` the answer
    variance; ``like_weight`` the prior's weight of a like in the answer. Mutable: :meth:`take` (or :meth:`update`)
    adds one answer."""

    def __init__(self, mean: Array, cov: Array, noise: float, like_weight: float) -> None:
        self.mean, self.cov, self.noise, self.like_weight = mean, cov, noise, like_weight

    def copy(self) -> Posterior:
        """An independent copy (a session updates its own)."""
        return Posterior(self.mean.copy(), self.cov.copy(), self.noise, self.like_weight)

    def take(self, b: np.ndarray, pct: float, liked: int) -> None:
        """The listener answered ``(pct, liked)`` at a track of basis row ``b``: :meth:`update` with its answer."""
        self.update(b, answer(pct, liked, self.like_weight))

    def update(self, b: np.ndarray, answer: float) -> None:
        """One more answer ``answer`` at a track of basis row ``b`` (p,): the rank-one Gaussian update."""
        cb = self.cov @ b
        denominator = self.noise + float(b @ cb)
        self.mean += cb * ((answer - float(b @ self.mean)) / denominator)
        self.cov -= np.outer(cb, cb) / denominator

    def at(self, basis_rows: np.ndarray) -> tuple[Array, Array]:
        """The expected answer and its standard deviation (the estimate's, not the answer noise) at tracks of
        basis rows (n, p)."""
        mean = basis_rows @ self.mean
        var = np.einsum("ij,ij->i", basis_rows @ self.cov, basis_rows)
        return mean, np.sqrt(np.maximum(var, 0.0))

    def draw(self, rng: np.random.Generator) -> Array:
        """Weights drawn from the posterior (Thompson sampling)."""
        lower = np.linalg.cholesky(self.cov + JITTER * np.eye(len(self.mean)))
        return self.mean + lower @ rng.standard_normal(len(self.mean))


def answer(pct: Any, liked: Any, like_weight: float) -> Any:
    """The answer the prior models: ``pct + like_weight * liked`` (numbers or arrays alike)."""
    return pct + like_weight * liked


def _basis(s_raw: Array, centre: Array, spread: Array, anchors: Array, width: float) -> Array:
    s = (s_raw - centre) / spread
    d2 = (s * s).sum(axis=1)[:, None] - 2.0 * s @ anchors.T + (anchors * anchors).sum(axis=1)[None, :]
    bumps = np.exp(-np.maximum(d2, 0.0) / (2.0 * width**2))
    return np.hstack([s, s * s, bumps, np.ones((len(s), 1))])


def fit_on_answers(population: Population, listeners: Sequence[int], index: CandidateIndex, session_length: int,
                   latents: np.ndarray, features: np.ndarray, seed: int) -> PopulationPrior:
    """The prior of :func:`fit_population_prior` on :data:`PRIOR_ANSWERS` answers of each of ``listeners`` (a
    world's training listeners) to random choices among ``index``'s candidates in sessions of ``session_length``,
    each drawn from its own stream of ``seed``."""
    from envs.listener_log import random_answers  # here: envs.listener_log reads this module's classes

    logs = [random_answers(population, int(i), index, PRIOR_ANSWERS, session_length,
                           np.random.default_rng([seed, STREAM, int(i)]), index.k) for i in listeners]
    return fit_population_prior(latents, features, [(log.tracks, log.pct, log.liked) for log in logs], seed)


def fit_population_prior(latents: np.ndarray, features: np.ndarray,
                         logs: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], seed: int) -> PopulationPrior:
    """The prior from the training listeners' ``logs`` (each ``(tracks, pct, liked)``), module docstring.

    Args:
        latents, features: (N, d), (N, F) the catalog's.
        logs: one log per training listener (two or more).
        seed: the anchors' k-means.
    """
    from sklearn.cluster import KMeans  # here: sklearn costs ~0.6 s to import

    if len(logs) < 2:
        raise ValueError(f"a population prior needs the logs of two or more listeners, got {len(logs)}")
    raw = np.hstack([latents, features]).astype(np.float64)
    centre, spread = raw.mean(axis=0), np.maximum(raw.std(axis=0), 1e-6)
    sample = ((raw - centre) / spread)[np.random.default_rng(seed).permutation(len(raw))[:20000]]
    n_anchors = min(ANCHORS, len(np.unique(sample, axis=0)))
    anchors = KMeans(n_anchors, n_init=1, random_state=seed).fit(sample).cluster_centers_.astype(np.float64)
    basis = _basis(raw, centre, spread, anchors, WIDTH)
    p = basis.shape[1]
    weights, residuals = [], []
    for tracks, pct, liked in logs:
        x, y = basis[tracks], answer(np.asarray(pct, np.float64), np.asarray(liked, np.float64), LIKE_WEIGHT)
        w = np.linalg.solve(x.T @ x + FIT_RIDGE * np.eye(p), x.T @ y)
        weights.append(w)
        residuals.append(y - x @ w)
    w_all = np.array(weights)
    cov = np.cov(w_all.T) + JITTER * np.eye(p)
    noise = max(float(np.var(np.concatenate(residuals))), 1e-6)
    return PopulationPrior(centre, spread, anchors, w_all.mean(axis=0), cov, noise)
