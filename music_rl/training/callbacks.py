"""SB3 callbacks: listener feedback statistics, periodic ground-truth evaluation, atomic checkpoints.

Logged scalars (TensorBoard, next to SB3's own ``rollout/``, ``train/`` and ``time/``):

- ``rollout/like_rate``, ``rollout/mean_pct_listened``, ``rollout/skip_rate`` (pct < 0.5): the listener's
  answers to the tracks the learner chose while collecting the last rollout (an off-policy algorithm's rollout:
  its ``train_freq`` steps between updates); the listener's true expected rewards are not computed during
  training (about 5-12 % of PPO's time, docs/benchmarks.md; evaluation computes them);
- ``eval/mean_reward``, ``eval/like_rate``, ``eval/mean_expected_reward``, ``eval/normalized_score``:
  the deterministic learnt policy on fresh sessions of the evaluation listeners, scored against random and
  oracle figures measured once on the same sessions.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, NotRequired, TypedDict

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from music_rl.learners.models import CHECKPOINT_RE, checkpoint_path, save_model_atomic

log = logging.getLogger(__name__)


class CurvePoint(TypedDict):
    """One evaluation of a learning curve (:attr:`PeriodicEvalCallback.curve`)."""

    timesteps: int
    train_s: float
    normalized_score: float | None
    smoothed: NotRequired[float | None]



class FeedbackStatsCallback(BaseCallback):
    """Average the listener's answers over each rollout and log them under ``rollout/``."""

    def __init__(self) -> None:
        super().__init__()
        self._answers = _Means("like_rate", "mean_pct_listened", "skip_rate")

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            pct = info["percentage_listened"]
            self._answers.add(info["liked"], pct, pct < 0.5)
        return True

    def _on_rollout_end(self) -> None:
        for name, value in self._answers.pop().items():
            self.logger.record(f"rollout/{name}", value)


class _Means:
    """Running means of named quantities over one rollout."""

    def __init__(self, *names: str) -> None:
        self.names, self.sums, self.n = names, [0.0] * len(names), 0

    def add(self, *values: float) -> None:
        """One observation of every quantity, in the order of the names."""
        for i, value in enumerate(values):
            self.sums[i] += value
        self.n += 1

    def pop(self) -> dict[str, float]:
        """The means so far (empty when nothing was added), then start again."""
        out = {name: total / self.n for name, total in zip(self.names, self.sums, strict=True)} if self.n else {}
        self.sums, self.n = [0.0] * len(self.names), 0
        return out


