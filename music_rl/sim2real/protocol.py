"""The fidelity protocol (``+experiment=sim2real``): from the reference (parametric) population of a run, log
sessions under a logging policy with propensities, fit the learnt listener on the training listeners' sessions
and report, at each log size:

- ``predictive``: log-likelihood per answer and skip accuracy on the held-out listeners' sessions of the learnt
  listener, the reference's own probabilities (the ceiling), the log's answer rates and the previous answer
  repeated (:mod:`music_rl.user_model.fidelity`), and ``log_likelihood_gap_closed`` = (learnt − rates) /
  (reference − rates);
- ``ranking``: the normalized score of each policy in the learnt simulator and against the reference, Kendall's
  tau of the two orders and its bootstrap interval over listeners, their mean absolute difference;
- ``transfer``: the reference score of a PPO trained only inside the learnt simulator over that of the run's PPO
  (trained against the reference with the same budget and seed), with its interval.

Listeners: the run's held-out listeners are the protocol's: their sessions measure ``predictive``, they are the
reference's evaluation listeners, and nothing is fitted or trained on them. Of the training listeners, a quarter
stop the fitting early and the rest fit it (60/20/20 of the population with the default split). The learnt
simulator's own listeners are drawn from the fitted listeners (:mod:`music_rl.user_model.simulator`), its
held-out ones evaluate there. Each log size is the first sessions of the largest log in the logging order
(round after round, every listener once a round): nested logs, one generated.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm

from envs.env_config import ActionKind, EnvConfig
from envs.listener_log import track_features
from envs.listeners import ListenerConfig, ListenerModel
from envs.listeners.response import ResponseParams
from envs.music_env import EnvSetup
from envs.rewards import RewardConfig
from envs.world import World
from music_rl.data.feedback import write_feedback
from music_rl.evaluation.adaptive import LinUCB, SessionAffinity
from music_rl.evaluation.baselines import greedy_policy, nearest_policy, oracle_policy, random_policy
from music_rl.evaluation.new_listener import NewListenerConfig
from music_rl.learners.algos import model_policy
from music_rl.learners.policies import Policy
from music_rl.runs.seeding import derive_seed
from music_rl.sim2real.config import Sim2RealConfig
from music_rl.sim2real.logs import log_reference
from music_rl.sim2real.reference import answer_class_probabilities, reference_predictor
from music_rl.sim2real.scores import Played, Player, bootstrap_weights, normalized_scores, play, ranking, transfer
from music_rl.user_model import LearntListener, fit_listener, save_listener
from music_rl.user_model.fidelity import Predictor
from music_rl.user_model.sessions import LogSessions, Split, sessions_of

log = logging.getLogger(__name__)

Train = Callable[[str, Path, World], BaseAlgorithm]
"""``(env.action, folder, world) -> model``: the run's learner trained on another world, saved in ``folder``."""
PREDICTORS = ("learnt", "reference", "rates", "previous")
LOG_FILE = "log.csv"


@dataclasses.dataclass(frozen=True)
class Setting:
    """What the protocol reads of the run's configuration."""

    sim2real: Sim2RealConfig
    env: EnvConfig
    listeners: ListenerConfig
    reward: RewardConfig
    bandit: NewListenerConfig  # LinUCB's alpha and ridge
    seed: int


