"""The learnt listener's two nets (torch, for fitting) and their numpy twin (for simulating).

Both kinds end in the same head: two hidden ReLU layers from the step's inputs to ``2 * N_CLASSES`` logits, the
answer class's (:mod:`music_rl.user_model.answers`) and, per answer class, P(the session ends after an answer
of that class). The step's inputs are ``[z, x]`` of the track, its session and taste features, the listener summary
(:mod:`music_rl.user_model.features`) and, for the ``sequential`` kind, the GRU's state after the session's
answers so far (zeros before the first); the ``independent`` kind has no GRU.

:class:`NumpyNet` runs a fitted net's weights in numpy, one session step at a time: torch's per-call overhead
on a batch of one would dominate a simulated step. The first layer's track part and the GRU input's track part
are tabled once per catalog, so a step costs a few small matrix products.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from music_rl.user_model.answers import N_CLASSES
from music_rl.user_model.features import N_ANSWER, N_CONTEXT


class AnswerNet(nn.Module):
    """Logits of the answer class and of the session's end, (B, L, 2 * N_CLASSES), from each step's inputs.

    Args:
        n_track: width of a track's ``[z, x]``; n_user: width of the listener summary.
        hidden: width of the head's hidden layers; memory: the GRU's width (0: the independent kind).
    """

    def __init__(self, n_track: int, n_user: int, hidden: int, memory: int) -> None:
        super().__init__()
        self.memory = memory
        self.gru = nn.GRU(n_track + N_ANSWER, memory, batch_first=True) if memory else None
        self.head = nn.Sequential(nn.Linear(n_track + N_CONTEXT + n_user + memory, hidden), nn.ReLU(),
                                  nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2 * N_CLASSES))

    def forward(self, inputs: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
        """``inputs`` (B, L, n_track + N_CONTEXT + n_user), ``answers`` (B, L, n_track + N_ANSWER): the GRU input
        of each step's answer (read by the next step)."""
        if self.gru is not None:
            states, _ = self.gru(answers)
            before = torch.cat([states.new_zeros(states.shape[0], 1, self.memory), states[:, :-1]], dim=1)
            inputs = torch.cat([inputs, before], dim=2)
        out: torch.Tensor = self.head(inputs)  # a Module's call: Any
        return out


class NumpyNet:
    """A fitted :class:`AnswerNet` in numpy over one catalog.

    Args:
        weights: the net's state dict as float64 arrays (``head.0.weight`` ..., ``gru.*`` for the sequential kind).
        track_inputs: (N, n_track) ``[z, x]`` of every track.
    """

    def __init__(self, weights: dict[str, np.ndarray], track_inputs: np.ndarray) -> None:
        w1, b1 = weights["head.0.weight"], weights["head.0.bias"]
        t = track_inputs.shape[1]
        self.track_first = track_inputs @ w1[:, :t].T + b1  # (N, H): the first layer's track part
        self.w_context = w1[:, t:t + N_CONTEXT].T.copy()  # session, then taste features
        self.w_rest = w1[:, t + N_CONTEXT:].T.copy()  # listener summary, then the GRU state
        self.w2, self.b2 = weights["head.2.weight"].T.copy(), weights["head.2.bias"]
        self.w3, self.b3 = weights["head.4.weight"].T.copy(), weights["head.4.bias"]
        self.memory = weights["gru.weight_hh_l0"].shape[1] if "gru.weight_hh_l0" in weights else 0
        if self.memory:
            w_ih = weights["gru.weight_ih_l0"]
            self.gru_track = track_inputs @ w_ih[:, :t].T + weights["gru.bias_ih_l0"]  # (N, 3M)
            self.gru_answer = w_ih[:, t:].T.copy()
            self.w_hh, self.b_hh = weights["gru.weight_hh_l0"].T.copy(), weights["gru.bias_hh_l0"]

    def rest(self, user: np.ndarray, memory: np.ndarray) -> np.ndarray:
        """The first layer's part from the listener summary and the GRU state (constant within a step), (H,)."""
        rest: np.ndarray = np.concatenate([user, memory]) @ self.w_rest  # matmul's stubs: Any
        return rest

    def logits(self, tracks: np.ndarray, context: np.ndarray, rest: np.ndarray) -> np.ndarray:
        """Answer-class and end logits of each track, (k, 2 * N_CLASSES), given its session and taste features
        (k, N_CONTEXT) and :meth:`rest`."""
        a = self.track_first[tracks] + context @ self.w_context + rest
        np.maximum(a, 0.0, out=a)
        a = a @ self.w2 + self.b2
        np.maximum(a, 0.0, out=a)
        logits: np.ndarray = a @ self.w3 + self.b3  # matmul's stubs: Any
        return logits

    def step(self, memory: np.ndarray, track: int, answer: np.ndarray) -> np.ndarray:
        """The GRU state after the answer ``answer`` (N_ANSWER,) to ``track`` (torch's GRU cell: gates r, z, n)."""
        m = self.memory
        gi = self.gru_track[track] + answer @ self.gru_answer
        gh = memory @ self.w_hh + self.b_hh
        r = 1.0 / (1.0 + np.exp(-(gi[:m] + gh[:m])))
        z = 1.0 / (1.0 + np.exp(-(gi[m:2 * m] + gh[m:2 * m])))
        n = np.tanh(gi[2 * m:] + r * gh[2 * m:])
        state: np.ndarray = (1.0 - z) * n + z * memory  # matmul's stubs (gi, gh): Any
        return state


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (k, K) logits."""
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs: np.ndarray = e / e.sum(axis=-1, keepdims=True)  # sum(axis=)'s stubs: Any
    return probs
