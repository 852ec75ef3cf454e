"""(b) The CPU cost of ``MusicRecEnv.step`` per observation mode and reward source, per catalog size.

Random actions; resets are timed apart (in the detail, with the wall clock). The env is the prepared run
folder's world (:func:`music_rl.bench.inputs.run_folder`).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium.spaces import Discrete

from music_rl.bench.inputs import run_folder
from music_rl.bench.report import Target, make_row
from music_rl.bench.runner import Runner


def bench_b(r: Runner) -> list[dict[str, Any]]:
    """Raw env.step per observation mode and reward source, per catalog size (CPU time: see detail)."""
    rows = []
    for n in r.sizes.step_tracks:
        res, cost = r.child(task_env_step, run=str(run_folder(r, n)), steps=r.sizes.step_count, repeats=r.repeats)
        for m in res["measurements"]:
            rows.append(make_row(
                "b",
                f"env.step, {m['observation']}, {m['reward_source']}, N={n:,} (CPU time)",
                "µs",
                m["cpu_us"],
                [Target("median", "<=", 10.0, "µs")],
                peak_rss_mb=cost.peak_rss_mb,
                detail=f"wall clock {statistics.median(m['step_us']):.1f} µs; reset "
                f"{statistics.median(m['reset_us']):.0f} µs; {m['episodes']} episodes per timing",
                n_tracks=n,
                **{k: m[k] for k in ("observation", "reward_source", "step_us", "reset_us", "episodes")},
            ))
    return rows


def task_env_step(run: str, steps: int, repeats: int) -> dict[str, Any]:
    """µs per env.step (random actions; resets timed apart) per observation mode and reward source."""
    from envs.env_config import REWARD_SOURCES, RewardSource
    from envs.music_env import EnvConfig, MusicRecEnv
    from envs.observation import Observation
    from envs.world import World
    from music_rl.bench.sizes import OBSERVATIONS

    world = World.load(Path(run) / "world")
    measurements = []
    for observation in OBSERVATIONS:
        for source in REWARD_SOURCES:
            env = MusicRecEnv(world, EnvConfig(observation=Observation(observation),
                                               reward_source=RewardSource(source)))
            assert isinstance(env.action_space, Discrete)  # env.action=discrete (the default)
            actions = np.random.default_rng(0).integers(env.action_space.n, size=steps).tolist()
            env.reset(seed=0)
            time_steps(env, actions[: steps // 10])  # warm-up: the listener's session table, caches
            step_us, cpu_us, reset_us, episodes = [], [], [], 0
            for _ in range(repeats):
                wall, cpu, reset, episodes = time_steps(env, actions)
                step_us.append(wall)
                cpu_us.append(cpu)
                reset_us.append(reset)
            measurements.append({"observation": observation, "reward_source": source, "step_us": step_us,
                                 "cpu_us": cpu_us, "reset_us": reset_us, "episodes": episodes})
    return {"measurements": measurements}


def time_steps(env: Any, actions: list[int]) -> tuple[float, float, float, int]:
    """Step ``env`` through ``actions``: µs per step without resets (wall, CPU), µs per reset, episodes."""
    clock, step, reset = time.perf_counter, env.step, env.reset
    in_resets, in_resets_cpu, episodes = 0.0, 0.0, 0
    start, start_cpu = clock(), time.thread_time()
    for a in actions:
        _, _, terminated, truncated, _ = step(a)
        if terminated or truncated:
            t0, c0 = clock(), time.thread_time()
            reset()
            in_resets += clock() - t0
            in_resets_cpu += time.thread_time() - c0
            episodes += 1
    total, total_cpu = clock() - start, time.thread_time() - start_cpu
    per_step = 1e6 / len(actions)
    return ((total - in_resets) * per_step, (total_cpu - in_resets_cpu) * per_step,
            in_resets / max(episodes, 1) * 1e6, episodes)
