"""How well a listener model predicts held-out logged sessions (``listener/fidelity.json``).

Every model is a *predictor*: given a session and ``given`` (the answers it may see), the probabilities of the
answer classes (:mod:`music_rl.user_model.answers`) at every position, (L, N_CLASSES); an answer at a position
``>= given`` is not seen (a sequential predictor rolls its own most probable answer forward instead).

- ``log_likelihood``: the mean over held-out answers of log P(the answer's class), each answer seeing every
  answer before it in its session;
- ``skip_accuracy``: the MSSD challenge's mean average accuracy: each session's first half seen (``L // 2``
  answers), skip (``pct < 0.5``, its ``skip_2``) predicted for each answer of the second half (P(skip) > 0.5);
  per session ``mean_i A(i) L(i)`` (``A(i)`` the accuracy over the first ``i`` predictions, ``L(i)`` whether the
  i-th is right), averaged over sessions of two answers or more (None without any).

The models: ``learnt`` (:func:`learnt_predictor`), ``rates`` (the fitting sessions' answer-class rates),
``previous`` (the session's previous answer repeated: its class with probability ``1 - a``, the rates with
``a``, ``a`` fitted on the fitting sessions; the rates for a first answer) and, when the caller passes one,
``reference`` (the model that generated the log: :func:`measure`'s ``reference``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from music_rl.user_model.answers import N_CLASSES, SKIP_CLASSES, answer_class
from music_rl.user_model.features import SessionState, answer_inputs, taste_features, user_summaries
from music_rl.user_model.nets import softmax
from music_rl.user_model.sessions import LogSessions
from music_rl.user_model.simulator import LearntListener

Predictor = Callable[[LogSessions, int, int], np.ndarray]
"""``(sessions, s, given) -> (L, N_CLASSES)`` class probabilities of session ``s``'s answers, those at
positions ``>= given`` not seen."""
_FLOOR = 1e-12  # probabilities are floored here before the log
_PREVIOUS_WEIGHTS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.45)  # below 1/2: the previous answer leads


def class_rates(sessions: LogSessions) -> np.ndarray:
    """The answer-class rates of ``sessions`` (+0.5 per class), (N_CLASSES,)."""
    counts = np.bincount(answer_class(sessions.pct, sessions.liked), minlength=N_CLASSES) + 0.5
    rates: np.ndarray = counts / counts.sum()  # sum()'s stubs: Any
    return rates


def rates_predictor(rates: np.ndarray) -> Predictor:
    """The same class rates at every position."""
    def predict(sessions: LogSessions, s: int, given: int) -> np.ndarray:
        return np.tile(rates, (len(sessions.session(s)[0]), 1))
    return predict


def previous_predictor(rates: np.ndarray, weight: float) -> Predictor:
    """The previous seen answer's class with probability ``1 - weight``, the rates with ``weight``."""
    def predict(sessions: LogSessions, s: int, given: int) -> np.ndarray:
        _, pct, liked = sessions.session(s)
        out = np.tile(rates, (len(pct), 1))
        classes = answer_class(pct, liked)
        for i in range(1, len(pct)):
            out[i] = weight * rates
            out[i, classes[min(i, given) - 1]] += 1.0 - weight
        return out
    return predict


def fit_previous(sessions: LogSessions, rates: np.ndarray) -> float:
    """The weight of the rates in :func:`previous_predictor` that fits ``sessions`` best (a grid)."""
    classes = answer_class(sessions.pct, sessions.liked)
    later = np.ones(len(classes), dtype=bool)
    later[sessions.starts[:-1]] = False
    repeat = np.zeros(len(classes), dtype=bool)
    repeat[1:] = classes[1:] == classes[:-1]
    repeat &= later
    scores = [np.log(w * rates[classes[later]] + (1.0 - w) * repeat[later]).sum() for w in _PREVIOUS_WEIGHTS]
    return float(_PREVIOUS_WEIGHTS[int(np.argmax(scores))])


def learnt_predictor(model: LearntListener) -> Predictor:
    """The learnt listener's class probabilities: the seen answers replayed, then its own most probable answer
    (that class's mean share heard and like) rolled forward. Listener summaries of the sessions' listeners from
    their other sessions among ``sessions`` (as in fitting)."""
    net = model.net()
    e_pct = np.repeat(model.shares.mean(), 2)
    last: list[Any] = [None, None]  # the sessions last predicted and their listener summaries

    def predict(sessions: LogSessions, s: int, given: int) -> np.ndarray:
        if last[0] is not sessions:
            last[:] = sessions, user_summaries(sessions, model.latents, model.features, model.basis())
        tracks, pct, liked = sessions.session(s)
        user = last[1][s]
        taste = taste_features(user, model.basis().weights[tracks])
        state, memory = SessionState(model.latents), np.zeros(net.memory)
        out = np.empty((len(tracks), N_CLASSES))
        for i, t in enumerate(tracks.tolist()):
            context = np.hstack([state.features(np.array([t])), taste[i:i + 1]])
            out[i] = softmax(net.logits(np.array([t]), context, net.rest(user, memory))[:, :N_CLASSES])[0]
            if i < given:
                p, lk = float(pct[i]), int(liked[i])
            else:
                c = int(np.argmax(out[i]))
                p, lk = float(e_pct[c]), c % 2
            state.advance(t, p, lk)
            if net.memory:
                memory = net.step(memory, t, answer_inputs([p], [lk])[0])
        return out
    return predict


def log_likelihood(predict: Predictor, sessions: LogSessions) -> float:
    """Mean log-probability of each answer's class, every answer before it seen."""
    total = 0.0
    for s in range(sessions.n_sessions):
        _, pct, liked = sessions.session(s)
        probs = predict(sessions, s, len(pct))
        total += float(np.log(np.maximum(probs[np.arange(len(pct)), answer_class(pct, liked)], _FLOOR)).sum())
    return total / len(sessions.tracks)


def skip_accuracy(predict: Predictor, sessions: LogSessions) -> float | None:
    """The MSSD challenge's mean average accuracy of the second halves' skips (module docstring)."""
    scores = []
    for s in range(sessions.n_sessions):
        _, pct, liked = sessions.session(s)
        if len(pct) < 2:
            continue
        given = len(pct) // 2
        probs = predict(sessions, s, given)[given:]
        right = (probs[:, SKIP_CLASSES].sum(axis=1) > 0.5) == (pct[given:] < 0.5)
        accuracy = np.cumsum(right) / np.arange(1, len(right) + 1)
        scores.append(float((accuracy * right).mean()))
    return float(np.mean(scores)) if scores else None


def measure(model: LearntListener, fit: LogSessions, held_out: LogSessions,
            reference: Predictor | None = None) -> dict[str, dict[str, float | None]]:
    """``log_likelihood`` and ``skip_accuracy`` on ``held_out`` of ``learnt``, ``rates``, ``previous`` (both
    fitted on ``fit``) and, when given, ``reference`` (the listener that generated the log)."""
    rates = class_rates(fit)
    predictors: dict[str, Predictor] = {"learnt": learnt_predictor(model), "rates": rates_predictor(rates),
                                        "previous": previous_predictor(rates, fit_previous(fit, rates))}
    if reference is not None:
        predictors["reference"] = reference
    return {name: {"log_likelihood": round(log_likelihood(p, held_out), 6),
                   "skip_accuracy": _rounded(skip_accuracy(p, held_out))} for name, p in predictors.items()}


def _rounded(value: float | None) -> float | None:
    """``value`` to 6 decimals (None stays None)."""
    return None if value is None else round(value, 6)
