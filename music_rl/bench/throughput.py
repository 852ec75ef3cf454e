"""(a) PPO training throughput on MusicRec-v0 relative to the same PPO on a null env.

Env steps per second of PPO on MusicRec-v0 divided by the same PPO on a null env with the same spaces in SB3's
stock wiring (DummyVecEnv over Monitor); both train side by side in one process, one rollout + update at a
time in ABBA order, so a ratio is robust on a noisy machine. MusicRec-v0 runs in each ``ppo.vec_env`` of
:attr:`Sizes.ppo_vec_envs <music_rl.bench.sizes.Sizes.ppo_vec_envs>`, in ``subproc`` for
:attr:`~music_rl.bench.sizes.Sizes.ppo_subproc` and with many envs (``vectorized``) for
:attr:`~music_rl.bench.sizes.Sizes.ppo_many`. The ratio is of steps per CPU second of the process (other processes'
load does not enter it), except for subproc (wall clock: its envs run in worker processes).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import gymnasium as gym
import numpy as np

from music_rl.bench.report import Target, make_row
from music_rl.bench.runner import Runner

PARAMS = ("observation", "n_envs", "vec_env", "policy", "steps", "real", "null", "real_cpu", "null_cpu")


def bench_a(r: Runner) -> list[dict[str, Any]]:
    """PPO throughput on MusicRec-v0 / on a null env, every observation mode, vec env and n_envs."""
    from music_rl.bench.sizes import OBSERVATIONS

    s = r.sizes
    variants = [(obs, n, vec) for obs in OBSERVATIONS for n in s.ppo_n_envs for vec in s.ppo_vec_envs]
    variants += [(obs, n, "subproc") for obs, n in s.ppo_subproc]
    variants += [(obs, n, "vectorized") for obs, n in s.ppo_many]
    res, _ = r.child(task_throughput, n=s.ppo_tracks, variants=variants, rollouts=s.ppo_rollouts, ppo=s.ppo,
                     repeats=r.repeats)
    return [_row(m) for m in res["measurements"]]


def _row(m: dict[str, Any]) -> dict[str, Any]:
    """The result row of one variant: the ratio per CPU second (in-process envs) or per wall second."""
    wall = [a / b for a, b in zip(m["real"], m["null"], strict=True)]
    cpu = [a / b for a, b in zip(m["real_cpu"], m["null_cpu"], strict=True)]
    by_cpu = m["vec_env"] != "subproc"
    rates = f"{statistics.median(m['real']):.0f} vs {statistics.median(m['null']):.0f} steps/s"
    other = f"wall clock {statistics.median(wall):.3f}: {rates}" if by_cpu else rates
    return make_row(
        "a",
        f"PPO steps/s MusicRec / null, {m['observation']}, n_envs={m['n_envs']}, {m['vec_env']} "
        f"({'CPU time' if by_cpu else 'wall clock'})",
        "×",
        cpu if by_cpu else wall,
        [Target("median", ">=", 0.95, "")],
        detail=f"{m['policy']}; {other}",
        clock="cpu" if by_cpu else "wall",
        **{k: m[k] for k in PARAMS},
    )


class NullEnv(gym.Env):
    """MusicRec-v0's spaces and session length with a trivially cheap step: the throughput baseline of (a).

    Observations are constant zeros, rewards zero; an episode is truncated after ``length`` steps.
    """

    def __init__(self, observation_space: gym.spaces.Box, action_space: gym.Space[Any], length: int) -> None:
        super().__init__()
        self.observation_space, self.action_space, self._length = observation_space, action_space, length
        self._obs = np.zeros(observation_space.shape, dtype=np.float32)
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode: the zero observation."""
        super().reset(seed=seed)
        self._t = 0
        return self._obs.copy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Zero reward, the zero observation; truncated after ``length`` steps."""
        self._t += 1
        return self._obs.copy(), 0.0, False, self._t >= self._length, {}


def task_throughput(n: int, variants: list[list[Any]], rollouts: int, ppo: dict[str, Any],
                    repeats: int) -> dict[str, Any]:
    """Steps/s of PPO.learn on MusicRec-v0 (each variant) and on the null env, per wall and CPU second.

    Both models train side by side, one rollout + update at a time in ABBA order; a repeat's rate is its
    median chunk's.
    """
    import torch
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    from envs.music_env import EnvConfig, MusicRecEnv
    from envs.world import synthetic_world
    from music_rl.learners.ppo import PolicyName, PPOConfig, build_model, make_vec_env

    torch.set_num_threads(1)  # as music_rl.training.pipeline.run
    world = synthetic_world(n, 5, seed=0)

    def venv(kind: str, vec_env: str, env_cfg: EnvConfig, n_env: int) -> Any:
        if kind == "null":
            probe = MusicRecEnv(world, env_cfg)
            spaces = (probe.observation_space, probe.action_space, env_cfg.session_length)
            null = DummyVecEnv([lambda: Monitor(NullEnv(*spaces))] * n_env)
            null.seed(0)
            return null
        return make_vec_env(world, env_cfg, None, n_env, vec_env, seed=0)

    measurements = []
    for observation, n_env, vec_env in variants:
        env_cfg = EnvConfig(observation=observation)
        policy = "mlp" if observation == "seed" else "candidate_scorer"
        cfg = PPOConfig(policy=PolicyName(policy), progress_bar=False, **ppo)
        chunk = cfg.n_steps * n_env  # one rollout and one update
        models = {kind: build_model(cfg, env_cfg, venv(kind, vec_env, env_cfg, n_env), world, seed=0)
                  for kind in ("real", "null")}
        for model in models.values():
            model.learn(chunk)  # warm-up: first calls, allocations
        rates: dict[str, list[float]] = {key: [] for key in ("real", "null", "real_cpu", "null_cpu")}
        for rep in range(repeats):
            wall: dict[str, list[float]] = {"real": [], "null": []}
            cpu: dict[str, list[float]] = {"real": [], "null": []}
            for i in range(rollouts):  # alternate chunk by chunk, ABBA: load changes hit both alike
                for kind in ("real", "null") if (rep * rollouts + i) % 2 == 0 else ("null", "real"):
                    w0, c0 = time.perf_counter(), time.process_time()
                    models[kind].learn(chunk, reset_num_timesteps=False)
                    wall[kind].append(time.perf_counter() - w0)
                    cpu[kind].append(time.process_time() - c0)
            for kind in ("real", "null"):
                rates[kind].append(chunk / statistics.median(wall[kind]))
                rates[f"{kind}_cpu"].append(chunk / statistics.median(cpu[kind]))
        for model in models.values():
            assert model.env is not None  # build_model was given a VecEnv
            model.env.close()
        measurements.append({"observation": observation, "n_envs": n_env, "vec_env": vec_env, "policy": policy,
                             "steps": chunk * rollouts, **rates})
    return {"measurements": measurements}
