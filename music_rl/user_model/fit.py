"""Fitting a learnt listener's net on logged sessions, with early stopping on held-out sessions.

Each logged answer becomes one step of its session: the inputs of :mod:`music_rl.user_model.features` (the
session replayed, the listener's taste at the track), its answer class and whether the session ended after it.
The loss is the answer class's cross-entropy plus the end's (given the answer's class); batches of whole sessions
(padded), Adam, the best epoch on the stopping sessions kept. Seeded and, on CPU, deterministic: the initial
weights and the batch order come from ``seed`` alone.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from envs.listeners import LearntConfig, LearntKind
from music_rl.user_model.answers import N_CLASSES, answer_class
from music_rl.user_model.features import TasteBasis, answer_inputs, replay_features, taste_features, user_summaries
from music_rl.user_model.nets import AnswerNet
from music_rl.user_model.sessions import LogSessions

log = logging.getLogger(__name__)


@dataclass
class Steps:
    """Every logged answer of some sessions as a step: net inputs (A, F), GRU inputs (A, G), answer classes
    (A,), session ends (A,), and where each session starts (S + 1,)."""

    inputs: torch.Tensor
    answers: torch.Tensor
    classes: torch.Tensor
    ended: torch.Tensor
    starts: np.ndarray

    @classmethod
    def of(cls, sessions: LogSessions, latents: np.ndarray, features: np.ndarray, basis: TasteBasis) -> Steps:
        """The steps of ``sessions`` over the catalog's ``latents``, ``features`` and taste ``basis``."""
        track = np.hstack([latents, features]).astype(np.float64)[sessions.tracks]
        lengths = np.diff(sessions.starts)
        users = np.repeat(user_summaries(sessions, latents, features, basis), lengths, axis=0)
        inputs = np.hstack([track, replay_features(sessions, latents),
                            taste_features(users, basis.weights[sessions.tracks]), users])
        ended = np.zeros(len(sessions.tracks))
        ended[sessions.starts[1:] - 1] = 1.0
        return cls(torch.as_tensor(inputs, dtype=torch.float32),
                   torch.as_tensor(np.hstack([track, answer_inputs(sessions.pct, sessions.liked)]),
                                   dtype=torch.float32),
                   torch.as_tensor(answer_class(sessions.pct, sessions.liked)),
                   torch.as_tensor(ended, dtype=torch.float32), sessions.starts)

    def batch(self, sessions: np.ndarray) -> tuple[torch.Tensor, ...]:
        """Padded (B, L, ...) inputs, GRU inputs, classes, ends and the mask of real steps of ``sessions``."""
        lo, hi = self.starts[sessions], self.starts[sessions + 1]
        width = int((hi - lo).max())
        index = lo[:, None] + np.arange(width)[None, :]
        mask = index < hi[:, None]
        index = torch.as_tensor(np.where(mask, index, 0))
        return (self.inputs[index], self.answers[index], self.classes[index], self.ended[index],
                torch.as_tensor(mask))


def _loss(net: AnswerNet, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean answer + end loss over the batch's real steps, and their answer log-likelihood's sum."""
    inputs, answers, classes, ended, mask = batch
    logits = net(inputs, answers)[mask]
    classes, ended = classes[mask], ended[mask]
    answer_ll = -F.cross_entropy(logits[:, :N_CLASSES], classes, reduction="none")
    end_logit = logits[:, N_CLASSES:].gather(1, classes[:, None])[:, 0]
    end_loss = F.binary_cross_entropy_with_logits(end_logit, ended, reduction="none")
    return (end_loss - answer_ll).mean(), answer_ll.sum()


@dataclass
class FitResult:
    """The fitted net and how the fitting went."""

    net: AnswerNet
    epochs: int
    best_epoch: int
    stop_log_likelihood: float
    curve: list[float]


def fit_net(fit: Steps, stop: Steps, n_track: int, n_user: int, cfg: LearntConfig, seed: int) -> FitResult:
    """Fit an :class:`AnswerNet` of ``cfg.kind`` on ``fit``, stopping when ``stop``'s loss has not improved for
    ``cfg.early_stopping`` epochs; the best epoch's weights are kept."""
    memory = cfg.memory if cfg.kind == LearntKind.sequential else 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = AnswerNet(n_track, n_user, cfg.hidden, memory)
    optimiser = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    order = np.random.default_rng(seed)
    n_fit, n_stop = len(fit.starts) - 1, len(stop.starts) - 1
    stop_batches = [stop.batch(np.arange(i, min(i + 256, n_stop))) for i in range(0, n_stop, 256)]
    n_stop_answers = int(stop.starts[-1])
    best, best_epoch, best_state, curve, epoch = math.inf, 0, None, [], 0
    for epoch in range(1, cfg.max_epochs + 1):
        net.train()
        perm = order.permutation(n_fit)
        for i in range(0, n_fit, cfg.batch_size):
            loss, _ = _loss(net, fit.batch(perm[i:i + cfg.batch_size]))
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]  # torch declares Tensor.backward without annotations
            optimiser.step()
        net.eval()
        with torch.no_grad():
            parts = [_loss(net, batch) for batch in stop_batches]
        stop_loss = sum(float(p[0]) * int(b[4].sum()) for p, b in zip(parts, stop_batches, strict=True))
        stop_ll = sum(float(p[1]) for p in parts) / n_stop_answers
        curve.append(round(stop_ll, 6))
        if stop_loss < best - 1e-9:
            best, best_epoch = stop_loss, epoch
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
        elif epoch - best_epoch >= cfg.early_stopping:
            break
    assert best_state is not None  # the first epoch always improves on inf
    net.load_state_dict(best_state)
    log.info("learnt listener (%s): %d epochs, best %d (held-out log-likelihood %.4f per answer)", cfg.kind, epoch,
             best_epoch, curve[best_epoch - 1])
    return FitResult(net, epoch, best_epoch, curve[best_epoch - 1], curve)
