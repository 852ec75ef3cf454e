"""MusicRec-v0's observation: its layout, written once, read by the env (which writes it) and by the policies.

An observation is a flat float32 ``Box``, so any SB3 policy (and SAC, TD3, the off-policy estimates and
inference, which stack observations) can read it; its parts lie at fixed offsets, named here:

- ``seed``: ``z`` (d,), the current track's latent;
- ``candidates``: ``z``, ``z_cands`` (k, d), ``x`` (F,), ``x_cands`` (k, F): ``[z_current, z_cand_1 ..
  z_cand_k, x_current, x_cand_1 .. x_cand_k]`` ((1 + k) * (d + F),), where ``x`` are a track's F = 11
  normalised features when ``env.candidate_features`` (the default), F = 0 (no ``x`` parts) otherwise;
- ``history``: the candidates layout, then ``hist`` (H, d + 1): ``env.history`` rows of ``[z_played, scaled
  reward]``, most recent first, zero padded;
- ``listener`` (the ``new_listener`` setting, :mod:`envs.listener_log`): the candidates layout, then
  ``estimate`` (5, 1 + k): what the listener's own log says about the current track and each candidate, rows
  ``r_hat`` (times the reward scale), ``evidence`` (in [0, 1): the answers in the track's cluster), ``r_fit``
  (the answers' ridge fit on the tracks' features, times the reward scale, clipped to the reward's range),
  ``pop`` (the expected answer ``pct + 0.5 liked`` under the population prior, in [0, 1.5]) and ``pop_sd`` (its
  standard deviation, clipped to [0, 1]), in :data:`envs.listener_log.ESTIMATES` order (``pop`` and ``pop_sd``
  take the session's answers too, after every step); then ``hist`` (H, d + F + 3): rows of ``[z_played, x_played, pct,
  liked, 1]`` (the in-session answers, most recent first, zero padded: the last 1 marks a row as filled).

Every value is in [0, 1] but the reward-valued ones (the history's reward column, ``r_hat`` and ``r_fit``) and
``pop``:
:meth:`ObservationLayout.space`. :meth:`ObservationLayout.views` cuts a buffer (numpy: the env writes through
the views; torch: :mod:`music_rl.learners.policies` reads them) into its parts; :meth:`ObservationLayout.rows`
cuts a history row.

Why the candidates' features: the k candidates are the nearest tracks in latent space, so their latents
nearly coincide; what tells them apart is mostly what the d-dimensional latent does not encode. Measured on
the default world, a regressor of the listener's expected reward on the latent recovers about 0.3 of the
oracle's edge among the candidates, on the features about 0.99 (retrieval by latent, ranking by features:
the usual two-stage recommender). The current track's features come along because the listener's boredom is
a similarity in feature space to what was just played.

Why not a ``spaces.Dict`` of these parts (measured for issue 24 with PPO's default config): the same parts as a
Dict (SB3's DictRolloutBuffer, the scorer reading them by name through a pass-through features extractor)
learn bit-identical weights, at 0.944 times the Box's steps per CPU second (median of 13 repeats, chunk by
chunk in ABBA order as ``music-rl bench`` row a), outside the 5% allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from gymnasium import spaces

from envs.listener_log import ESTIMATES, TABLE_ESTIMATES, Estimator, ListenerEstimate, random_answers
from envs.population_prior import Posterior

if TYPE_CHECKING:
    from envs.candidates import CandidateIndex
    from envs.listeners import Population


class Observation(StrEnum):
    """What the agent observes (the layouts of the module docstring)."""

    seed = "seed"
    candidates = "candidates"
    history = "history"
    listener = "listener"


OBSERVATIONS: tuple[str, ...] = tuple(Observation)
ANSWER_WIDTH = 3  # a listener history row's pct, liked and filled flag
POP_HIGH = 1.5  # the observed pop is clipped to [0, POP_HIGH]: the answer pct + 0.5 liked lies in [0, 1.5]


class ObservationViews(NamedTuple):
    """Views into an observation buffer (..., width) by part; None where the mode has no such part."""

    z: Any  # (..., d) the current track's latent
    z_cands: Any  # (..., k, d) the candidates' latents
    x: Any  # (..., F) the current track's features
    x_cands: Any  # (..., k, F) the candidates' features
    hist: Any  # (..., H, row width) the history rows (:meth:`ObservationLayout.rows`), most recent first
    estimate: Any = None  # listener: (..., 5, 1 + k) ESTIMATES of the current track, the candidates


class RowViews(NamedTuple):
    """Views into history rows (..., row width) by column; None where the mode's rows have no such column."""

    z: Any  # (..., d) the played track's latent
    x: Any  # (..., F) its features (listener rows with features)
    answer: Any  # (..., 1) the scaled reward (history) | (..., 2) pct, liked (listener)
    filled: Any  # (..., 1) listener: 1 for a filled row


