"""SB3 PPO wiring: the PPO config group, vectorised envs, the model.

With ``env.action=discrete`` the actor is the candidate scorer (:mod:`music_rl.learners.policies`) or SB3's MlpPolicy
over Discrete(k). With ``env.action=latent`` it is a diagonal Gaussian over the point (SB3's MlpPolicy over the
same observation): ``ppo.policy=candidate_scorer`` (the default) gives it the scorer's hidden widths
(``ppo.scorer_arch``) and the critic ``ppo.net_arch``, a network of the candidate scorer's size reading the
same observation, so that comparing the two formulations compares the actions rather than the networks;
``ppo.policy=mlp`` is SB3's MlpPolicy with ``ppo.net_arch`` for both, as with discrete.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import gymnasium as gym
from stable_baselines3 import PPO
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from envs.music_env import EnvConfig, MusicRecEnv
from envs.world import World
from music_rl.core.errors import ConfigError, require
from music_rl.learners.policies import CandidateScorerPolicy, scorer_kwargs
from music_rl.learners.vec_env import session_vec_env


class PolicyName(StrEnum):
    """The actor-critic networks (:func:`policy_spec`)."""

    candidate_scorer = "candidate_scorer"
    mlp = "mlp"


class VecEnvKind(StrEnum):
    """How the training sessions are stepped (:func:`make_vec_env`)."""

    vectorized = "vectorized"
    dummy = "dummy"
    subproc = "subproc"


class LRSchedule(StrEnum):
    """How PPO's learning rate moves over training."""

    constant = "constant"
    linear = "linear"


@dataclass(frozen=True)
class LinearDecay:
    """A learning rate decaying linearly from ``initial`` to 0 (SB3 calls a schedule with the share of training
    left, from 1 to 0); a class, so a saved model unpickles it by name."""

    initial: float

    def __call__(self, progress_remaining: float) -> float:
        """The learning rate with ``progress_remaining`` of training left."""
        return self.initial * progress_remaining


@dataclass
class PPOConfig:
    """Every PPO hyperparameter (config group ``ppo``).

    The defaults reach v1's quality (``+experiment=defaults_v1``) in about a third of its PPO time: fewer
    epochs over larger minibatches at a higher learning rate, 16 sessions per rollout
    (docs/results/time-to-quality.md)."""

    policy: PolicyName = PolicyName.candidate_scorer
    """candidate_scorer: one shared network scores every candidate (permutation-equivariant); with
    env.action=latent, a Gaussian actor of the scorer's widths over the same observation | mlp: SB3's stock
    MlpPolicy, kept for comparison (the only choice with env.observation=seed and env.action=discrete)"""
    total_timesteps: int = 400_000
    """environment steps of training"""
    n_envs: int = 16
    """sessions stepped in parallel"""
    vec_env: VecEnvKind = VecEnvKind.vectorized
    """vectorized: MusicRecEnvs in one loop, no per-step copies (the same transitions as dummy) | dummy: SB3's
    DummyVecEnv over Monitor | subproc: SB3's SubprocVecEnv"""
    n_steps: int = 256
    """steps per env per rollout"""
    batch_size: int = 512
    """minibatch size of an update"""
    n_epochs: int = 5
    """passes over a rollout per update"""
    learning_rate: float = 1e-3
    """Adam learning rate (the initial one with lr_schedule=linear)"""
    lr_schedule: LRSchedule = LRSchedule.constant
    """constant | linear: decays linearly to 0 over total_timesteps (from a resume's own start on resume)"""
    gamma: float = 0.9
    """discount factor"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    clip_range: float = 0.2
    """PPO's clipping of the probability ratio"""
    ent_coef: float = 0.01
    """entropy bonus"""
    vf_coef: float = 0.5
    """weight of the value loss"""
    max_grad_norm: float = 0.5
    """gradient clipping"""
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    """hidden widths of the critic (and of the actor of mlp)"""
    scorer_arch: list[int] = field(default_factory=lambda: [64, 64])
    """hidden widths of the shared candidate scorer"""
    checkpoint_freq: int = 50_000
    """save checkpoints/<algo>_<n>_steps.zip every this many steps (resume=true continues from the newest)"""
    progress_bar: bool = True
    """SB3's progress bar while training"""

    def validate(self, group: str = "ppo") -> None:
        """Raise :class:`ConfigError` naming the first bad ``<group>.*`` key, its value and what is allowed
        (``group``: ppo, or recurrent_ppo, whose config extends this one)."""
        def key(name: str) -> tuple[str, Any]:
            return f"{group}.{name}", getattr(self, name)

        rollout = self.n_steps * self.n_envs
        require([
            *((*key(k), getattr(self, k) >= 1, "must be an integer >= 1")
              for k in ("total_timesteps", "n_envs", "n_steps", "batch_size", "n_epochs")),
            (*key("batch_size"), self.batch_size <= rollout,
             f"must be <= {group}.n_steps * {group}.n_envs = {rollout}"),
            (*key("learning_rate"), 0 < self.learning_rate <= 1, "must be in (0, 1]"),
            *((*key(k), 0 <= getattr(self, k) <= 1, "must be in [0, 1]") for k in ("gamma", "gae_lambda")),
            (*key("clip_range"), 0 < self.clip_range <= 10, "must be in (0, 10]"),
            *((*key(k), 0 <= getattr(self, k) <= 1e3, "must be in [0, 1000]") for k in ("ent_coef", "vf_coef")),
            (*key("max_grad_norm"), 0 < self.max_grad_norm <= 1e6, "must be in (0, 1e6]"),
            *((f"{group}.{k}", list(getattr(self, k)), all(w >= 1 for w in getattr(self, k)),
               "must be a list of positive layer widths") for k in ("net_arch", "scorer_arch")),
            (*key("checkpoint_freq"), self.checkpoint_freq >= 1, "must be an integer >= 1"),
        ])


