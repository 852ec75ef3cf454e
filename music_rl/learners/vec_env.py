"""SB3 VecEnv for MusicRec-v0: ``vectorized`` (the sessions' MusicRecEnvs stepped in one loop into
preallocated numpy buffers).

SB3's ``DummyVecEnv`` over ``Monitor``-wrapped envs costs about as much per step as the env itself: the
Monitor layer, a ``deepcopy`` of every info dict and of the observation buffer on every step. MusicRecEnv
returns a fresh observation array and a fresh info dict on every step, so none of those copies is needed.
:class:`SessionVecEnv` steps the sessions in a plain loop, writes observations, rewards and dones into
numpy buffers and keeps Monitor's episode statistics itself (``info["episode"] = {"r", "l", "t"}`` at the
end of an episode, as SB3's logger and callbacks expect).

With the same seed it produces exactly the transitions of ``DummyVecEnv([Monitor(MusicRecEnv)] * n)``
(observations, rewards, dones and infos, apart from the wall-clock ``"t"``). Selected with
``ppo.vec_env=vectorized``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.env_util import is_wrapped
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

from envs.music_env import EnvConfig, MusicRecEnv
from envs.world import World


class SessionVecEnv(VecEnv):
    """``len(envs)`` MusicRec sessions behind the SB3 VecEnv interface, stepped in one loop (see module doc).

    Args:
        envs: distinct env instances with identical spaces, unwrapped (episode statistics are kept here).
    """

    def __init__(self, envs: Sequence[MusicRecEnv]) -> None:
        if not envs:
            raise ValueError("SessionVecEnv needs at least one env")
        if len({id(e) for e in envs}) != len(envs):
            raise ValueError("SessionVecEnv needs distinct env instances, one per session")
        self.envs = list(envs)
        first = self.envs[0]
        super().__init__(len(self.envs), first.observation_space, first.action_space)
        space = first.observation_space
        self._obs = np.zeros((self.num_envs, *space.shape), dtype=space.dtype)
        self._rewards = np.zeros(self.num_envs, dtype=np.float32)
        self._dones = np.zeros(self.num_envs, dtype=bool)
        self._returns = [0.0] * self.num_envs
        self._lengths = [0] * self.num_envs
        self._actions: list[Any] = []
        self._t_start = time.time()
        self.metadata = first.metadata

    def reset(self) -> np.ndarray:
        """Reset every session (with the seeds and options set by :meth:`seed` / ``set_options``, once)."""
        for i, env in enumerate(self.envs):
            options = {"options": self._options[i]} if self._options[i] else {}
            self._obs[i], self.reset_infos[i] = env.reset(seed=self._seeds[i], **options)
            self._returns[i], self._lengths[i] = 0.0, 0
        self._reset_seeds()
        self._reset_options()
        return self._obs.copy()

    def step_async(self, actions: np.ndarray) -> None:
        """Store the actions of the next :meth:`step_wait` (one per session: an index, or a latent point)."""
        shape = self.action_space.shape or ()  # never None: a Discrete's is (), a Box's its own
        self._actions = np.asarray(actions).reshape(self.num_envs, *shape).tolist()

    def step_wait(self) -> VecEnvStepReturn:
        """Step every session; a finished one is reset at once (its last observation in the info)."""
        obs_buf, rewards, dones = self._obs, self._rewards, self._dones
        returns, lengths = self._returns, self._lengths
        infos: list[dict[str, Any]] = []
        for i, (env, action) in enumerate(zip(self.envs, self._actions, strict=True)):
            obs, reward, terminated, truncated, info = env.step(action)
            returns[i] += float(reward)
            lengths[i] += 1
            done = terminated or truncated
            info["TimeLimit.truncated"] = truncated and not terminated
            if done:
                info["episode"] = {
                    "r": round(returns[i], 6),
                    "l": lengths[i],
                    "t": round(time.time() - self._t_start, 6),
                }
                info["terminal_observation"] = obs
                obs, self.reset_infos[i] = env.reset()
                returns[i], lengths[i] = 0.0, 0
            obs_buf[i] = obs
            rewards[i] = reward
            dones[i] = done
            infos.append(info)
        return obs_buf.copy(), rewards.copy(), dones.copy(), infos

    def close(self) -> None:
        """Close every env."""
        for env in self.envs:
            env.close()

    def _targets(self, indices: VecEnvIndices) -> Iterable[MusicRecEnv]:
        return (self.envs[i] for i in self._get_indices(indices))

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """An attribute of each (selected) env."""
        return [getattr(env, attr_name) for env in self._targets(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute of each (selected) env."""
        for env in self._targets(indices):
            setattr(env, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        """Call a method of each (selected) env."""
        return [getattr(env, method_name)(*method_args, **method_kwargs) for env in self._targets(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """Whether each (selected) env is wrapped in ``wrapper_class`` (never in Monitor: see the class)."""
        return [is_wrapped(env, wrapper_class) for env in self._targets(indices)]


def session_vec_env(
    world: World, env_cfg: EnvConfig, listener_ids: Sequence[int] | None, n_envs: int, seed: int
) -> SessionVecEnv:
    """``n_envs`` MusicRec-v0 sessions over one world in a :class:`SessionVecEnv`, seeded from ``seed``.

    The counterpart of :func:`music_rl.learners.ppo.make_vec_env` for ``ppo.vec_env=vectorized``: env ``i`` is seeded
    with ``seed + i`` at the first reset, as SB3 seeds its own VecEnvs.
    """
    venv = SessionVecEnv([MusicRecEnv(world, env_cfg, listener_ids=listener_ids) for _ in range(n_envs)])
    venv.seed(seed)
    return venv
