"""The ``sim2real`` config group: the fidelity protocol's log, logging policy and evaluation budget."""

from __future__ import annotations

from dataclasses import dataclass, field

from music_rl.core.errors import require
from music_rl.evaluation.evaluate import Behaviour

MIN_HELD_OUT = 5  # the fewest held-out listeners whose bootstrap is called an interval


@dataclass
class Sim2RealConfig:
    """The fidelity protocol (``+experiment=sim2real``; docs/results/sim2real.md)."""

    enabled: bool = False
    """after training, log the reference listeners, fit a learnt listener on the log and measure how far it can be
    trusted (metrics.json["sim2real"]); needs algo=ppo, env.action=discrete, eval.protocol=population and
    listeners.model=parametric (the reference)"""
    log_sessions: int = 10_000
    """sessions logged from the reference population; the headline figures are measured at this size"""
    log_sizes: list[int] = field(default_factory=list)
    """the log-size curve: every size is measured (each log the first sessions of the largest, in the logging
    order: listener after listener, round after round); empty: sim2real.log_sessions alone"""
    behaviour: Behaviour = Behaviour.uniform
    """the logging policy: uniform (each of the k candidates alike) | epsilon_greedy (the highest r_hat with
    probability 1 - sim2real.epsilon, else one at random); its propensities are logged (action_prob)"""
    epsilon: float = 0.3
    """exploration rate of behaviour=epsilon_greedy"""
    eval_sessions: int = 20
    """evaluation sessions of every policy per held-out listener, in each world"""
    n_bootstrap: int = 1000
    """bootstrap resamples of the listeners for the intervals"""

    def sizes(self) -> list[int]:
        """Every log size measured, ascending (``log_sessions`` among them)."""
        return sorted({int(self.log_sessions), *(int(n) for n in self.log_sizes)})

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad ``sim2real.*`` key."""
        require([
            ("sim2real.log_sessions", self.log_sessions, self.log_sessions >= 10,
             "must be an integer >= 10 (a listener is fitted on 10 sessions or more)"),
            ("sim2real.log_sizes", self.log_sizes, all(int(n) >= 10 for n in self.log_sizes),
             "must be a list of integers >= 10"),
            ("sim2real.epsilon", self.epsilon, 0 < self.epsilon <= 1,
             "must be in (0, 1] (every candidate needs a non-zero probability)"),
            ("sim2real.eval_sessions", self.eval_sessions, self.eval_sessions >= 1, "must be an integer >= 1"),
            ("sim2real.n_bootstrap", self.n_bootstrap, self.n_bootstrap >= 10, "must be an integer >= 10"),
        ])