@dataclass(frozen=True)
class ObservationLayout:
    """The parts of one observation mode's flat vector, by name (the module docstring); :meth:`of` builds it."""

    mode: Observation
    d: int  # a latent's width
    k: int  # candidates
    n_feat: int  # features per track (0: none)
    history: int  # history rows (0: none)

    @classmethod
    def of(cls, mode: str, d: int, k: int, n_feat: int, history: int) -> ObservationLayout:
        """The layout of ``mode`` (``n_feat`` and ``history`` are ignored where the mode has no such part)."""
        mode = Observation(mode)
        return cls(mode, d, k, 0 if mode == Observation.seed else n_feat,
                   history if mode in (Observation.history, Observation.listener) else 0)

    @property
    def row_width(self) -> int:
        """Values per history row: d + 1 (history), d + F + 3 (listener), 0 (no history rows)."""
        if not self.history:
            return 0
        return self.d + (self.n_feat + ANSWER_WIDTH if self.mode == Observation.listener else 1)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Each part's shape, in the order of the flat vector (the parts of :class:`ObservationViews`)."""
        d, k, f = self.d, self.k, self.n_feat
        if self.mode == Observation.seed:
            return {"z": (d,)}
        parts = {"z": (d,), "z_cands": (k, d)}
        if f:
            parts |= {"x": (f,), "x_cands": (k, f)}
        if self.mode == Observation.listener:
            parts["estimate"] = (len(ESTIMATES), 1 + k)
        if self.history:
            parts["hist"] = (self.history, self.row_width)
        return parts

    @property
    def width(self) -> int:
        """Values in the flat vector."""
        return sum(int(np.prod(shape)) for shape in self.shapes().values())

    def views(self, obs: Any) -> ObservationViews:
        """Views of ``obs`` (..., width) by part, a numpy array (writing into them writes the observation: it must
        be C-contiguous) or a torch tensor."""
        lead, start, views = obs.shape[:-1], 0, {}
        for name, shape in self.shapes().items():
            size = int(np.prod(shape))
            views[name] = obs[..., start:start + size].reshape(*lead, *shape)
            start += size
        if isinstance(obs, np.ndarray) and not all(np.shares_memory(v, obs) for v in views.values()):
            raise ValueError("an observation buffer must be C-contiguous: its parts are written through views")
        return ObservationViews(**{name: views.get(name) for name in ObservationViews._fields})

    def rows(self, hist: Any) -> RowViews:
        """Views of history rows ``hist`` (..., row width) by column (numpy or torch)."""
        d = self.d
        if self.mode != Observation.listener:
            return RowViews(hist[..., :d], None, hist[..., d:], None)
        f = self.n_feat
        return RowViews(hist[..., :d], hist[..., d:d + f] if f else None, hist[..., d + f:-1], hist[..., -1:])

    def space(self, reward_low: float, reward_high: float) -> spaces.Box:
        """The observation space: [0, 1] but the reward-valued parts (the history's reward column, ``r_hat`` and
        ``r_fit``), in ``[min(0, reward_low), max(1, reward_high)]`` (scaled rewards), and ``pop``, in
        ``[0, POP_HIGH]``."""
        low = np.zeros(self.width, dtype=np.float32)
        high = np.ones(self.width, dtype=np.float32)
        for bounds, value in ((low, min(0.0, reward_low)), (high, max(1.0, reward_high))):
            views = self.views(bounds)
            if views.estimate is not None:
                views.estimate[[ESTIMATES.index("r_hat"), ESTIMATES.index("r_fit")]] = value
            elif views.hist is not None:
                self.rows(views.hist).answer[:] = value
        views = self.views(high)
        if views.estimate is not None:
            views.estimate[ESTIMATES.index("pop")] = POP_HIGH
        return spaces.Box(low, high, dtype=np.float32)

    def estimate_bounds(self, space: spaces.Box, row: str) -> tuple[float, float]:
        """The bounds of the ``estimate`` row ``row`` (one of :data:`ESTIMATES`) in ``space`` (:meth:`space`)."""
        low, high = (float(self.views(bound).estimate[ESTIMATES.index(row), 0]) for bound in (space.low, space.high))
        return low, high