class PeriodicEvalCallback(BaseCallback):
    """Every ``eval_freq`` steps, score the deterministic policy with ``evaluate`` and log ``eval/*``; keep the
    learning curve against training time; optionally stop when the score has plateaued.

    Evaluations happen between rollouts (and when training ends), so each scores a policy trained on exactly
    the timesteps it is logged at: the first rollout boundary at or past every multiple of ``eval_freq``.

    :param evaluate: maps the model to a metrics dict with ``mean_reward``, ``like_rate`` and
        ``normalized_score`` (the caller closes over the eval env, sessions and baseline figures).
    :param eval_freq: steps between evaluations (0: none).
    :param plateau_patience: with a number, stop training once the smoothed score (:func:`smoothed`) has not
        risen by ``plateau_delta`` over the best so far for this many evaluations in a row; None: never stop.
        The stop comes at the first step of the next rollout, whose steps are dropped: the model's timestep
        count goes back to the evaluated one, so the saved model and checkpoint are the evaluated policy.

    ``curve`` lists every evaluation: ``timesteps``, ``train_s`` (seconds of training since it started, the
    evaluations' own time left out), ``normalized_score`` and its ``smoothed`` value; ``stopped_at`` the
    timesteps where a plateau stopped training (None otherwise); ``eval_seconds`` the time the evaluations
    took (``eval_cpu_seconds``: the process's CPU time in them).
    """

    def __init__(self, evaluate: Callable[[BaseAlgorithm], dict[str, float]], eval_freq: int,
                 plateau_patience: int | None = None, plateau_delta: float = 0.0) -> None:
        super().__init__()
        self.evaluate, self.eval_freq = evaluate, eval_freq
        self.plateau_patience, self.plateau_delta = plateau_patience, plateau_delta
        self._next = eval_freq
        self.curve: list[CurvePoint] = []
        self.stopped_at: int | None = None
        self._start = 0.0
        self.eval_seconds = self.eval_cpu_seconds = 0.0

    def _on_training_start(self) -> None:
        self._next = self._following(self.model.num_timesteps)
        self._start, self.eval_seconds, self.eval_cpu_seconds = time.perf_counter(), 0.0, 0.0

    def _following(self, timesteps: int) -> int:
        """The next multiple of ``eval_freq`` after ``timesteps`` (0: never)."""
        return (timesteps // self.eval_freq + 1) * self.eval_freq if self.eval_freq else 0

    def _on_rollout_start(self) -> None:
        self._evaluate_when_due()

    def _on_training_end(self) -> None:
        if self.stopped_at is None:
            self._evaluate_when_due(last=True)

    def _on_step(self) -> bool:
        if self.stopped_at is None:
            return True
        self.model.num_timesteps = self.stopped_at  # the dropped rollout's steps were never trained on
        return False

    def _evaluate_when_due(self, last: bool = False) -> None:
        timesteps = self.model.num_timesteps
        if not self.eval_freq or timesteps < self._next:
            return
        self._next = self._following(timesteps)
        began, began_cpu = time.perf_counter(), time.process_time()
        train_s = began - self._start - self.eval_seconds
        results = self.evaluate(self.model)
        for key, value in results.items():
            self.logger.record(f"eval/{key}", value)
        self.logger.dump(timesteps)
        self.eval_seconds += time.perf_counter() - began
        self.eval_cpu_seconds += time.process_time() - began_cpu
        score = results.get("normalized_score")
        self.curve.append({"timesteps": timesteps, "train_s": round(train_s, 3), "normalized_score": score})
        self.curve[-1]["smoothed"] = smoothed([p["normalized_score"] for p in self.curve])[-1]
        if self.plateau_patience and not last and self._plateaued(self.plateau_patience):
            self.stopped_at = timesteps
            log.info("eval.stop_on_plateau: the smoothed normalized_score rose less than %g over %d evaluations: "
                     "training stops at %d steps", self.plateau_delta, self.plateau_patience, timesteps)
            self.logger.record("eval/stopped_on_plateau", timesteps)
            self.logger.dump(timesteps)

    def _plateaued(self, plateau_patience: int) -> bool:
        """No new best smoothed score (by ``plateau_delta``) in the last ``plateau_patience`` evaluations."""
        values = [p["smoothed"] for p in self.curve if p["smoothed"] is not None]
        if len(values) <= plateau_patience:
            return False
        before = max(values[: -plateau_patience])
        return max(values[-plateau_patience:]) < before + self.plateau_delta


def smoothed(scores: list[float | None], window: int = 3) -> list[float | None]:
    """The running mean of the last ``window`` defined scores at each point (None before the first)."""
    out: list[float | None] = []
    for i in range(len(scores)):
        recent = [s for s in scores[max(0, i - window + 1): i + 1] if s is not None]
        out.append(round(sum(recent) / len(recent), 6) if recent else None)
    return out


def time_to_quality(curve: list[CurvePoint], fraction: float = 0.95) -> dict[str, float] | None:
    """When a learning curve (:attr:`PeriodicEvalCallback.curve`) first reached ``fraction`` of its final
    smoothed score: ``timesteps`` and ``train_s`` of that evaluation, with the ``final`` smoothed score. None
    when the curve is empty or its final smoothed score is not above 0 (no quality to reach a share of)."""
    final = curve[-1]["smoothed"] if curve else None
    if final is None or final <= 0:
        return None
    first = next(p for p in curve if p["smoothed"] is not None and p["smoothed"] >= fraction * final)
    return {"fraction": fraction, "final": final, "timesteps": first["timesteps"], "train_s": first["train_s"]}


class RolloutCheckpointCallback(BaseCallback):
    """Save ``checkpoints/<algo>_<n>_steps.zip`` atomically every ``save_freq`` steps, and on SIGTERM/SIGINT.

    A checkpoint holds the policy trained on exactly ``n`` timesteps: periodic ones are written when a
    rollout starts (the previous one trained) and when training ends, the one on a signal is numbered with
    the timesteps trained so far, the interrupted rollout's partial data being discarded. So
    ``resume=true`` continues from the newest checkpoint and ends at the asked total, as an uninterrupted
    run does. On a signal the current step finishes, a checkpoint is written and training stops;
    ``interrupted`` tells the caller, which exits without evaluating.

    Not SB3's ``CheckpointCallback``: that one saves from ``_on_step`` every ``save_freq`` calls (``n_envs``
    steps each), in the middle of a PPO rollout, under the count of steps collected rather than trained, and
    with ``model.save(path)`` straight onto the final name; a subclass would replace its ``_on_step`` (all of
    its saving) and keep only its folder creation and file name.
    """

    def __init__(self, folder: Path, save_freq: int, keep: int = 3, algo: str = "ppo") -> None:
        super().__init__()
        self.folder, self.save_freq, self.keep, self.algo = folder, save_freq, keep, algo
        self.interrupted: int | None = None
        self._next = 0
        self._trained = 0
        self._previous: dict[int, Any] = {}

    def _on_training_start(self) -> None:
        self._next = (self.num_timesteps // self.save_freq + 1) * self.save_freq
        self._trained = self.num_timesteps
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.interrupted = signum

    def _on_training_end(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        if self.interrupted is None and not checkpoint_path(self.folder, self.algo, self.model.num_timesteps).exists():
            self.save()  # the trained policy (a plateau's stop has set the count back to the evaluated one)

    def save(self, timesteps: int | None = None) -> Path:
        """Write a checkpoint now (numbered ``timesteps``, default the model's) and prune all but the newest
        ``keep``."""
        timesteps = self.model.num_timesteps if timesteps is None else timesteps
        path = checkpoint_path(self.folder, self.algo, timesteps)
        counted = self.model.num_timesteps
        self.model.num_timesteps = timesteps  # the saved counter is the one training resumes from
        try:
            save_model_atomic(self.model, path)
        finally:
            self.model.num_timesteps = counted
        ordered = sorted((int(m.group(1)), p) for p in self.folder.glob(f"{self.algo}_*_steps.zip")
                         if (m := CHECKPOINT_RE.match(p.name)))
        for _, old in ordered[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def _on_rollout_start(self) -> None:
        self._trained = self.num_timesteps
        if self.num_timesteps >= self._next:
            self._next = (self.num_timesteps // self.save_freq + 1) * self.save_freq
            self.save()

    def _on_step(self) -> bool:
        if self.interrupted is not None:
            path = self.save(self._trained)
            log.warning("%s: checkpoint saved to %s; training stopped (resume with resume=true)",
                        signal.Signals(self.interrupted).name, path)
            return False
        return True