def run_sim2real(setting: Setting, out_dir: Path, world: World, model: BaseAlgorithm, train: Train
                 ) -> dict[str, Any]:
    """The protocol (module docstring) on the run's ``world`` (its parametric listeners: the reference) and
    ``model`` (its PPO, trained against them); writes ``out_dir`` (``log.csv``, and per log size its fitted
    listener and the two learners trained inside it); returns ``metrics.json["sim2real"]``."""
    s2r, seed = setting.sim2real, derive_seed(setting.seed, "sim2real")
    sizes = s2r.sizes()
    began = time.process_time()
    logged = log_reference(world, setting.env, sizes[-1], str(s2r.behaviour), s2r.epsilon, seed)
    write_feedback(logged.frame, out_dir / LOG_FILE)
    track_ids = world.track_ids()
    sessions = sessions_of(logged.frame, track_ids)
    reference = reference_predictor(answer_class_probabilities(logged.affinity, ResponseParams.of(setting.listeners)),
                                    sessions)
    held = [int(i) for i in world.meta["heldout_listeners"]]
    training = np.asarray(world.meta["train_listeners"], dtype=np.int64)
    stopping = np.random.default_rng([seed, 2]).choice(training, size=max(1, round(len(training) / 4)),
                                                       replace=False)
    log.info("sim2real: %d sessions logged (%s) from %d listeners in %.1f s", sessions.n_sessions,
             s2r.behaviour, world.listeners().n, time.process_time() - began)
    players = {**baseline_players(world, setting), "ppo": Player(learnt_player(model))}
    eval_seed = derive_seed(setting.seed, "sim2real-eval")
    outside = play(world, setting.env, players, held, s2r.eval_sessions, eval_seed)
    ref_weights = bootstrap_weights(len(held), s2r.n_bootstrap, np.random.default_rng([seed, 3]))
    results = []
    for n in sizes:
        mine = np.flatnonzero(logged.rank < n)
        part, owner = sessions.subset(mine), logged.listener[mine]
        split = Split(fit=np.flatnonzero(~np.isin(owner, held) & ~np.isin(owner, stopping)),
                      stop=np.flatnonzero(np.isin(owner, stopping)), measure=np.flatnonzero(np.isin(owner, held)),
                      by="listener")
        results.append(_one_size(setting, out_dir / f"log{n}", world, part, split, reference, players, outside,
                                 ref_weights, train, eval_seed))
    headline = next(r for r in results if r["log_sessions"] == s2r.log_sessions)
    return {"log_sessions": s2r.log_sessions, "logging_policy": _behaviour(s2r), "reference": "parametric",
            "listeners": {"population": world.listeners().n, "held_out": len(held),
                          "stop": int(len(stopping)), "fit": int(len(training) - len(stopping))},
            "eval_sessions_per_listener": s2r.eval_sessions, "n_bootstrap": s2r.n_bootstrap,
            **{key: headline[key] for key in ("predictive", "ranking", "transfer")}, "log_sizes": results}


def _one_size(setting: Setting, out_dir: Path, world: World, sessions: LogSessions, split: Split,
              reference: Predictor, players: dict[str, Player], outside: Played, ref_weights: np.ndarray,
              train: Train, eval_seed: int) -> dict[str, Any]:
    """The three measures on ``sessions`` (the first logged ones): the listener fitted on them, the two learners
    trained inside it, every policy (``players``: the baselines and the run's PPO, already played against the
    reference as ``outside``) played in the learnt simulator."""
    s2r, n = setting.sim2real, sessions.n_sessions
    seconds: dict[str, float] = {}
    began = time.process_time()
    fitted, fidelity = fit_listener(sessions, world.track_ids(), world.features, world.latents, setting.listeners,
                                    derive_seed(setting.seed, f"sim2real-fit-{n}"), reference, split)
    save_listener(out_dir, fitted, fidelity)
    seconds["fit"] = time.process_time() - began
    inside = learnt_world(world, fitted, setting.listeners, derive_seed(setting.seed, f"sim2real-listeners-{n}"))
    began = time.process_time()
    learners = {"ppo_learnt": (train("discrete", out_dir / "ppo", inside), ActionKind.discrete),
                "ppo_latent_learnt": (train("latent", out_dir / "ppo_latent", inside), ActionKind.latent)}
    seconds["train"] = time.process_time() - began
    trained = {name: Player(learnt_player(m), action) for name, (m, action) in learners.items()}
    began = time.process_time()
    against_reference = outside.merged(play(world, setting.env, trained, outside.listeners, s2r.eval_sessions,
                                            eval_seed))
    sim_held = [int(i) for i in inside.meta["heldout_listeners"]]
    in_simulator = play(inside, setting.env, {**players, **trained}, sim_held, s2r.eval_sessions, eval_seed)
    seconds["evaluation"] = time.process_time() - began
    sim_weights = bootstrap_weights(len(sim_held), s2r.n_bootstrap,
                                    np.random.default_rng([derive_seed(setting.seed, "sim2real"), n, 4]))
    ref_scores = normalized_scores(against_reference, ref_weights)
    sim_scores = normalized_scores(in_simulator, sim_weights)
    names = [name for name in ref_scores if name != "oracle"]
    predictive: dict[str, Any] = {name: fidelity[name] for name in PREDICTORS}
    lls = {name: fidelity[name]["log_likelihood"] for name in ("learnt", "reference", "rates")}
    gap = lls["reference"] - lls["rates"]
    predictive["log_likelihood_gap_closed"] = (lls["learnt"] - lls["rates"]) / gap if abs(gap) > 1e-12 else None
    entry = {"log_sessions": n, "sessions": fidelity["fit"]["sessions"], "predictive": predictive,
             "ranking": ranking(ref_scores, sim_scores, names), "transfer": transfer(ref_scores, "ppo_learnt", "ppo"),
             "fit": fidelity["fit"], "cpu_time_s": {k: round(v, 3) for k, v in seconds.items()}}
    log.info("sim2real at %d sessions: log-likelihood gap closed %s, kendall_tau %s %s, transfer ratio %s %s", n,
             _fmt(predictive["log_likelihood_gap_closed"]), _fmt(entry["ranking"]["kendall_tau"]),
             _fmt_interval(entry["ranking"]["ci95"]), _fmt(entry["transfer"]["ratio"]),
             _fmt_interval(entry["transfer"]["ci95"]))
    return entry