class LogEstimates:
    """The ``listener`` observation's ``estimate`` part: what the session listener's log says about every track,
    from a log fixed by evaluation and serving (:attr:`fixed`) or drawn at each session's start (training: ``B``
    answers to uniformly random choices, ``B`` log-uniform in ``0 .. log_answers``); ``pop`` and ``pop_sd`` also
    take the session's answers (:meth:`answer`)."""

    def __init__(self, estimator: Estimator, n_tracks: int, log_answers: int, reward_scale: float,
                 fit_bounds: tuple[float, float]) -> None:
        self.fixed: ListenerEstimate | None = None
        self._estimator, self._log_answers, self._scale = estimator, log_answers, reward_scale
        self._clip = fit_bounds  # a linear fit extrapolates: r_fit clipped to its bounds in the observation space
        self._table = np.zeros((len(TABLE_ESTIMATES), n_tracks), dtype=np.float32)  # TABLE_ESTIMATES per track
        self._basis = estimator.basis
        self._posterior: Posterior = estimator.prior.posterior(self._basis[:0], np.zeros(0))

    def start(self, population: Population, listener: int, index: CandidateIndex, session_length: int, k: int,
              rng: np.random.Generator) -> ListenerEstimate:
        """A session of ``listener`` starts: its estimate (:attr:`fixed`, or from a log drawn now), observed next."""
        estimate = self.fixed
        if estimate is None:
            top = self._log_answers
            b = int(np.exp(rng.random() * np.log1p(top))) - 1 if top else 0  # log-uniform in 0..top
            estimate = self._estimator(random_answers(population, listener, index, min(b, top), session_length,
                                                      rng, k))
        r_hat, evidence, r_fit = estimate.rows()
        self._table[0] = r_hat * self._scale
        self._table[1] = evidence
        np.clip(r_fit * self._scale, *self._clip, out=self._table[2])
        self._posterior = estimate.pop.copy()
        return estimate

    def answer(self, track: int, pct: float, liked: int) -> None:
        """The session's listener answered ``track``: ``pop`` takes it."""
        self._posterior.take(self._basis[track], pct, liked)

    def observe(self, tracks: np.ndarray, out: np.ndarray) -> None:
        """Write the estimates of ``tracks`` (the current track, then the candidates) into ``out`` (5, 1 + k)."""
        n_table = len(TABLE_ESTIMATES)
        self._table.take(tracks, axis=1, out=out[:n_table], mode="wrap")
        mean, sd = self._posterior.at(self._basis[tracks])
        np.clip(mean, 0.0, POP_HIGH, out=out[n_table])
        np.clip(sd, 0.0, 1.0, out=out[n_table + 1])
