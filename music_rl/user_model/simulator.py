"""The learnt listener as a simulator: :class:`LearntListener` (the fitted model over one catalog, what
``listener/model.pt`` holds), its :class:`LearntPopulation` and :class:`LearntSession`, the implementations of
:class:`envs.listeners.Population` and :class:`envs.listeners.Session` for ``listeners.model=learnt``.

**A new simulated listener** is a listener summary drawn (with the population's generator) from those of the
log's fitting listeners (:func:`music_rl.user_model.features.listener_table`); a log without user ids (the
MSSD's) has one summary, the population average, and each session adapts to its own answers alone (its session
features, and the sequential kind's GRU state).

**An answer** to a track: the net's answer-class probabilities in the session's current state; the class drawn,
the share heard drawn within it (:class:`music_rl.user_model.answers.ShareTable`), liked as the class says; the
session ends after it with the net's probability for that class (``left``). :meth:`LearntSession.expected` and
:meth:`LearntSession.expected_reward` are the exact expectations of that draw (the class probabilities times
each class's mean share, like and share below the threshold). The nets run in numpy
(:class:`music_rl.user_model.nets.NumpyNet`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from envs.listeners import ListenerConfig, Population, Session
from music_rl.user_model.answers import N_CLASSES, ShareTable
from music_rl.user_model.features import SessionState, TasteBasis, answer_inputs, taste_features, taste_readout
from music_rl.user_model.nets import AnswerNet, NumpyNet, softmax

FORMAT_VERSION = 2  # 2: taste profiles (anchors)


def catalog_fingerprint(track_ids: Sequence[str], features: np.ndarray, latents: np.ndarray) -> str:
    """A short hash of the catalog (track ids, normalised features) and its latents: a listener model is
    simulated only over the catalog it was fitted on."""
    digest = hashlib.sha256("\n".join(map(str, track_ids)).encode())
    digest.update(np.ascontiguousarray(features, dtype=np.float32).tobytes())
    digest.update(np.ascontiguousarray(latents, dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


@dataclass
class LearntListener:
    """A fitted listener model over one catalog (a :class:`envs.listeners.FittedListener`).

    Attributes:
        kind: ``sequential`` or ``independent``.
        weights: the net's state dict, float64 arrays.
        shares: the share heard within each percentage class.
        listeners: (U, user_width) the fitting listeners' summaries (new listeners are drawn from these).
        latents, features: the catalog's (N, d) latents and (N, 11) features the model reads.
        anchors, edges: the anchors and feature bin edges of the listeners' taste profiles (:class:`TasteBasis`).
        fingerprint: :func:`catalog_fingerprint` of the catalog it was fitted on.
        fit: how the fitting went (plain values, saved with it).
    """

    kind: str
    weights: dict[str, np.ndarray]
    shares: ShareTable
    listeners: np.ndarray
    latents: np.ndarray
    features: np.ndarray
    anchors: np.ndarray
    edges: np.ndarray
    fingerprint: str
    fit: dict[str, Any] = field(default_factory=dict)
    _net: NumpyNet | None = field(default=None, init=False, repr=False)
    _basis: TasteBasis | None = field(default=None, init=False, repr=False)

    @classmethod
    def of(cls, kind: str, net: AnswerNet, shares: ShareTable, listeners: np.ndarray, latents: np.ndarray,
           features: np.ndarray, basis: TasteBasis, fingerprint: str, fit: dict[str, Any]) -> LearntListener:
        """The model of a fitted torch net."""
        weights = {k: v.detach().double().numpy().copy() for k, v in net.state_dict().items()}
        model = cls(str(kind), weights, shares, listeners, latents, features, basis.anchors, basis.edges,
                    fingerprint, fit)
        model._basis = basis
        return model

    def basis(self) -> TasteBasis:
        """The taste basis over this catalog (built once)."""
        if self._basis is None:
            self._basis = TasteBasis.of(self.latents, self.features, self.anchors, self.edges)
        return self._basis

    def net(self) -> NumpyNet:
        """The net in numpy over this catalog (built once)."""
        if self._net is None:
            track = np.hstack([self.latents, self.features]).astype(np.float64)
            self._net = NumpyNet(self.weights, track)
        return self._net

    def torch_net(self) -> AnswerNet:
        """The net as a torch module (for batched predictions)."""
        memory = self.weights["gru.weight_hh_l0"].shape[1] if "gru.weight_hh_l0" in self.weights else 0
        hidden = self.weights["head.0.weight"].shape[0]
        net = AnswerNet(self.latents.shape[1] + self.features.shape[1], self.listeners.shape[1], hidden, memory)
        net.load_state_dict({k: torch.as_tensor(v, dtype=torch.float32) for k, v in self.weights.items()})
        return net.eval()

    def population(self, X: np.ndarray, cfg: ListenerConfig, rng: np.random.Generator,
                   n: int | None = None) -> LearntPopulation:
        """``n`` (None: ``cfg.population``) simulated listeners, each a listener summary drawn from
        :attr:`listeners` with ``rng``."""
        n = cfg.population if n is None else int(n)
        if np.asarray(X).shape != self.features.shape:
            raise ValueError(f"catalog features {np.shape(X)}, the model was fitted on {self.features.shape}")
        drawn = self.listeners[rng.integers(len(self.listeners), size=n)]
        return LearntPopulation(self, drawn)

    def checkpoint(self) -> dict[str, Any]:
        """Tensors and plain Python only (loadable with ``torch.load(..., weights_only=True)``)."""
        return {"format_version": FORMAT_VERSION, "kind": self.kind,
                "weights": {k: torch.as_tensor(v) for k, v in self.weights.items()},
                "share_quantiles": torch.as_tensor(self.shares.quantiles),
                "listeners": torch.as_tensor(self.listeners), "anchors": torch.as_tensor(self.anchors),
                "bin_edges": torch.as_tensor(self.edges),
                "fingerprint": self.fingerprint,
                "n_tracks": int(self.features.shape[0]), "latent_dim": int(self.latents.shape[1]), "fit": self.fit}

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any], latents: np.ndarray, features: np.ndarray,
                        fingerprint: str) -> LearntListener:
        """The model of :meth:`checkpoint` over the catalog it was fitted on.

        Raises:
            ValueError: a one-line reason: another format, missing entries, or another catalog (``fingerprint``
                differs).
        """
        if not isinstance(ckpt, dict) or ckpt.get("format_version") != FORMAT_VERSION:
            version = ckpt.get("format_version") if isinstance(ckpt, dict) else None
            raise ValueError(f"format_version={version!r}, this code reads {FORMAT_VERSION}")
        missing = [k for k in ("kind", "weights", "share_quantiles", "listeners", "anchors", "bin_edges",
                                 "fingerprint")
                   if k not in ckpt]
        if missing:
            raise ValueError(f"missing entries {', '.join(missing)}")
        if ckpt["fingerprint"] != fingerprint:
            raise ValueError(f"fitted on another catalog (fingerprint {ckpt['fingerprint']}, {ckpt.get('n_tracks')} "
                             f"tracks; this run's catalog and latents are {fingerprint}, {features.shape[0]} tracks)")
        weights = {k: v.double().numpy() for k, v in ckpt["weights"].items()}
        return cls(str(ckpt["kind"]), weights, ShareTable(ckpt["share_quantiles"].double().numpy()),
                   ckpt["listeners"].double().numpy(), latents, features, ckpt["anchors"].double().numpy(),
                   ckpt["bin_edges"].double().numpy(), str(ckpt["fingerprint"]), dict(ckpt.get("fit", {})))


class LearntPopulation(Population):
    """Simulated listeners of a :class:`LearntListener`: listener ``i`` is the listener summary ``users[i]``."""

    def __init__(self, model: LearntListener, users: np.ndarray) -> None:
        self.model = model
        self.users = users
        self.n = int(users.shape[0])
        self.net = model.net()
        self.shares = model.shares
        self._moments: dict[float, tuple[np.ndarray, ...]] = {}
        self._zero_memory = np.zeros(self.net.memory)

    def class_moments(self, threshold: float) -> tuple[np.ndarray, ...]:
        """Per answer class: E[pct], liked, P(pct < threshold) (cached per threshold)."""
        if threshold not in self._moments:
            self._moments[threshold] = self.shares.class_moments(threshold)
        return self._moments[threshold]

    def session(self, listener: int, rng: np.random.Generator) -> LearntSession:
        """A fresh session of ``listener`` whose answers are drawn from ``rng``."""
        i = int(listener)
        if not 0 <= i < self.n:
            raise ValueError(f"listener {listener!r} outside 0..{self.n - 1}")
        return LearntSession(self, i, rng)

    def expected_reward_all(self, listener: int, like_weight: float, early_skip_penalty: float = 0.0,
                            early_skip_threshold: float = 0.1) -> np.ndarray:
        """Exact expected reward of every track in a fresh session of ``listener``, (N,) float64."""
        tracks = np.arange(self.net.track_first.shape[0])
        user = self.users[int(listener)]
        session = SessionState(self.model.latents).features(tracks[:1])  # a fresh state: the same for every track
        context = np.hstack([np.repeat(session, len(tracks), axis=0),
                             taste_features(user, self.model.basis().weights)])
        probs = softmax(self.net.logits(tracks, context, self.net.rest(user, self._zero_memory))[:, :N_CLASSES])
        return reward_of(probs, self.class_moments(early_skip_threshold), like_weight, early_skip_penalty)


def reward_of(probs: np.ndarray, moments: tuple[np.ndarray, ...], like_weight: float,
              early_skip_penalty: float) -> np.ndarray:
    """``E[pct] + like_weight P(liked) - early_skip_penalty P(pct < threshold)`` of class probabilities (k, K)."""
    e_pct, liked, low = moments
    return probs @ (e_pct + like_weight * liked - early_skip_penalty * low)


class LearntSession(Session):
    """One session of a learnt listener (see the module docstring)."""

    def __init__(self, population: LearntPopulation, listener: int, rng: np.random.Generator) -> None:
        self.listener = listener
        self.left = False
        self._population = population
        self._net = population.net
        self._user = population.users[listener]
        self._rng = rng
        self._state = SessionState(population.model.latents)
        self._memory = population._zero_memory
        self._rest = self._net.rest(self._user, self._memory)
        self._readout = taste_readout(self._user)  # (N_BASIS, N_TASTE)
        self._weights = population.model.basis().weights

    def fork(self, rng: np.random.Generator) -> LearntSession:
        """A copy in the current state whose answers from now on are drawn from ``rng``."""
        twin = LearntSession.__new__(LearntSession)
        twin.__dict__.update(self.__dict__)
        twin._rng, twin._state = rng, self._state.copy()
        return twin

    def logits(self, tracks: np.ndarray) -> np.ndarray:
        """Answer-class and end logits of each track in the current state, (k, 2 * N_CLASSES)."""
        tracks = np.asarray(tracks, dtype=np.int64).reshape(-1)
        context = np.hstack([self._state.features(tracks), self._weights[tracks] @ self._readout])
        return self._net.logits(tracks, context, self._rest)

    def expected(self, tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact ``E[pct]`` and ``P(liked)`` of each track in the current state."""
        probs = softmax(self.logits(tracks)[:, :N_CLASSES])
        e_pct, liked, _ = self._population.class_moments(0.1)
        return probs @ e_pct, probs @ liked

    def expected_reward(self, tracks: np.ndarray, like_weight: float, early_skip_penalty: float = 0.0,
                        early_skip_threshold: float = 0.1) -> np.ndarray:
        """Exact expected reward of each track in the current state, (k,) float64."""
        probs = softmax(self.logits(tracks)[:, :N_CLASSES])
        return reward_of(probs, self._population.class_moments(early_skip_threshold), like_weight,
                         early_skip_penalty)

    def respond(self, track: int) -> tuple[float, int]:
        """Draw an answer to ``track`` and advance the session (which may end it: ``left``).

        Raises:
            RuntimeError: the listener has already left the session.
        """
        if self.left:
            raise RuntimeError(f"listener {self.listener} left the session after {self._state.n} tracks")
        track = int(track)
        logits = self.logits(np.array([track]))[0]
        probs = softmax(logits[:N_CLASSES])
        u = self._rng.random(3)
        c = min(int(np.searchsorted(np.cumsum(probs), u[0] * probs.sum(), side="right")), N_CLASSES - 1)
        pct = self._population.shares.draw(c // 2, float(u[1]))
        liked = c % 2
        self.left = bool(u[2] * (1.0 + np.exp(-logits[N_CLASSES + c])) < 1.0)  # u < sigmoid(end logit)
        self._state.advance(track, pct, liked)
        if self._net.memory:
            self._memory = self._net.step(self._memory, track, answer_inputs([pct], [liked])[0])
            self._rest = self._net.rest(self._user, self._memory)
        return pct, liked
