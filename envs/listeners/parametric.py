"""Simulated listeners: a hidden-taste user model and its response (choice) model, with session dynamics.

As in RecSim/KuaiSim, the user model (what a listener likes: :class:`ListenerPopulation`) is separate from
the response model (how one listening session answers: :class:`ListenerSession`).

**Taste (hidden, fixed per listener).** Features ``x`` in [0, 1]^11 are compared in units ``s`` (11,):
each feature's standard deviation over the catalog (``taste_scaling=per_feature``) or one pooled scale
(``pooled``, see :data:`TASTE_SCALINGS`). Listener ``l`` has ``C = n_taste_centres`` centres; each sits near
a random track ``x_t`` of the catalog, so taste lives where tracks are, and weighs the features with
Dirichlet weights (sum 1; a few features dominate when ``weight_concentration`` is small)::

    mu_c = clip(x_t + centre_noise * s * N(0, I), 0, 1)        w_c ~ Dirichlet(weight_concentration)
    d_c(x)^2 = sum_j w_cj ((x_j - mu_cj) / s_j)^2             a_c(x) = exp(-d_c(x)^2 / (2 taste_width^2))

Base mixture weights ``pi0 ~ Dirichlet(mixture_concentration)`` over the centres give the static
affinity ``a(x) = sum_c pi0_c a_c(x)`` in [0, 1].

**Session state.** Mixture weights ``pi`` (starting at ``pi0``), the last ``boredom_window`` played
tracks, the tracks played so far, a consecutive-skip counter. The affinity in the current state::

    a_t(x) = m_t(x) sum_c pi_c a_c(x)
    m_t(x) = (1 - boredom max_{y in window} exp(-|p(x) - p(y)|^2 / (2 boredom_width^2)))
             (1 - repeat_penalty [x already played])

with ``p(x)`` the first three principal components of ``x / s`` (a cheap stand-in for the full distance,
so a step stays in microseconds). After each response, ``log pi`` takes a random-walk step (independent
uniform steps of standard deviation ``drift`` per centre, then renormalised: slow taste drift), the
track enters the window, and the skip counter grows on a skip (``pct < 0.5``) or resets; the listener
leaves after ``patience`` consecutive skips.

**Responses** to a track of current affinity ``a`` (``e = early_skip_max``)::

    early skip, probability q_e = sigmoid((early_skip_threshold - a) / early_skip_slope):  pct ~ U(0, e)
    else full listen, probability q_f = full_listen_scale a:                               pct = 1
    else partial:  pct = e + (1 - e) B,  B ~ Beta(alpha, 1),  alpha = m / (1 - m),
                   m(a) = partial_mean_low + (partial_mean_high - partial_mean_low) a
    liked ~ Bernoulli(like_scale a^like_power) after a full listen, else 0

So, exactly, in the current state (``h``: the reward's early-skip threshold)::

    E[pct]     = q_e e / 2 + (1 - q_e) (q_f + (1 - q_f) (e + (1 - e) m(a)))
    P(liked)   = (1 - q_e) q_f like_scale a^like_power
    P(pct < h) = q_e min(h / e, 1) + (1 - q_e) (1 - q_f) clip((h - e) / (1 - e), 0, 1)^alpha
                 + (1 - q_e) q_f [h > 1]

and the expected reward is ``E[pct] + like_weight P(liked) - early_skip_penalty P(pct < h)``.

The defaults are calibrated by :func:`calibration_report` on ``synthetic_catalog(20000, seed=0)`` with
the physical normaliser: about 9% of random listener-track pairs are liked, and among the 4 nearest
neighbours of a track the best one (oracle) earns about 1.5x the expected reward of a random one.

Randomness only from passed ``np.random.Generator``s: a population is a pure function of ``(X, cfg,
generator state)``; a session reads its generator in blocks of uniforms, a fixed number per response.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from enum import StrEnum
from operator import mul

import numpy as np

from envs.errors import ConfigError


class TasteScaling(StrEnum):
    """``per_feature``: each feature in units of its own spread over the catalog (all features count alike a
    priori). ``pooled``: one common scale, the RMS of the per-feature spreads, so features that spread more
    in [0, 1] (those a representation of the normalised features encodes first) weigh more."""

    per_feature = "per_feature"
    pooled = "pooled"


TASTE_SCALINGS: tuple[str, ...] = tuple(TasteScaling)
SKIP_BELOW = 0.5  # a response with pct below this is a skip; patience counts consecutive skips
_BOREDOM_DIMS = 3  # principal components of x / s in which boredom similarity is measured
_UNIFORM_BLOCK = 256  # uniforms a session draws from its generator at a time


@dataclass
class ListenerConfig:
    """The simulated listener population and its response model (config group ``listeners``).

    ``seed`` None: the caller derives the population seed from the run seed. The other parameters enter
    the formulas of the module docstring.
    """

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


def taste_scale(X: np.ndarray, scaling: str) -> np.ndarray:
    """The units ``s`` (n_features,) taste distances are measured in (see :data:`TASTE_SCALINGS`)."""
    std = np.asarray(X, dtype=np.float64).std(axis=0)
    if scaling == "pooled":
        std = np.full_like(std, np.sqrt(np.mean(std**2)))
    return np.maximum(std, 1e-6)


def expected_reward(a: np.ndarray, cfg: ListenerConfig, like_weight: float, early_skip_penalty: float = 0.0,
                    early_skip_threshold: float = 0.1) -> np.ndarray:
    """Exact expected reward of tracks of affinity ``a`` (any shape, vectorised), float64 like ``a``.

    ``E[pct] + like_weight * P(liked) - early_skip_penalty * P(pct < early_skip_threshold)``.
    """
    e_pct, p_like, p_low = response_moments(a, cfg, early_skip_threshold)
    return e_pct + like_weight * p_like - early_skip_penalty * p_low


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
    a = np.asarray(a, dtype=np.float64)
    e = cfg.early_skip_max
    q_e = 0.5 * (1.0 + np.tanh(0.5 * (cfg.early_skip_threshold - a) / cfg.early_skip_slope))  # sigmoid
    q_f = cfg.full_listen_scale * a
    m = cfg.partial_mean_low + (cfg.partial_mean_high - cfg.partial_mean_low) * a
    e_pct = q_e * (e / 2) + (1 - q_e) * (q_f + (1 - q_f) * (e + (1 - e) * m))
    p_like = (1 - q_e) * q_f * cfg.like_scale * a**cfg.like_power
    u = min(max((threshold - e) / (1 - e), 0.0), 1.0)
    p_low = (q_e * min(threshold / e, 1.0) + (1 - q_e) * (1 - q_f) * u ** (m / (1 - m))
             + (1 - q_e) * q_f * float(threshold > 1))
    return e_pct, p_like, p_low


class ListenerPopulation:
    """A population of listeners with hidden taste over one catalog (user model).

    Build it with :meth:`sample`. A listener's (N, C) per-centre affinity table is computed once, cached.

    Attributes:
        n: number of listeners.
        cfg: the listener config.
        scale: (11,) the taste units ``s``.
        centres: (n, C, 11) taste centres; weights: (n, C, 11) feature weights; mixture: (n, C) ``pi0``.
    """

    def __init__(self, X: np.ndarray, cfg: ListenerConfig, centres: np.ndarray, weights: np.ndarray,
                 mixture: np.ndarray) -> None:
        self.cfg = cfg
        X = np.asarray(X, dtype=np.float64)
        self.scale = taste_scale(X, cfg.taste_scaling)
        self.centres, self.weights, self.mixture = centres, weights, mixture
        self.n = int(centres.shape[0])
        self.n_tracks = int(X.shape[0])
        self._Xs = X / self.scale
        self._tables: dict[int, np.ndarray] = {}
        self._proj: np.ndarray | None = None

    @classmethod
    def sample(cls, X: np.ndarray, cfg: ListenerConfig, rng: np.random.Generator,
               n: int | None = None) -> ListenerPopulation:
        """Draw ``n`` listeners (default ``cfg.population``) whose taste lives near tracks of ``X``.

        Args:
            X: normalised features (N, 11) in [0, 1].
            cfg: listener config (validated here).
            rng: the only source of randomness: same ``X``, ``cfg`` and generator state ⇒ same population.
            n: population size; None: ``cfg.population``.
        """
        cfg.validate()
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] < 1:
            raise ValueError(f"X must have shape (N, n_features) with N >= 1, got {X.shape}")
        n = cfg.population if n is None else int(n)
        if n < 1:
            raise ConfigError(f"listeners.population={n}: must be an integer >= 1")
        n_feat, c = X.shape[1], cfg.n_taste_centres
        scale = taste_scale(X, cfg.taste_scaling)
        anchors = rng.integers(X.shape[0], size=(n, c))
        noise = cfg.centre_noise * scale * rng.standard_normal((n, c, n_feat))
        centres = np.clip(X[anchors] + noise, 0.0, 1.0)
        weights = rng.dirichlet(np.full(n_feat, cfg.weight_concentration), size=(n, c))
        mixture = rng.dirichlet(np.full(c, cfg.mixture_concentration), size=n)
        return cls(X, cfg, centres, weights, mixture)

    def split(self, held_out_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Split the listener ids into disjoint, sorted (train, held-out) int64 arrays, drawn from ``rng``.

        ``round(held_out_fraction * n)`` listeners are held out, but at least one stays in training.
        """
        if not 0.0 <= held_out_fraction < 1.0:
            raise ConfigError(f"listeners.held_out_fraction={held_out_fraction!r}: must be in [0, 1)")
        n_held = min(int(round(held_out_fraction * self.n)), self.n - 1)
        perm = rng.permutation(self.n)
        return np.sort(perm[n_held:]), np.sort(perm[:n_held])

    def centre_affinities(self, listener: int) -> np.ndarray:
        """Per-centre affinities ``a_c(x)`` of a listener to every track, (N, C) float64 (a cached view)."""
        return self.session_table(listener)[:, :self.cfg.n_taste_centres]

    def affinity(self, listener: int) -> np.ndarray:
        """Static affinity ``sum_c pi0_c a_c(x)`` of every track (fresh-session state), (N,) in [0, 1]."""
        return self.centre_affinities(listener) @ self.mixture[self._check(listener)]

    def affinity_matrix(self, listeners: np.ndarray, tracks: np.ndarray) -> np.ndarray:
        """Static affinities of many listeners to many tracks, (L, n) float64, vectorised over both.

        Args:
            listeners: listener ids (L,).
            tracks: track indices (n,).
        """
        ids = np.array([self._check(i) for i in np.asarray(listeners).ravel().tolist()], dtype=np.int64)
        n_feat = self._Xs.shape[1]
        centres, weights = self.centres[ids].reshape(-1, n_feat), self.weights[ids].reshape(-1, n_feat)
        block = self._affinity_block(np.asarray(tracks, dtype=np.int64).ravel(), centres, weights)
        block = block.reshape(block.shape[0], ids.size, -1)  # (n, L, C)
        return np.einsum("nlc,lc->ln", block, self.mixture[ids])

    def _affinity_block(self, tracks: np.ndarray, centres: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """``exp(-d^2 / (2 taste_width^2))`` of tracks (n,) to centres (M, 11), weights (M, 11): (n, M)."""
        xs = self._Xs[tracks]
        ms = centres / self.scale
        d2 = (xs * xs) @ weights.T - 2.0 * xs @ (weights * ms).T + np.einsum("mj,mj->m", weights, ms * ms)
        np.maximum(d2, 0.0, out=d2)
        return np.exp(-d2 / (2.0 * self.cfg.taste_width**2))

    def expected_reward_all(self, listener: int, like_weight: float, early_skip_penalty: float = 0.0,
                            early_skip_threshold: float = 0.1) -> np.ndarray:
        """Exact expected reward of every track in a fresh session, (N,) float64.

        ``E[pct] + like_weight * P(liked) - early_skip_penalty * P(pct < early_skip_threshold)``.
        """
        return expected_reward(self.affinity(listener), self.cfg, like_weight, early_skip_penalty,
                               early_skip_threshold)

    def session(self, listener: int, rng: np.random.Generator) -> ListenerSession:
        """A fresh listening session of ``listener`` whose responses are drawn from ``rng``."""
        return ListenerSession(self, self._check(listener), rng)

    def session_table(self, listener: int) -> np.ndarray:
        """``[a_1(x) .. a_C(x), p_1(x), p_2(x), p_3(x)]`` per track: (N, C + 3) float64, C-order (cached).

        One row is everything a session step reads about a track, in one cache line or two.
        """
        i = self._check(listener)
        if i not in self._tables:
            a_c = self._affinity_block(np.arange(self._Xs.shape[0]), self.centres[i], self.weights[i])
            self._tables[i] = np.hstack([a_c, self.boredom_coords()])
        return self._tables[i]

    def boredom_coords(self) -> np.ndarray:
        """``p(x)``: the first three principal components of ``x / s`` per track, (N, 3) float64 (cached)."""
        if self._proj is None:
            centred = self._Xs - self._Xs.mean(axis=0)
            _, _, vt = np.linalg.svd(centred, full_matrices=False)
            self._proj = np.zeros((centred.shape[0], _BOREDOM_DIMS))
            dims = min(_BOREDOM_DIMS, vt.shape[0])
            self._proj[:, :dims] = centred @ vt[:dims].T
        return self._proj

    def _check(self, listener: int) -> int:
        """``listener`` as an int; ValueError when it is not an id of this population."""
        i = int(listener)
        if not 0 <= i < self.n:
            raise ValueError(f"listener {listener!r} outside 0..{self.n - 1}")
        return i


class ListenerSession:
    """One listening session of one listener (response model); a step costs a few microseconds.

    Create it with :meth:`ListenerPopulation.session`. :meth:`expected` and :meth:`expected_reward` read the
    current state; :meth:`respond` draws an answer and advances the state. Scalar Python math: numpy's
    per-call overhead would dominate for the k = 4 candidates of a step. Affinities are memoised until
    the state changes, so ``respond`` on a candidate just scored costs no second lookup.

    Attributes:
        listener: the listener id.
        left: True once the listener has skipped ``patience`` tracks in a row.
        n_played: tracks played so far.
        skips: the current run of consecutive skips (``pct < 0.5``).
    """

    def __init__(self, population: ListenerPopulation, listener: int, rng: np.random.Generator) -> None:
        c = population.cfg
        self.listener = listener
        self.left = False
        self.n_played = 0
        self.skips = 0
        self._cfg = c
        self._rng = rng
        self._table = population.session_table(listener)
        self._pi = population.mixture[listener].tolist()
        self._window: list[tuple[float, float, float]] = []
        self._played: set[int] = set()
        self._cache: dict[int, tuple[float, list[float]]] = {}  # track -> (a_t(x), its session_table row)
        self._u: list[float] = []
        self._ui = 0
        self._n_u = 3 + len(self._pi)  # uniforms per response: branch, value, like, one per centre (drift)
        self._params, self._inv2sb2, self._keep, self._drift = _session_constants(c)

    def fork(self, rng: np.random.Generator) -> ListenerSession:
        """A copy of this session in its current state (taste mixture, boredom window, tracks heard, skips,
        whether the listener left) whose answers from now on are drawn from ``rng``: for simulating what
        would follow a choice without touching this session or its random stream."""
        twin = copy.copy(self)
        twin._rng, twin._u, twin._ui = rng, [], 0
        twin._pi, twin._window = list(self._pi), list(self._window)
        twin._played, twin._cache = set(self._played), dict(self._cache)
        return twin

    def affinity_now(self, track: int) -> float:
        """The affinity ``a_t(x)`` of a track in the current state (mixture, boredom, repeats)."""
        return self._affinities([int(track)])[0]

    def expected(self, tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact ``E[pct]`` and ``P(liked)`` of each track in the current state: two float64 arrays."""
        e_pct, p_like, _ = response_moments(np.array(self._affinities(np.asarray(tracks).ravel())), self._cfg)
        return e_pct, p_like

    def expected_reward(self, tracks: np.ndarray, like_weight: float, early_skip_penalty: float = 0.0,
                        early_skip_threshold: float = 0.1) -> np.ndarray:
        """Exact expected reward of each track in the current state, (k,) float64.

        ``E[pct] + like_weight * P(liked) - early_skip_penalty * P(pct < early_skip_threshold)``, the
        threshold being the reward's (``reward.early_skip_threshold``).
        """
        e, tau, slope, phi, m0, dm, gamma = self._params
        lam = self._cfg.like_scale * like_weight
        if early_skip_penalty:
            h_early = min(early_skip_threshold / e, 1.0)
            h_part = min(max((early_skip_threshold - e) / (1.0 - e), 0.0), 1.0)
            h_full = 1.0 if early_skip_threshold > 1.0 else 0.0
        out = []
        for a in self._affinities(tracks):
            z = (a - tau) / slope
            q_e = 1.0 / (1.0 + math.exp(z)) if z < 700.0 else 0.0
            not_e = 1.0 - q_e
            full = not_e * phi * a
            part = not_e - full
            m = m0 + dm * a
            r = q_e * e * 0.5 + full + part * (e + (1.0 - e) * m) + lam * full * a**gamma
            if early_skip_penalty:
                r -= early_skip_penalty * (q_e * h_early + part * h_part ** (m / (1.0 - m)) + full * h_full)
            out.append(r)
        return np.array(out, dtype=np.float64)

    def respond(self, track: int) -> tuple[float, int]:
        """Play ``track``: draw ``(pct in [0, 1], liked in {0, 1})`` and advance the session state.

        Raises:
            RuntimeError: the listener has already left the session.
        """
        if self.left:
            raise RuntimeError(f"listener {self.listener} left the session after {self.n_played} tracks")
        track = int(track)
        a, row = self._affinity(track)
        i = self._ui
        if i + self._n_u > len(self._u):
            self._u = self._rng.random(_UNIFORM_BLOCK).tolist()
            i = 0
        u = self._u
        self._ui = i + self._n_u
        e, tau, slope, phi, m0, dm, gamma = self._params
        liked = 0
        z = (a - tau) / slope
        if u[i] < (1.0 / (1.0 + math.exp(z)) if z < 700.0 else 0.0):
            pct = e * u[i + 1]
        elif u[i + 1] < phi * a:
            pct = 1.0
            liked = 1 if u[i + 2] < self._cfg.like_scale * a**gamma else 0
        else:
            m = m0 + dm * a
            pct = e + (1.0 - e) * u[i + 2] ** ((1.0 - m) / m)  # B = U^(1/alpha) ~ Beta(alpha, 1)
        self._advance(track, row, pct, u, i + 3)
        return pct, liked

    def _affinities(self, tracks: np.ndarray | list[int]) -> list[float]:
        """``a_t(x)`` of each track (see :meth:`_affinity`)."""
        affinity = self._affinity
        return [affinity(t)[0] for t in _as_list(tracks)]

    def _affinity(self, track: int) -> tuple[float, list[float]]:
        """``a_t(x)`` of a track and its session-table row, memoised until the state changes (the hot path)."""
        hit = self._cache.get(track)
        if hit is not None:
            return hit
        row = self._table[track].tolist()
        a = sum(map(mul, self._pi, row))  # stops at the C mixture weights
        window = self._window
        if window:
            x0, x1, x2 = row[-3], row[-2], row[-1]
            best = math.inf
            for y0, y1, y2 in window:
                d = (x0 - y0) * (x0 - y0) + (x1 - y1) * (x1 - y1) + (x2 - y2) * (x2 - y2)
                if d < best:
                    best = d
            a *= 1.0 - self._cfg.boredom * math.exp(-best * self._inv2sb2)
        if track in self._played:
            a *= self._keep
        hit = self._cache[track] = (a, row)
        return hit

    def _advance(self, track: int, row: list[float], pct: float, u: list[float], i: int) -> None:
        """The state after a response: skips, leaving, boredom window, played set, mixture drift."""
        self.n_played += 1
        self.skips = self.skips + 1 if pct < SKIP_BELOW else 0
        self.left = self.skips >= self._cfg.patience
        width = self._cfg.boredom_window
        if width:
            self._window.append((row[-3], row[-2], row[-1]))
            if len(self._window) > width:
                del self._window[0]
        self._played.add(track)
        self._cache.clear()
        d = self._drift
        if d:  # log pi_c += d (u_c - 1/2), then renormalise
            pi = self._pi
            total = 0.0
            for c in range(len(pi)):
                pi[c] *= math.exp(d * (u[i + c] - 0.5))
                total += pi[c]
            for c in range(len(pi)):
                pi[c] = max(pi[c] / total, 1e-12)


def _session_constants(cfg: ListenerConfig) -> tuple[tuple[float, ...], float, float, float]:
    """What a session step reads of the config: the response parameters ``(e, tau, slope, phi, m0, dm,
    gamma)``, ``1 / (2 boredom_width^2)``, the repeat factor and the drift step's half-range factor."""
    params = (cfg.early_skip_max, cfg.early_skip_threshold, cfg.early_skip_slope, cfg.full_listen_scale,
              cfg.partial_mean_low, cfg.partial_mean_high - cfg.partial_mean_low, cfg.like_power)
    drift = cfg.drift * math.sqrt(12.0) if cfg.n_taste_centres > 1 else 0.0  # U(-d/2, d/2) has std drift
    return params, 1.0 / (2.0 * cfg.boredom_width**2), 1.0 - cfg.repeat_penalty, drift


def _as_list(tracks: np.ndarray | list[int]) -> list[int]:
    """Track indices as a list of Python ints."""
    return tracks.tolist() if isinstance(tracks, np.ndarray) else [int(t) for t in tracks]


def calibration_report(X: np.ndarray, cfg: ListenerConfig, rng: np.random.Generator,
                       like_weight: float = 10.0, n_queries: int = 200, k: int = 4) -> dict[str, float]:
    """How a population answers on a catalog: the figures the listener defaults are calibrated on.

    Draws a population (``cfg.population`` listeners) and ``n_queries`` random tracks per listener, in the
    fresh-session state. The candidates of a query track are its ``k`` nearest other tracks on a PCA(5)
    of ``X`` with each component rescaled to [0, 1] (as the env's PCA latents).

    Returns:
        Over random listener-track pairs: ``like_rate`` (mean P(liked)), ``mean_pct``, ``early_skip_rate``
        (P(pct < 0.1)), ``mean_affinity``, ``mean_reward``. Over queries: ``random_reward`` (a random
        candidate's expected reward), ``oracle_reward`` (the best candidate's) and ``oracle_ratio``.
    """
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    pop = ListenerPopulation.sample(X, cfg, rng)
    X = np.asarray(X, dtype=np.float64)
    z = PCA(n_components=min(5, X.shape[1]), svd_solver="full").fit_transform(X)
    z = (z - z.min(axis=0)) / np.maximum(z.max(axis=0) - z.min(axis=0), 1e-12)
    queries = rng.integers(X.shape[0], size=(pop.n, n_queries))
    _, nn = NearestNeighbors(n_neighbors=k + 1).fit(z).kneighbors(z[queries.ravel()])
    cands = np.array([row[row != q][:k] for row, q in zip(nn, queries.ravel(), strict=True)])
    cands = cands.reshape(pop.n, n_queries, k)
    a_pairs = np.stack([pop.affinity_matrix([i], queries[i])[0] for i in range(pop.n)])
    a_cands = np.stack([pop.affinity_matrix([i], cands[i].ravel())[0] for i in range(pop.n)])
    a_cands = a_cands.reshape(cands.shape)
    e_pct, p_like, p_low = response_moments(a_pairs, cfg)
    c_pct, c_like, _ = response_moments(a_cands, cfg)
    r_cands = c_pct + like_weight * c_like
    random_reward, oracle_reward = float(r_cands.mean()), float(r_cands.max(axis=2).mean())
    return {
        "like_rate": float(p_like.mean()), "mean_pct": float(e_pct.mean()),
        "early_skip_rate": float(p_low.mean()), "mean_affinity": float(a_pairs.mean()),
        "mean_reward": float((e_pct + like_weight * p_like).mean()),
        "random_reward": random_reward, "oracle_reward": oracle_reward,
        "oracle_ratio": oracle_reward / random_reward,
    }