POLICIES: tuple[str, ...] = tuple(PolicyName)
VEC_ENVS: tuple[str, ...] = tuple(VecEnvKind)


def make_vec_env(
    world: World, env_cfg: EnvConfig, listener_ids: Sequence[int] | None, n_envs: int, vec_env: str, seed: int
) -> VecEnv:
    """``n_envs`` sessions of MusicRec-v0 over one world, seeded from ``seed``.

    ``vec_env`` (:data:`VEC_ENVS`): ``vectorized`` (:class:`music_rl.learners.vec_env.SessionVecEnv`, MusicRecEnvs in
    one loop, no per-step copies; the same transitions as ``dummy``), ``dummy`` (SB3's DummyVecEnv over Monitor)
    or ``subproc`` (SubprocVecEnv).
    """
    if vec_env not in VEC_ENVS:
        raise ConfigError(f"ppo.vec_env={vec_env!r}: must be one of {', '.join(VEC_ENVS)}")
    if vec_env == "vectorized":
        return session_vec_env(world, env_cfg, listener_ids, n_envs, seed)

    def factory() -> gym.Env:
        return Monitor(MusicRecEnv(world, env_cfg, listener_ids=listener_ids))

    cls = SubprocVecEnv if vec_env == "subproc" else DummyVecEnv
    venv = cls([factory] * n_envs)
    venv.seed(seed)
    return venv


class ActorCriticGroup(Protocol):
    """What :func:`policy_spec` reads of a config group (``ppo``, ``a2c``)."""

    policy: PolicyName
    net_arch: list[int]
    scorer_arch: list[int]


def policy_spec(
    cfg: ActorCriticGroup, env_cfg: EnvConfig, latent_dim: int, n_features: int, history_encoder: str = "pooled"
) -> tuple[type | str, dict[str, Any]]:
    """The SB3 policy class and its kwargs for ``<group>.policy`` (ppo, a2c) and ``env.action`` (``n_features``:
    features per track; ``history_encoder``: the listener observation's,
    :data:`music_rl.learners.policies.HISTORY_ENCODERS`)."""
    if cfg.policy == "mlp":
        return "MlpPolicy", {"net_arch": list(cfg.net_arch)}
    if env_cfg.action == "latent":  # the candidate scorer's counterpart for a point (module docstring)
        return "MlpPolicy", {"net_arch": {"pi": list(cfg.scorer_arch), "vf": list(cfg.net_arch)}}
    kwargs = scorer_kwargs(env_cfg, latent_dim, n_features, cfg.scorer_arch, history_encoder)
    return CandidateScorerPolicy, {**kwargs, "net_arch": list(cfg.net_arch)}


def build_model(cfg: PPOConfig, env_cfg: EnvConfig, venv: VecEnv, world: World, seed: int,
                history_encoder: str = "pooled") -> PPO:
    """A fresh SB3 PPO with every hyperparameter from ``cfg`` (``history_encoder``: :func:`policy_spec`)."""
    policy, policy_kwargs = policy_spec(cfg, env_cfg, world.latents.shape[1], world.features.shape[1],
                                        history_encoder)
    model = PPO(
        policy,
        venv,
        n_steps=cfg.n_steps,
        batch_size=cfg.batch_size,
        n_epochs=cfg.n_epochs,
        learning_rate=LinearDecay(cfg.learning_rate) if cfg.lr_schedule == LRSchedule.linear else cfg.learning_rate,
        gamma=cfg.gamma,
        gae_lambda=cfg.gae_lambda,
        clip_range=cfg.clip_range,
        ent_coef=cfg.ent_coef,
        vf_coef=cfg.vf_coef,
        max_grad_norm=cfg.max_grad_norm,
        policy_kwargs=policy_kwargs,
        seed=seed,
        device="cpu",
        verbose=0,
    )
    model.set_logger(Logger(None, []))  # silent until a run sets its own (SB3's default makes /tmp/SB3-<time>/)
    return model

