"""(k) The learnt listener's costs: fitting it on a log of the reference (parametric) listeners, per kind, and
PPO's speed against it relative to the parametric listener it was fitted on.

The log is the sim2real protocol's (:func:`music_rl.sim2real.logs.log_reference`: a uniform logging policy over
the candidates, every listener in turn) on the default-size synthetic world; the fit is
:func:`music_rl.user_model.fit_listener` with the default ``listeners.learnt`` config, timed in CPU seconds, in
a fresh process whose peak resident memory holds the world, the log and the fit. PPO (the default ``ppo``
config) trains side by side on the two worlds, one rollout + update at a time, alternating; the ratio is of env
steps per CPU second (target: at least 0.5, issue "listeners learnt from logs").
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from music_rl.bench.report import Target, make_row
from music_rl.bench.runner import Runner


def bench_k(r: Runner) -> list[dict[str, Any]]:
    """One row per (log size, kind) of the fit's CPU time, and one of PPO's speed ratio."""
    s = r.sizes
    rows = []
    for sessions in s.learnt_sessions:
        for kind in s.learnt_kinds:
            res, cost = r.child(task_fit, n_tracks=s.learnt_tracks, population=s.learnt_population,
                                sessions=sessions, kind=kind)
            rows.append(make_row("k", f"learnt listener fit ({kind}), {sessions:,} sessions (CPU time)", "s",
                                 [res["cpu_s"]], peak_rss_mb=cost.peak_rss_mb,
                                 detail=f"{res['answers']:,} answers, {res['epochs']} epochs (best {res['best']}); "
                                        f"log-likelihood gap closed {res['gap_closed']:.2f}; peak memory: world, "
                                        "log and fit",
                                 sessions=sessions, kind=kind, **res))
    res, cost = r.child(task_ppo_speed, n_tracks=s.learnt_tracks, rollouts=s.learnt_ppo_rollouts, ppo=s.ppo,
                        repeats=r.repeats)
    rows.append(make_row("k", "PPO env steps per CPU second, learnt listener / parametric", "ratio", res["ratios"],
                         [Target("median", ">=", 0.5, "")], peak_rss_mb=cost.peak_rss_mb,
                         detail=f"parametric {statistics.median(res['parametric']):.0f}, learnt "
                                f"{statistics.median(res['learnt']):.0f} steps per CPU second", **res))
    return rows


def _reference(n_tracks: int, population: int, sessions: int) -> tuple[Any, Any, Any, Any]:
    """A synthetic world of ``population`` parametric listeners, its reference log, the log as sessions and the
    split of the sim2real protocol (held-out listeners measure, a quarter of the rest stop the fit)."""
    import numpy as np

    from envs.env_config import EnvConfig
    from envs.world import synthetic_world
    from music_rl.sim2real.logs import log_reference
    from music_rl.user_model.sessions import Split, sessions_of

    world = synthetic_world(n_tracks=n_tracks, latent_dim=5, seed=0, population=population)
    logged = log_reference(world, EnvConfig(), sessions, "uniform", 0.3, seed=1)
    log = sessions_of(logged.frame, world.track_ids())
    held, training = world.meta["heldout_listeners"], np.asarray(world.meta["train_listeners"])
    stopping = np.random.default_rng(2).choice(training, size=max(1, len(training) // 4), replace=False)
    owner = logged.listener
    split = Split(fit=np.flatnonzero(~np.isin(owner, held) & ~np.isin(owner, stopping)),
                  stop=np.flatnonzero(np.isin(owner, stopping)), measure=np.flatnonzero(np.isin(owner, held)),
                  by="listener")
    return world, logged, log, split


def task_fit(n_tracks: int, population: int, sessions: int, kind: str) -> dict[str, Any]:
    """CPU seconds of one fit of the learnt listener of ``kind`` on ``sessions`` reference sessions."""
    import dataclasses

    import torch

    from envs.listeners import LearntKind, ListenerConfig
    from envs.listeners.response import ResponseParams
    from music_rl.sim2real.reference import answer_class_probabilities, reference_predictor
    from music_rl.user_model import fit_listener

    torch.set_num_threads(1)
    world, logged, log, split = _reference(n_tracks, population, sessions)
    cfg = ListenerConfig(population=population)
    cfg = dataclasses.replace(cfg, learnt=dataclasses.replace(cfg.learnt, kind=LearntKind(kind)))
    reference = reference_predictor(answer_class_probabilities(logged.affinity, ResponseParams.of(cfg)), log)
    began = time.process_time()
    _, fidelity = fit_listener(log, world.track_ids(), world.features, world.latents, cfg, 0, reference, split)
    cpu = time.process_time() - began
    ll = {name: fidelity[name]["log_likelihood"] for name in ("learnt", "reference", "rates")}
    return {"cpu_s": round(cpu, 2), "answers": len(log.tracks), "epochs": fidelity["fit"]["epochs"],
            "best": fidelity["fit"]["best_epoch"],
            "gap_closed": (ll["learnt"] - ll["rates"]) / (ll["reference"] - ll["rates"])}


def task_ppo_speed(n_tracks: int, rollouts: int, ppo: dict[str, Any], repeats: int) -> dict[str, Any]:
    """Env steps per CPU second of the same PPO on the parametric world and on a learnt listener fitted on 1,000
    of its sessions (the speed does not depend on how well it fits), ``rollouts`` at a time, alternating."""
    import dataclasses

    import torch

    from envs.env_config import EnvConfig, RewardSource
    from envs.listeners import ListenerConfig
    from music_rl.learners.ppo import PPOConfig, build_model, make_vec_env
    from music_rl.sim2real.protocol import learnt_world
    from music_rl.user_model import fit_listener

    torch.set_num_threads(1)
    world, _, log, split = _reference(n_tracks, 50, 1_000)
    cfg = ListenerConfig(population=50)
    fitted, _ = fit_listener(log, world.track_ids(), world.features, world.latents, cfg, 0, None, split)
    worlds = {"parametric": world, "learnt": learnt_world(world, fitted, cfg, 3)}
    ppo_cfg = dataclasses.replace(PPOConfig(), **ppo)
    env_cfg = EnvConfig(reward_source=RewardSource.simulator)
    models = {}
    for name, w in worlds.items():
        venv = make_vec_env(w, env_cfg, [int(i) for i in w.meta["train_listeners"]], ppo_cfg.n_envs,
                            ppo_cfg.vec_env, 0)
        models[name] = build_model(ppo_cfg, env_cfg, venv, w, 0)
    steps = rollouts * ppo_cfg.n_steps * ppo_cfg.n_envs
    speed: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            began = time.process_time()
            model.learn(steps, reset_num_timesteps=False)
            speed[name].append(steps / (time.process_time() - began))
    ratios = [a / b for a, b in zip(speed["learnt"], speed["parametric"], strict=True)]
    return {"parametric": speed["parametric"], "learnt": speed["learnt"], "ratios": ratios, "steps": steps}
