"""SB3 VecEnvs for MusicRec-v0: ``batched`` (every session stepped at once with numpy) and ``vectorized``
(the sessions' MusicRecEnvs stepped in one loop into preallocated numpy buffers).

:class:`BatchedVecEnv` puts :class:`envs.session_batch.SessionBatch` behind the VecEnv interface: one step
of all sessions is a few dozen numpy calls, whatever the number of sessions, and its infos carry the
listener's expected rewards (``expected_reward``, ``oracle_expected_reward``) for the training logs.
Selected with ``ppo.vec_env=batched``; the default, ``vectorized``, is faster with fewer than a few dozen sessions.

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
from gymnasium import spaces
from stable_baselines3.common.env_util import is_wrapped
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

from envs.music_env import EnvConfig, MusicRecEnv
from envs.session_batch import SessionBatch
from envs.world import World


class BatchedVecEnv(VecEnv):
    """A :class:`envs.session_batch.SessionBatch` behind the SB3 VecEnv interface (see the module docstring).

    Keeps Monitor's episode statistics (``info["episode"]``), resets finished sessions at once (their last
    observation in ``info["terminal_observation"]``) and marks time-limit ends (``TimeLimit.truncated``).
    :meth:`seed` seeds the batch's one generator from the seeds SB3 hands out (one per env).
    """

    def __init__(self, batch: SessionBatch) -> None:
        self.batch = batch
        space = batch.setup.observation_space
        super().__init__(batch.n, space, spaces.Discrete(batch.setup.k))
        self._returns = np.zeros(batch.n)
        self._lengths = np.zeros(batch.n, dtype=np.int64)
        self._actions = np.zeros(batch.n, dtype=np.int64)
        self._track_ids = batch.world.track_ids()
        self._t_start = time.time()
        self.metadata = {"render_modes": []}

    def reset(self) -> np.ndarray:
        """Start every session (with the seeds and options set by :meth:`seed` / ``set_options``, once)."""
        if any(s is not None for s in self._seeds):
            self.batch.seed([0 if s is None else int(s) for s in self._seeds])
        default = self.batch.cfg.start_track
        starts = [(o or {}).get("start_track", default) for o in self._options]  # as MusicRecEnv.reset reads it
        self.batch.reset(np.arange(self.num_envs), starts)
        self._returns[:] = 0.0
        self._lengths[:] = 0
        self.reset_infos = [self._reset_info(i) for i in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        return self.batch.obs.copy()

    def _reset_info(self, i: int) -> dict[str, Any]:
        track = int(self.batch.track[i])
        return {"track": track, "track_id": self._track_ids[track], "listener": int(self.batch.listeners.listener[i]),
                "candidates": self.batch.candidates[i].copy()}

    def step_async(self, actions: np.ndarray) -> None:
        """Store the actions of the next :meth:`step_wait`."""
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        """Step every session; finished ones are reset at once (their last observation in the info)."""
        out = self.batch.step(self._actions)
        self._returns += out.reward
        self._lengths += 1
        dones = out.terminated | out.truncated
        ids = self._track_ids
        columns = zip(out.tracks.tolist(), out.pct.tolist(), out.liked.tolist(), out.raw_reward.tolist(),
                      out.expected_reward.tolist(), out.oracle_expected_reward.tolist(), out.listener.tolist(),
                      out.candidates, (out.truncated & ~out.terminated).tolist(), strict=True)
        infos = [{"track": t, "track_id": ids[t], "percentage_listened": pct, "liked": liked, "reward": raw,
                  "expected_reward": exp, "oracle_expected_reward": best, "candidates": cands, "listener": who,
                  "TimeLimit.truncated": cut}
                 for t, pct, liked, raw, exp, best, who, cands, cut in columns]
        done = np.flatnonzero(dones)
        if done.size:
            elapsed = round(time.time() - self._t_start, 6)
            for i in done.tolist():
                infos[i]["episode"] = {"r": round(float(self._returns[i]), 6), "l": int(self._lengths[i]),
                                       "t": elapsed}
                infos[i]["terminal_observation"] = self.batch.obs[i].copy()
            self.batch.reset(done)
            for i in done.tolist():
                self.reset_infos[i] = self._reset_info(i)
            self._returns[done] = 0.0
            self._lengths[done] = 0
        return self.batch.obs.copy(), out.reward.astype(np.float32), dones, infos

    def close(self) -> None:
        """Nothing to release."""

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """An attribute of the batch, once per (selected) env (the sessions share one batch object)."""
        return [getattr(self.batch, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute of the batch (shared by every session)."""
        setattr(self.batch, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        """Not available: the sessions are rows of one batch, not env objects."""
        raise AttributeError(f"BatchedVecEnv has no per-session env to call {method_name!r} on "
                             "(use ppo.vec_env=vectorized for MusicRecEnv objects)")

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """Never wrapped (episode statistics are kept here)."""
        return [False for _ in self._get_indices(indices)]


def batched_vec_env(
    world: World, env_cfg: EnvConfig, listener_ids: Sequence[int] | None, n_envs: int, seed: int
) -> BatchedVecEnv:
    """``n_envs`` MusicRec-v0 sessions over one world in a :class:`BatchedVecEnv`, seeded from ``seed``."""
    venv = BatchedVecEnv(SessionBatch(world, env_cfg, n_envs, listener_ids=listener_ids))
    venv.seed(seed)
    return venv


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
        self._actions: list[int] = []
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
        """Store the actions of the next :meth:`step_wait`."""
        self._actions = np.asarray(actions).reshape(self.num_envs).tolist()

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

    The counterpart of :func:`agents.ppo.make_vec_env` for ``ppo.vec_env=vectorized``: env ``i`` is seeded
    with ``seed + i`` at the first reset, as SB3 seeds its own VecEnvs.
    """
    venv = SessionVecEnv([MusicRecEnv(world, env_cfg, listener_ids=listener_ids) for _ in range(n_envs)])
    venv.seed(seed)
    return venv
