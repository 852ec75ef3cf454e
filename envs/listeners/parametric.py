"""The parametric listener (``listeners.model=parametric``): a hidden-taste user model and its response (choice)
model, with session dynamics; the first implementation of :mod:`envs.listeners.base`.

As in RecSim/KuaiSim, the user model (what a listener likes: :class:`ParametricPopulation`) is separate from
the response model (how one listening session answers: :class:`ParametricSession`).

**Taste (hidden, fixed per listener).** Features ``x`` in [0, 1]^11 are compared in units ``s`` (11,):
each feature's standard deviation over the catalog (``taste_scaling=per_feature``) or one pooled scale
(``pooled``, see :class:`envs.listeners.config.TasteScaling`). Listener ``l`` has ``C = n_taste_centres``
centres; each sits near a random track ``x_t`` of the catalog, so taste lives where tracks are, and weighs the
features with Dirichlet weights (sum 1; a few features dominate when ``weight_concentration`` is small)::

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

**The catalog's best track** in the current state (the catalog oracle's choice, :meth:`ParametricSession.best_track`)
is found without scoring the catalog: ``a_t(x) <= sum_c pi_c a_c(x)`` and the reward rises with ``a``, so a branch
and bound over blocks of tracks of close per-centre affinities (:meth:`ParametricPopulation.taste_index`) reads a few
thousand tracks and returns the full scan's row, bit for bit.

**Responses** to a track of current affinity ``a``: the response model of :mod:`envs.listeners.response`,
its maths written once there and shared by the answers :meth:`ParametricSession.respond` draws and the exact
expectations of :meth:`ParametricSession.expected_reward` and :meth:`ParametricPopulation.expected_reward_all`.

The defaults are calibrated by :func:`envs.listeners.calibration.calibration_report` on
``synthetic_catalog(20000, seed=0)`` with the physical normaliser: about 9% of random listener-track pairs are
liked, and among the 4 nearest neighbours of a track the best one (oracle) earns about 1.5x the expected reward
of a random one.

Randomness only from passed ``np.random.Generator``s: a population is a pure function of ``(X, cfg,
generator state)``; a session reads its generator in blocks of uniforms, a fixed number per response.
"""

from __future__ import annotations

import copy
import math
from operator import mul

import numpy as np

from envs.listeners.base import Population, Session
from envs.listeners.config import ListenerConfig
from envs.listeners.response import (
    ResponseParams,
    answer_probabilities,
    exp_array,
    exp_scalar,
    expected_reward,
    moments,
    reward_of,
)
from music_rl.core.errors import ConfigError

SKIP_BELOW = 0.5  # a response with pct below this is a skip; patience counts consecutive skips
_BOREDOM_DIMS = 3  # principal components of x / s in which boredom similarity is measured
_CHUNK = 1_000_000  # tracks a catalog-wide computation holds at a time (a catalog up to this size: one block)
_UNIFORM_BLOCK = 256  # uniforms a session draws from its generator at a time
_VECTOR_FROM = 64  # expected_reward of more tracks than this takes the array path (numpy's overhead pays off)
_BLOCK = 64  # tracks per block of a listener's taste index (ParametricPopulation.taste_index)
_FIRST_BLOCKS = 16  # best_track reads the blocks of highest bound first, doubling from this many at most
_WALK_UNTIL = 0.125  # best_track scans the whole catalog instead where the blocks to read would pass this share of it
_ROUNDING = 1e-10  # best_track's bound on reward_of's rounding at one affinity, in units of (1 + like_weight +
# penalty) / (1 - partial_mean_high): _reward_floor's docstring works out the worst case, some 1e4 times smaller


