"""SB3 A2C wiring (``algo=a2c``): the config group ``a2c`` and the model.

A2C is the synchronous advantage actor-critic: one gradient step per short rollout (``a2c.n_steps`` steps of each
of ``a2c.n_envs`` sessions), no clipping, no epochs. Its actor-critic is PPO's
(:func:`music_rl.learners.ppo.policy_spec`): the candidate scorer over Discrete(k), SB3's MlpPolicy with
``a2c.policy=mlp``, a Gaussian over the point with ``env.action=latent``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stable_baselines3 import A2C
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import VecEnv

from envs.env_config import EnvConfig
from envs.world import World
from music_rl.core.errors import require
from music_rl.learners.ppo import PolicyName, VecEnvKind, policy_spec


@dataclass
class A2CConfig:
    """A2C's hyperparameters (config group ``a2c``)."""

    policy: PolicyName = PolicyName.candidate_scorer
    """candidate_scorer | mlp, as ppo.policy"""
    total_timesteps: int = 400_000
    """environment steps of training (as ppo.total_timesteps, and the same default)"""
    n_envs: int = 16
    """sessions stepped in parallel"""
    vec_env: VecEnvKind = VecEnvKind.vectorized
    """vectorized | dummy | subproc, as ppo.vec_env"""
    n_steps: int = 8
    """steps per env per rollout: one gradient step per n_steps * n_envs transitions"""
    learning_rate: float = 7e-4
    """RMSprop learning rate (SB3's A2C default)"""
    gamma: float = 0.9
    """discount factor (as ppo.gamma)"""
    gae_lambda: float = 0.95
    """GAE lambda (as ppo.gae_lambda)"""
    ent_coef: float = 0.01
    """entropy bonus (as ppo.ent_coef)"""
    vf_coef: float = 0.5
    """weight of the value loss"""
    max_grad_norm: float = 0.5
    """gradient clipping"""
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    """hidden widths of the critic (and of the actor of mlp)"""
    scorer_arch: list[int] = field(default_factory=lambda: [64, 64])
    """hidden widths of the shared candidate scorer"""
    checkpoint_freq: int = 50_000
    """save checkpoints/a2c_<n>_steps.zip every this many steps (resume=true continues from the newest)"""
    progress_bar: bool = True
    """SB3's progress bar while training"""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad ``a2c.*`` key, its value and what is allowed."""
        def key(name: str) -> tuple[str, Any]:
            return f"a2c.{name}", getattr(self, name)

        require([
            *((*key(k), getattr(self, k) >= 1, "must be an integer >= 1")
              for k in ("total_timesteps", "n_envs", "n_steps", "checkpoint_freq")),
            (*key("learning_rate"), 0 < self.learning_rate <= 1, "must be in (0, 1]"),
            *((*key(k), 0 <= getattr(self, k) <= 1, "must be in [0, 1]") for k in ("gamma", "gae_lambda")),
            *((*key(k), 0 <= getattr(self, k) <= 1e3, "must be in [0, 1000]") for k in ("ent_coef", "vf_coef")),
            (*key("max_grad_norm"), 0 < self.max_grad_norm <= 1e6, "must be in (0, 1e6]"),
            *((f"a2c.{k}", list(getattr(self, k)), all(w >= 1 for w in getattr(self, k)),
               "must be a list of positive layer widths") for k in ("net_arch", "scorer_arch")),
        ])


def build_a2c_model(cfg: A2CConfig, env_cfg: EnvConfig, venv: VecEnv, world: World, seed: int,
                    history_encoder: str = "pooled") -> A2C:
    """A fresh SB3 A2C with every hyperparameter from ``cfg`` (its policy: :func:`policy_spec`)."""
    policy, policy_kwargs = policy_spec(cfg, env_cfg, world.latents.shape[1], world.features.shape[1],
                                        history_encoder)
    model = A2C(policy, venv, n_steps=cfg.n_steps, learning_rate=cfg.learning_rate, gamma=cfg.gamma,
                gae_lambda=cfg.gae_lambda, ent_coef=cfg.ent_coef, vf_coef=cfg.vf_coef,
                max_grad_norm=cfg.max_grad_norm, policy_kwargs=policy_kwargs, seed=seed, device="cpu", verbose=0)
    model.set_logger(Logger(None, []))  # silent until a run sets its own (SB3's default makes /tmp/SB3-<time>/)
    return model