def learnt_player(model: BaseAlgorithm) -> Callable[[int], Policy]:
    """A trained model as a player's policy maker (deterministic: the session's seed is not needed)."""
    return lambda _seed: model_policy(model)


def baseline_players(world: World, setting: Setting) -> dict[str, Player]:
    """The policies every world plays beside the learners: random and the oracle (the score's two ends),
    nearest, greedy on r̂, the session-affinity heuristic and LinUCB (cold: one per session, learning from the
    session's answers; :mod:`music_rl.evaluation.adaptive`)."""
    affinity = SessionAffinity(world.features)  # keeps nothing between calls
    phi = track_features(world.latents, world.features)
    scale = EnvSetup.of(world, setting.env).reward_scale
    bandit = setting.bandit
    return {"random": Player(lambda seed: random_policy(np.random.default_rng([seed, 1]))),
            "oracle": Player(lambda _: oracle_policy), "nearest": Player(lambda _: nearest_policy),
            "greedy": Player(lambda _: greedy_policy), "affinity": Player(lambda _: affinity),
            "linucb": Player(lambda _: LinUCB(phi, setting.reward, scale, bandit.linucb_alpha, bandit.linucb_ridge))}


def learnt_world(world: World, fitted: LearntListener, listeners: ListenerConfig, seed: int) -> World:
    """``world`` (catalog, neighbours, clusters, r̂) with the learnt listener's population in place of its own,
    ``listeners.population`` listeners drawn with ``seed`` and split into training and held-out ones as a run's
    are."""
    cfg = dataclasses.replace(listeners, model=ListenerModel.learnt, fit_log=LOG_FILE)
    inside = dataclasses.replace(world, meta={**world.meta, "listener_config": dataclasses.asdict(cfg),
                                              "listeners_seed": int(seed)})
    inside.attach_listener(fitted)
    train_ids, held = inside.listeners().split(cfg.held_out_fraction, np.random.default_rng([seed, 1]))
    inside.meta.update(served_listener=int(train_ids[0]), train_listeners=[int(i) for i in train_ids],
                       heldout_listeners=[int(i) for i in held])
    return inside


def _behaviour(s2r: Sim2RealConfig) -> str:
    """The logging policy, as metrics.json names it."""
    return f"{s2r.behaviour} (epsilon {s2r.epsilon})" if s2r.behaviour == "epsilon_greedy" else str(s2r.behaviour)


def _fmt(value: float | None) -> str:
    """A figure for the log line."""
    return "n/a" if value is None else f"{value:.3f}"


def _fmt_interval(ci: list[float] | None) -> str:
    """An interval for the log line."""
    return "[n/a]" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"