def taste_scale(X: np.ndarray, scaling: str) -> np.ndarray:
    """The units ``s`` (n_features,) taste distances are measured in (``listeners.taste_scaling``)."""
    X = np.asarray(X)
    if len(X) <= _CHUNK:
        std: np.ndarray = np.asarray(X, dtype=np.float64).std(axis=0)
    else:  # a chunk at a time (two passes): a float64 copy of a large catalog would not fit
        mean = sum(np.asarray(X[part], dtype=np.float64).sum(axis=0) for part in _chunks(len(X))) / len(X)
        var = sum(np.square(np.asarray(X[part], dtype=np.float64) - mean).sum(axis=0) for part in _chunks(len(X)))
        std = np.sqrt(var / len(X))
    if scaling == "pooled":
        std = np.full_like(std, np.sqrt(np.mean(std**2)))
    scale: np.ndarray = np.maximum(std, 1e-6)
    return scale


def _chunks(n: int) -> list[slice]:
    """The row blocks of a catalog of ``n`` tracks, :data:`_CHUNK` at a time."""
    return [slice(start, min(start + _CHUNK, n)) for start in range(0, n, _CHUNK)]


class ParametricPopulation(Population):
    """A population of listeners with hidden taste over one catalog (user model): the parametric
    :class:`envs.listeners.base.Population`.

    Build it with :meth:`sample`. A listener's (N, C) per-centre affinity table is computed once, cached; so is its
    taste index (:meth:`taste_index`), the first time the catalog oracle searches for its best track.

    Attributes:
        n: number of listeners.
        cfg: the listener config.
        scale: (11,) the taste units ``s``.
        centres: (n, C, 11) taste centres; weights: (n, C, 11) feature weights; mixture: (n, C) ``pi0``.
        session_constants: what a session step reads of the config (computed once, shared by every session).
    """

    def __init__(self, X: np.ndarray, cfg: ListenerConfig, centres: np.ndarray, weights: np.ndarray,
                 mixture: np.ndarray) -> None:
        self.cfg = cfg
        X = np.asarray(X)  # as given (a world's float32 memory map): rows are read in float64 where used (_xs)
        self.scale = taste_scale(X, cfg.taste_scaling)
        self.centres, self.weights, self.mixture = centres, weights, mixture
        self.n = int(centres.shape[0])
        self.n_tracks = int(X.shape[0])
        self._X = X
        self._tables: dict[int, np.ndarray] = {}
        self._indexes: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._proj: np.ndarray | None = None
        self.session_constants = _session_constants(cfg)

    @classmethod
    def sample(cls, X: np.ndarray, cfg: ListenerConfig, rng: np.random.Generator,
               n: int | None = None) -> ParametricPopulation:
        """Draw ``n`` listeners (default ``cfg.population``) whose taste lives near tracks of ``X``.

        Args:
            X: normalised features (N, 11) in [0, 1].
            cfg: listener config (validated here).
            rng: the only source of randomness: same ``X``, ``cfg`` and generator state ⇒ same population.
            n: population size; None: ``cfg.population``.
        """
        cfg.validate()
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[0] < 1:
            raise ValueError(f"X must have shape (N, n_features) with N >= 1, got {X.shape}")
        n = cfg.population if n is None else int(n)
        if n < 1:
            raise ConfigError(f"listeners.population={n}: must be an integer >= 1")
        n_feat, c = X.shape[1], cfg.n_taste_centres
        scale = taste_scale(X, cfg.taste_scaling)
        anchors = rng.integers(X.shape[0], size=(n, c))
        noise = cfg.centre_noise * scale * rng.standard_normal((n, c, n_feat))
        centres = np.clip(np.asarray(X[anchors], dtype=np.float64) + noise, 0.0, 1.0)
        weights = rng.dirichlet(np.full(n_feat, cfg.weight_concentration), size=(n, c))
        mixture = rng.dirichlet(np.full(c, cfg.mixture_concentration), size=n)
        return cls(X, cfg, centres, weights, mixture)

    def centre_affinities(self, listener: int) -> np.ndarray:
        """Per-centre affinities ``a_c(x)`` of a listener to every track, (N, C) float64 (a cached view)."""
        return self.session_table(listener)[:, :self.cfg.n_taste_centres]

    def affinity(self, listener: int) -> np.ndarray:
        """Static affinity ``sum_c pi0_c a_c(x)`` of every track (fresh-session state), (N,) in [0, 1]."""
        affinity: np.ndarray = self.centre_affinities(listener) @ self.mixture[self._check(listener)]
        return affinity

    def affinity_matrix(self, listeners: np.ndarray, tracks: np.ndarray) -> np.ndarray:
        """Static affinities of many listeners to many tracks, (L, n) float64, vectorised over both.

        Args:
            listeners: listener ids (L,).
            tracks: track indices (n,).
        """
        ids = np.array([self._check(i) for i in np.asarray(listeners).ravel().tolist()], dtype=np.int64)
        n_feat = self._X.shape[1]
        centres, weights = self.centres[ids].reshape(-1, n_feat), self.weights[ids].reshape(-1, n_feat)
        block = self._affinity_block(np.asarray(tracks, dtype=np.int64).ravel(), centres, weights)
        block = block.reshape(block.shape[0], ids.size, -1)  # (n, L, C)
        affinities: np.ndarray = np.einsum("nlc,lc->ln", block, self.mixture[ids])
        return affinities

    def _affinity_block(self, tracks: np.ndarray, centres: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """``exp(-d^2 / (2 taste_width^2))`` of tracks (n,) to centres (M, 11), weights (M, 11): (n, M)."""
        xs = self._xs(tracks)
        ms = centres / self.scale
        d2 = (xs * xs) @ weights.T - 2.0 * xs @ (weights * ms).T + np.einsum("mj,mj->m", weights, ms * ms)
        np.maximum(d2, 0.0, out=d2)
        block: np.ndarray = np.exp(-d2 / (2.0 * self.cfg.taste_width**2))
        return block

    def expected_reward_all(self, listener: int, like_weight: float, early_skip_penalty: float = 0.0,
                            early_skip_threshold: float = 0.1) -> np.ndarray:
        """Exact expected reward of every track in a fresh session, (N,) float64.

        ``E[pct] + like_weight * P(liked) - early_skip_penalty * P(pct < early_skip_threshold)``.
        """
        return expected_reward(self.affinity(listener), self.cfg, like_weight, early_skip_penalty,
                               early_skip_threshold)

    def session(self, listener: int, rng: np.random.Generator) -> ParametricSession:
        """A fresh listening session of ``listener`` whose responses are drawn from ``rng``."""
        return ParametricSession(self, self._check(listener), rng)

    def session_table(self, listener: int) -> np.ndarray:
        """``[a_1(x) .. a_C(x), p_1(x), p_2(x), p_3(x)]`` per track: (N, C + 3) float64, C-order (cached).

        One row is everything a session step reads about a track, in one cache line or two.
        """
        i = self._check(listener)
        if i not in self._tables:
            c = self.cfg.n_taste_centres
            table = np.empty((self.n_tracks, c + _BOREDOM_DIMS))
            for part in _chunks(self.n_tracks):  # a catalog of at most _CHUNK tracks: one block
                table[part, :c] = self._affinity_block(np.arange(part.start, part.stop), self.centres[i],
                                                       self.weights[i])
            table[:, c:] = self.boredom_coords()
            self._tables[i] = table
        return self._tables[i]

    def taste_index(self, listener: int) -> tuple[np.ndarray, np.ndarray]:
        """A listener's tracks in blocks of similar per-centre affinities, with each block's bound, computed once
        per listener (cached): what :meth:`ParametricSession.best_track` reads instead of the whole catalog.

        Returns ``(order, block_max)``: ``order`` (N,) int32 rows (int64 from 2**31 tracks), the tracks sorted along
        a Z-order curve of their per-centre affinities ``(a_1(x) .. a_C(x))`` (:func:`_z_order`), so that each
        block of ``_BLOCK`` consecutive tracks in it holds tracks of close affinities; ``block_max`` (C, ceil(N /
        _BLOCK)) float64, each block's largest ``a_c`` per centre (a row per centre). Memory: ``4 + C / 8`` bytes a
        track and listener (4.25 at the default C = 2, 41 MiB a listener at 10M tracks; the :meth:`session_table`
        takes ``8 (C + 3)``, 381 MiB), and ``17 / 64`` bytes a track per session that searches (its scratch).
        Computing it sorts the catalog once: a fifth of the time the session table takes to compute.
        """
        i = self._check(listener)
        if i not in self._indexes:
            affinities = self.centre_affinities(i)
            n = affinities.shape[0]
            row_bits = max(1, (n - 1).bit_length())  # the code's top 64 - row_bits bits, then the row: one sort of
            keys = (_z_order(affinities) >> np.uint64(row_bits - 1)) << np.uint64(row_bits)  # uint64, 3x faster
            keys |= np.arange(n, dtype=np.uint64)  # than an argsort (ties in the code: by row)
            keys.sort()
            order = (keys & np.uint64((1 << row_bits) - 1)).astype(np.int32 if n < 2**31 else np.int64)
            del keys
            block_max = np.maximum.reduceat(affinities[order], np.arange(0, n, _BLOCK), axis=0)
            self._indexes[i] = order, np.ascontiguousarray(block_max.T)
        return self._indexes[i]

    def boredom_coords(self) -> np.ndarray:
        """``p(x)``: the first three principal components of ``x / s`` per track, (N, 3) float64 (cached)."""
        if self._proj is None:
            n = self.n_tracks
            if n <= _CHUNK:
                xs = self._xs(np.arange(n))
                centred = xs - xs.mean(axis=0)
                _, _, vt = np.linalg.svd(centred, full_matrices=False)
            else:  # the principal axes from the covariance, a chunk at a time (the same axes, up to their signs,
                # which leave the boredom distances unchanged)
                mean = sum(self._xs(np.arange(p.start, p.stop)).sum(axis=0) for p in _chunks(n)) / n
                cov = sum((lambda c: c.T @ c)(self._xs(np.arange(p.start, p.stop)) - mean) for p in _chunks(n))
                values, vectors = np.linalg.eigh(cov)
                vt = vectors[:, np.argsort(values)[::-1]].T
            self._proj = np.zeros((n, _BOREDOM_DIMS))
            dims = min(_BOREDOM_DIMS, vt.shape[0])
            for part in _chunks(n):
                rows = np.arange(part.start, part.stop)
                centred = self._xs(rows) - (xs.mean(axis=0) if n <= _CHUNK else mean)
                self._proj[part, :dims] = centred @ vt[:dims].T
        return self._proj

    def _xs(self, tracks: np.ndarray) -> np.ndarray:
        """``x / s`` of some tracks, float64 (n, 11)."""
        xs: np.ndarray = np.asarray(self._X[tracks], dtype=np.float64) / self.scale
        return xs

    def _check(self, listener: int) -> int:
        """``listener`` as an int; ValueError when it is not an id of this population."""
        i = int(listener)
        if not 0 <= i < self.n:
            raise ValueError(f"listener {listener!r} outside 0..{self.n - 1}")
        return i


class ParametricSession(Session):
    """One listening session of one parametric listener (response model): the parametric
    :class:`envs.listeners.base.Session`; a step costs a few microseconds.

    Create it with :meth:`ParametricPopulation.session`. :meth:`expected` and :meth:`expected_reward` read the
    current state; :meth:`respond` draws an answer and advances the state. Scalar Python math: numpy's
    per-call overhead would dominate for the k = 4 candidates of a step. Affinities are memoised until
    the state changes, so ``respond`` on a candidate just scored costs no second lookup.

    Attributes:
        listener: the listener id.
        left: True once the listener has skipped ``patience`` tracks in a row.
        n_played: tracks played so far.
        skips: the current run of consecutive skips (``pct < 0.5``).
    """

    def __init__(self, population: ParametricPopulation, listener: int, rng: np.random.Generator) -> None:
        c = population.cfg
        self.listener = listener
        self.left = False
        self.n_played = 0
        self.skips = 0
        self._cfg = c
        self._rng = rng
        self._population = population
        self._table = population.session_table(listener)
        self._pi = population.mixture[listener].tolist()
        self._window: list[tuple[float, float, float]] = []
        self._played: set[int] = set()
        self._cache: dict[int, tuple[float, list[float]]] = {}  # track -> (a_t(x), its session_table row)
        self._u: list[float] = []
        self._ui = 0
        self._n_u = 3 + len(self._pi)  # uniforms per response: branch, value, like, one per centre (drift)
        self._scratch: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # best_track's, per block
        self._params, self._inv2sb2, self._keep, self._drift = population.session_constants

    def fork(self, rng: np.random.Generator) -> ParametricSession:
        """A copy of this session in its current state (taste mixture, boredom window, tracks heard, skips,
        whether the listener left) whose answers from now on are drawn from ``rng``: for simulating what
        would follow a choice without touching this session or its random stream."""
        twin = copy.copy(self)
        twin._rng, twin._u, twin._ui = rng, [], 0
        twin._pi, twin._window = list(self._pi), list(self._window)
        twin._played, twin._cache = set(self._played), dict(self._cache)
        twin._scratch = None
        return twin

    def affinity_now(self, track: int) -> float:
        """The affinity ``a_t(x)`` of a track in the current state (mixture, boredom, repeats)."""
        return self._affinities([int(track)])[0]

    def expected(self, tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact ``E[pct]`` and ``P(liked)`` of each track in the current state: two float64 arrays."""
        a = np.array(self._affinities(np.asarray(tracks).ravel()), dtype=np.float64)
        e_pct, full, q_like, _ = moments(a, self._params, exp_array)
        return e_pct, full * q_like

    def expected_reward(self, tracks: np.ndarray, like_weight: float, early_skip_penalty: float = 0.0,
                        early_skip_threshold: float = 0.1) -> np.ndarray:
        """Exact expected reward of each track in the current state, (k,) float64.

        ``E[pct] + like_weight * P(liked) - early_skip_penalty * P(pct < early_skip_threshold)``, the
        threshold being the reward's (``reward.early_skip_threshold``). A few tracks (the candidates) each on the
        scalar path of :func:`reward_of`, where numpy's per-call overhead would dominate; more than
        ``_VECTOR_FROM`` (the catalog oracle's whole catalog) on the array path (:meth:`affinities_now`).
        """
        p = self._params
        tracks = np.asarray(tracks).ravel()
        if len(tracks) > _VECTOR_FROM:  # many tracks (the catalog oracle: all of them): the array path
            return reward_of(self.affinities_now(tracks), p, like_weight, early_skip_penalty, early_skip_threshold,
                             exp_array)
        return np.array([reward_of(a, p, like_weight, early_skip_penalty, early_skip_threshold, exp_scalar)
                         for a in self._affinities(tracks)], dtype=np.float64)

    def best_track(self, n_tracks: int, excluded: np.ndarray, like_weight: float, early_skip_penalty: float = 0.0,
                   early_skip_threshold: float = 0.1) -> int:
        """The track of the catalog not in ``excluded`` of the highest expected reward in the current state, ties
        to the lower row: exactly the track (the same row, the same reward to the bit) of the full scan
        (:meth:`envs.listeners.base.Session.best_track`), reading a few thousand tracks instead of the catalog.

        **Why it can stop early.** ``a_t(x) = m_t(x) u(x)`` with ``u(x) = sum_c pi_c a_c(x)`` and the boredom and
        repeat factor ``m_t(x)`` in [0, 1] (boredom and repeat_penalty in [0, 1]), so ``a_t(x) <= u(x)``: in floats
        too, ``u(x)`` being the first sum of :meth:`affinities_now` and a product by a factor <= 1 rounding to at
        most ``u(x)``. The reward is non-decreasing in ``a`` for every listener config
        :meth:`ListenerConfig.validate` allows and every reward :mod:`envs.rewards` allows (like_weight,
        early_skip_penalty, early_skip_threshold >= 0: :func:`_rewards_rise`; other settings take the full scan).

        **The search** (branch and bound on :meth:`ParametricPopulation.taste_index`): a block's bound
        ``sum_c pi_c max_block a_c`` (the same sum of products, rounding monotone) is at least the ``u`` of each of
        its tracks. The blocks of highest bound are read first (their tracks' exact ``a_t`` by
        :meth:`affinities_now`, the full scan's arithmetic); with ``a*`` the best ``a_t`` read, :func:`_reward_floor`
        gives an affinity ``f < a*`` whose reward is provably below ``a*``'s by more than twice the rounding of
        :func:`reward_of`, so that no track of affinity ``<= f`` can reach the full scan's best float reward. Once
        every block of bound ``> f`` is read, the tracks read above ``f`` are scored by the full scan's vectorised
        :func:`reward_of` (each element's arithmetic does not depend on its neighbours) in row order, and argmax's
        first best is the full scan's row.

        Falls back to the full scan where the catalog is small (the full scan's scalar path, up to
        ``_VECTOR_FROM`` tracks), the reward may not rise with ``a``, or the blocks to read would pass
        ``_WALK_UNTIL`` of the catalog (as where no floor exists: a best ``a*`` of 0, a reward flat in floats).
        """
        n = self._table.shape[0]
        if n_tracks != n:
            raise ValueError(f"n_tracks={n_tracks}: this listener's catalog has {n} tracks")
        args = (like_weight, early_skip_penalty, early_skip_threshold)
        bounded = 0.0 <= self._cfg.boredom <= 1.0 and 0.0 <= self._keep <= 1.0  # so 0 <= a_t(x) <= u(x)
        if n <= _VECTOR_FROM or not bounded or not _rewards_rise(self._params, *args):
            return super().best_track(n_tracks, excluded, *args)
        tol = _ROUNDING * (1.0 + like_weight + early_skip_penalty) / (1.0 - self._cfg.partial_mean_high)
        found = self._search(np.unique(np.asarray(excluded, dtype=np.int64)), tol, *args)
        if found is None:
            return super().best_track(n_tracks, excluded, *args)
        rows, a = found  # in row order: argmax's first best is the lowest row, as the full scan's
        values = reward_of(a, self._params, *args, exp_array)
        return int(rows[np.argmax(values)])

    def _search(self, excluded: np.ndarray, tol: float, like_weight: float, early_skip_penalty: float,
                early_skip_threshold: float) -> tuple[np.ndarray, np.ndarray] | None:
        """:meth:`best_track`'s search: the rows (sorted) not in ``excluded`` (sorted, unique) that may hold the
        best reward and their ``a_t``; None where the full scan is to decide.

        The block of highest bound first, then the blocks of bound above the floor the best track read gives, the
        highest first, at most as many again as read so far (at least ``_FIRST_BLOCKS``), until none is left: the
        floor only rises as more is read. Most often two or three rounds, a few thousand tracks."""
        n = self._table.shape[0]
        order, block_max = self._population.taste_index(self.listener)
        n_blocks, limit = block_max.shape[1], _WALK_UNTIL * n / _BLOCK
        if self._scratch is None:  # arrays the size of the index, written each step: allocated once a session
            self._scratch = np.empty(n_blocks), np.empty(n_blocks), np.empty(n_blocks, dtype=bool)
        bounds, term, above = self._scratch
        pi: list[float] = self._pi
        np.multiply(block_max[0], pi[0], out=bounds)
        for c in range(1, len(pi)):  # affinities_now's sum, block by block: each product, then the sum
            np.multiply(block_max[c], pi[c], out=term)
            np.add(bounds, term, out=bounds)
        seen = np.empty(0, dtype=np.int64)  # the blocks read
        found_rows: list[np.ndarray] = []
        found_a: list[np.ndarray] = []
        best, floor = -1.0, -1.0  # no floor yet: any track may hold the best reward
        blocks = np.array([np.argmax(bounds)])
        while True:
            if len(seen) + len(blocks) > limit and len(seen) + len(blocks) < n_blocks:
                return None
            at = (blocks[:, None] * _BLOCK + np.arange(_BLOCK)).ravel()
            rows = order[at[at < n]].astype(np.int64)
            rows = rows[~np.isin(rows, excluded, assume_unique=True)]
            a = self.affinities_now(rows)
            found_rows.append(rows)
            found_a.append(a)
            seen = np.concatenate([seen, blocks])
            if rows.size and a.max() > best:  # any track's floor holds: the full scan's best reward is at least its
                best = float(a.max())
                floor = max(floor, _reward_floor(best, self._params, tol, like_weight, early_skip_penalty,
                                                 early_skip_threshold))
            if len(seen) == n_blocks:
                break
            unread = np.flatnonzero(np.greater(bounds, floor, out=above)) if floor >= 0.0 else np.arange(n_blocks)
            unread = np.setdiff1d(unread, seen, assume_unique=True)
            if not unread.size:
                break
            k = max(_FIRST_BLOCKS, len(seen))  # as many again as read so far, at most
            if len(unread) > k:  # raise the floor from the highest bounds first
                blocks = unread[np.argpartition(bounds[unread], len(unread) - k)[len(unread) - k:]]
            else:
                blocks = unread
        rows, a = np.concatenate(found_rows), np.concatenate(found_a)
        keep = np.flatnonzero(a > floor)
        keep = keep[np.argsort(rows[keep])]  # row order
        return rows[keep], a[keep]

    def affinities_now(self, tracks: np.ndarray) -> np.ndarray:
        """``a_t(x)`` of many tracks in the current state, vectorised (the same state as :meth:`affinity_now`:
        mixture, boredom window, repeats; each track's own arithmetic in the same order), (n,) float64."""
        tracks = np.asarray(tracks, dtype=np.int64).ravel()
        rows = self._table[tracks]
        c = len(self._pi)
        a: np.ndarray = rows[:, 0] * self._pi[0]
        for j in range(1, c):  # the scalar path's left-to-right sum
            a = a + rows[:, j] * self._pi[j]
        if self._window:
            x0, x1, x2 = (np.ascontiguousarray(rows[:, j]) for j in (-3, -2, -1))
            best = np.full(len(tracks), math.inf)
            for y0, y1, y2 in self._window:
                d = (x0 - y0) * (x0 - y0) + (x1 - y1) * (x1 - y1) + (x2 - y2) * (x2 - y2)
                np.minimum(best, d, out=best)
            a = a * (1.0 - self._cfg.boredom * np.exp(-best * self._inv2sb2))
        if self._played:
            repeated = np.isin(tracks, np.fromiter(self._played, dtype=np.int64, count=len(self._played)))
            a = np.where(repeated, a * self._keep, a)
        return a

    def respond(self, track: int) -> tuple[float, int]:
        """Play ``track``: draw ``(pct in [0, 1], liked in {0, 1})`` from :func:`answer_probabilities` and
        advance the session state.

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
        q_early, q_full, m, q_like = answer_probabilities(a, self._params, exp_scalar)
        e = self._params.early_skip_max
        liked = 0
        if u[i] < q_early:
            pct = e * u[i + 1]
        elif u[i + 1] < q_full:
            pct = 1.0
            liked = 1 if u[i + 2] < q_like else 0
        else:
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


def _rewards_rise(p: ResponseParams, like_weight: float, early_skip_penalty: float,
                  early_skip_threshold: float) -> bool:
    """Whether :func:`reward_of` is non-decreasing in ``a`` on [0, 1] (:meth:`ParametricSession.best_track`'s
    premise). With ``e = early_skip_max``, ``q_e`` decreasing, ``q_f = phi a``, ``m`` in (0, 1) increasing:
    ``E[pct] = e/2 + (1 - q_e) (g - e/2)``, ``g = 1 - (1 - e) (1 - q_f) (1 - m)`` increasing and ``>= e``, so
    rising; ``P(liked) = (1 - q_e) phi a like_scale a^like_power`` rising; ``P(pct < h)`` falling for ``h >= 0``
    (``q_e h / e`` for ``h <= e``; ``1 - (1 - q_e) (1 - (1 - q_f) c^alpha)`` with ``c < 1`` fixed and ``alpha =
    m / (1 - m)`` rising for ``e < h <= 1``; 1 above). True for every validated listener and reward config."""
    e, _, slope, phi, m0, dm, like_scale, like_power = p
    response = (slope > 0 and 0 <= phi <= 1 and 0 < e < 1 and 0 < m0 and 0 <= dm and m0 + dm < 1
                and like_scale >= 0 and like_power >= 0)
    reward = like_weight >= 0 and early_skip_penalty >= 0 and (not early_skip_penalty or early_skip_threshold >= 0)
    finite = all(math.isfinite(v) for v in (*p, like_weight, early_skip_penalty, early_skip_threshold))
    return bool(response and reward and finite)


def _reward_floor(best: float, p: ResponseParams, tol: float, like_weight: float, early_skip_penalty: float,
                  early_skip_threshold: float) -> float:
    """The largest affinity ``f`` of the grid ``best - 2^-k`` (k = 0 .. 60) and 0 whose float reward is below the
    float reward at ``best`` by more than ``3 tol``; -1 where none is.

    With ``tol`` bounding the rounding of :func:`reward_of` at any one affinity (``|r - R| <= tol``, ``R`` the
    exact reward, non-decreasing): a track ``x`` whose float reward reaches the full scan's best, itself at
    least ``r(best)`` (the same call's bits), has ``R(a_x) >= r(a_x) - tol >= r(best) - tol > r(f) + 2 tol >=
    R(f) + tol``, so ``a_x > f`` (one ``tol`` spare).

    The rounding of ``r``: the sigmoid's argument ``(a - tau) / slope`` is rounded relatively by ~2 eps, so
    ``exp`` of it (argument < 700) by ~1400 eps, ``q_e`` by ~350 eps absolutely; ``alpha = m / (1 - m)`` by
    ~eps / (1 - m), ``c^alpha`` by ~eps / (e (1 - m)); the rest by a few eps each, scaled by like_weight and
    the penalty; sums of the mixture weights above 1 (each weight floored at 1e-12) move ``R`` by ~1e-12.
    ``tol = 1e-10 (1 + like_weight + penalty) / (1 - partial_mean_high)`` covers these many times over.
    """
    grid = np.append(best - 2.0 ** -np.arange(61.0), best)
    grid[grid < 0.0] = 0.0
    values = reward_of(grid, p, like_weight, early_skip_penalty, early_skip_threshold, exp_array)
    below = grid[:-1][values[:-1] < values[-1] - 3.0 * tol]
    return float(below.max()) if below.size else -1.0


def _z_order(values: np.ndarray) -> np.ndarray:
    """Morton (Z-order) codes of points of [0, 1]^C, (N,) uint64: each coordinate quantised to ``b = min(21,
    63 // C)`` bits and the bits interleaved (the first 63 coordinates where C > 63), so that tracks close in code
    are close in every coordinate. Eight bits at a time through a lookup table."""
    dims = min(values.shape[1], 63)
    bits = min(21, 63 // dims)
    top = np.uint64((1 << bits) - 1)
    code = np.zeros(values.shape[0], dtype=np.uint64)
    for d in range(dims):
        q = np.minimum((values[:, d] * float(1 << bits)).astype(np.uint64), top)
        for byte in range(0, bits, 8):  # bit k of q goes to bit k * dims + d
            spread = np.array([sum(((v >> j) & 1) << ((byte + j) * dims) for j in range(min(8, bits - byte)))
                               for v in range(256)], dtype=np.uint64)
            code |= spread[(q >> np.uint64(byte)) & np.uint64(255)] << np.uint64(d)
    return code


def _session_constants(cfg: ListenerConfig) -> tuple[ResponseParams, float, float, float]:
    """What a session step reads of the config: the response parameters, ``1 / (2 boredom_width^2)``, the
    repeat factor and the drift step's half-range factor."""
    drift = cfg.drift * math.sqrt(12.0) if cfg.n_taste_centres > 1 else 0.0  # U(-d/2, d/2) has std drift
    return ResponseParams.of(cfg), 1.0 / (2.0 * cfg.boredom_width**2), 1.0 - cfg.repeat_penalty, drift


def _as_list(tracks: np.ndarray | list[int]) -> list[int]:
    """Track indices as a list of Python ints."""
    return tracks.tolist() if isinstance(tracks, np.ndarray) else [int(t) for t in tracks]
