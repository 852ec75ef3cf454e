"""(j) The planning reference's lookahead: its score and its cost per session for a grid of horizons and samples
per candidate, on the default-size synthetic world (PCA latents) and listeners that nothing else tunes on.

The score is on the myopic oracle's scale, (planner - random) / (oracle - random) on the listener's expected
reward over the same sessions (horizon 1 is the oracle: 1.00). Where more lookahead stops paying is where
``eval.planner``'s defaults are set (docs/guides/evaluate.md, "Scores").
"""

from __future__ import annotations

import time
from typing import Any

from music_rl.bench.report import make_row
from music_rl.bench.runner import Runner


def bench_j(r: Runner) -> list[dict[str, Any]]:
    """One row per (horizon, samples): the score per listener, and the milliseconds per session."""
    res, cost = r.child(task_lookahead, n_tracks=r.sizes.planner_tracks, grid=list(r.sizes.planner_grid),
                        listeners=list(r.sizes.planner_listeners), sessions=r.sizes.planner_sessions)
    rows = []
    for v in res["variants"]:
        what = f"planner horizon {v['horizon']} x {v['samples']} samples: score on the oracle's scale"
        rows.append(make_row("j", what, "score", v["scores"], peak_rss_mb=cost.peak_rss_mb,
                             detail=f"{res['sessions']} sessions per listener {res['listeners']}; "
                                    f"{v['ms_per_session']:.1f} ms per session (median over listeners)",
                             horizon=v["horizon"], samples=v["samples"], ms_per_session=v["ms_per_session"]))
    return rows


def task_lookahead(n_tracks: int, grid: list[list[int]], listeners: list[int], sessions: int) -> dict[str, Any]:
    """Every (horizon, samples) of ``grid`` against random and the oracle on the same sessions, per listener."""
    import statistics

    import numpy as np

    from envs.music_env import EnvConfig
    from envs.world import synthetic_world
    from music_rl.evaluation.baselines import oracle_policy, random_policy
    from music_rl.evaluation.evaluate import make_eval_env, rollout, summarise
    from music_rl.evaluation.planner import PlannerConfig, planner_policy
    from music_rl.serving.finetune import world_for_listener

    base = synthetic_world(n_tracks=n_tracks, latent_dim=5, seed=0)
    variants = []
    per_listener: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for listener in listeners:
        env = make_eval_env(world_for_listener(base, listener), EnvConfig(), None)

        def mean_expected(policy: Any, env: Any = env) -> float:
            mean: float = summarise(rollout(env, policy, sessions, 1000), base.latents)["mean_expected_reward"]
            return mean

        low, high = mean_expected(random_policy(np.random.default_rng(1))), mean_expected(oracle_policy)
        for horizon, samples in grid:
            began = time.perf_counter()
            value = mean_expected(planner_policy(PlannerConfig(horizon=horizon, samples=samples), 7))
            ms = (time.perf_counter() - began) / sessions * 1000
            per_listener.setdefault((horizon, samples), []).append(((value - low) / (high - low), ms))
    for (horizon, samples), results in per_listener.items():
        variants.append({"horizon": horizon, "samples": samples, "scores": [round(s, 4) for s, _ in results],
                         "ms_per_session": statistics.median(ms for _, ms in results)})
    return {"variants": variants, "listeners": listeners, "sessions": sessions}
