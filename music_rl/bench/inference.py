"""(f) Next-track recommendation latency from a loaded run folder (:func:`music_rl.bench.inputs.run_folder`).

A request is the policy forward on the current observation, then the env step to the pick (its k nearest
unplayed candidates and its observation, propagated rewards), along 20-track sessions. Two forward paths:
:func:`music_rl.learners.policies.candidate_probabilities` (probabilities + value, what ``recommend()`` uses) and a lean
one (the scorer's logits only, ``torch.inference_mode``); then ``music_rl.serving.inference.recommend()`` per step.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from music_rl.bench.inputs import run_folder
from music_rl.bench.report import Target, make_row
from music_rl.bench.runner import Runner

SESSION = 20  # tracks per walked session
QUANTILES = (50, 99)


def bench_f(r: Runner) -> list[dict[str, Any]]:
    """Request latency p50 and p99 per forward path, and recommend() per step; the target on p99."""
    n = r.sizes.recommend_tracks
    res, cost = r.child(task_recommend, run=str(run_folder(r, n)), requests=r.sizes.recommend_requests,
                        repeats=r.repeats)
    rows = []
    for m in res["measurements"]:
        for q in (f"p{q}" for q in QUANTILES):
            cpu = statistics.median(m[f"cpu_{q}_ms"])
            rows.append(make_row(
                "f",
                f"next-track request, {m['path']}, N={n:,}: {q}",
                "ms",
                m[f"{q}_ms"],
                [Target("median", "<=", 2.0, "ms")] if q == "p99" else [],
                peak_rss_mb=cost.peak_rss_mb,
                n_tracks=n,
                path=m["path"],
                cpu_ms=m[f"cpu_{q}_ms"],
                detail=f"{m['detail']}; wall clock; CPU time {q} {cpu:.3f} ms",
            ))
    rows.append(make_row(
        "f",
        f"inference.recommend() per step, N={n:,}",
        "ms",
        res["recommend_step_ms"],
        peak_rss_mb=cost.peak_rss_mb,
        detail=f"mean per step of a {SESSION}-step session (env + listener + labels)",
        n_tracks=n,
    ))
    return rows


def task_recommend(run: str, requests: int, repeats: int) -> dict[str, Any]:
    """Per-request latency (wall and CPU quantiles) along sessions walked by the policy in the run's env, per
    forward path; session starts (resets) are not timed. Then the mean per step of ``recommend()``."""
    import dataclasses

    import torch
    from stable_baselines3.common.policies import ActorCriticPolicy

    from envs.env_config import RewardSource
    from envs.music_env import MusicRecEnv
    from music_rl.learners.policies import candidate_probabilities
    from music_rl.serving.inference import load_run, recommend

    torch.set_num_threads(1)  # as music_rl.training.pipeline.run
    loaded = load_run(run)
    policy = loaded.policy
    assert isinstance(policy, ActorCriticPolicy)  # the run's PPO (candidate_scorer or mlp)
    env = MusicRecEnv(loaded.world, dataclasses.replace(loaded.cfg.env, reward_source=RewardSource.propagated,
                                                        session_length=SESSION, start_track=None))
    n = env.world.latents.shape[0]

    def full(obs: np.ndarray) -> int:
        return int(np.argmax(candidate_probabilities(policy, obs)[0]))

    def lean(obs: np.ndarray) -> int:
        with torch.inference_mode():
            return int(policy.mlp_extractor.forward_actor(torch.from_numpy(obs).unsqueeze(0)).argmax())

    paths = {
        "policies.candidate_probabilities": (full, "policies.candidate_probabilities (probs + value) + env step"),
        "lean actor forward": (lean, "scorer logits only (torch.inference_mode) + env step"),
    }
    rng = np.random.default_rng(0)
    measurements = []
    for name, (pick, detail) in paths.items():
        obs, _ = env.reset(seed=0)
        pick(obs)  # warm-up
        quantiles: dict[str, list[float]] = {f"{p}{q}_ms": [] for p in ("p", "cpu_p") for q in QUANTILES}
        for _ in range(repeats):
            wall, cpu = np.empty(requests), np.empty(requests)
            for i in range(requests):
                c0, t0 = time.thread_time(), time.perf_counter()
                obs, _, terminated, truncated, _ = env.step(pick(obs))
                wall[i], cpu[i] = time.perf_counter() - t0, time.thread_time() - c0
                if terminated or truncated:
                    obs, _ = env.reset(options={"start_track": int(rng.integers(n))})
            for prefix, lat in (("", wall), ("cpu_", cpu)):
                for q in QUANTILES:
                    quantiles[f"{prefix}p{q}_ms"].append(float(np.percentile(lat, q)) * 1e3)
        measurements.append({"path": name, "detail": detail, **quantiles})
    step_ms = []
    for rep in range(repeats):
        start = time.perf_counter()
        recommend(loaded, start=int(rng.integers(n)), length=SESSION, seed=rep)
        step_ms.append((time.perf_counter() - start) / SESSION * 1e3)
    return {"measurements": measurements, "recommend_step_ms": step_ms}
