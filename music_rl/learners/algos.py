"""The learning algorithm of a run (top-level ``algo``): PPO; the other actor-critics A2C and RecurrentPPO
(:mod:`music_rl.learners.a2c`, :mod:`music_rl.learners.recurrent`); the value-based DQN and QR-DQN over the
candidates (:mod:`music_rl.learners.q_learning`, ``env.action=discrete`` only); or one of SB3's off-policy actors
for continuous actions, SAC and TD3 (``env.action=latent`` only, as the cited Spotify work used DDPG, TD3's
ancestor).

``algo=ppo`` (the default) is :mod:`music_rl.learners.ppo`; with a latent action its policy is a Gaussian over
the point. Each algorithm is configured by its group (``ppo``, ``a2c``, ``recurrent_ppo``, ``dqn``, ``qrdqn``,
``sac``, ``td3``; ``sac``/``td3`` here: :class:`SACConfig`, :class:`TD3Config`). Every algorithm trains on the
same vectorised sessions (``<algo>.n_envs`` MusicRecEnvs: SB3's off-policy algorithms take a VecEnv of several
envs, each ``env.step`` of it counting ``n_envs`` timesteps), saves ``<algo>.zip`` and is evaluated as
``policies.<algo>`` of ``metrics.json``, its network named in ``policies.<algo>.policy``
(:func:`policy_architecture`).

Cost. By default SB3's SAC and TD3 take one gradient step of 256 transitions per environment step: measured
here, a SAC gradient step costs about 25 times, a TD3 one (its actor updated every other step) about 13 times
what PPO spends per environment step (its 10 epochs over each rollout included), so SB3's defaults would cost
25 and 13 times the default PPO run. The defaults here take one gradient step every ``train_freq`` steps of the
8 sessions: SAC every 8 (one per 64 transitions), TD3 every 4 (one per 32), so that a run of the same
``total_timesteps`` costs about what PPO cost with the first version's update (+experiment=defaults_v1: 10
epochs of minibatches of 256), about three times today's default PPO per step (docs/results/time-to-quality.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
from gymnasium import spaces
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from sb3_contrib.qrdqn.policies import QRDQNPolicy
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.dqn.policies import DQNPolicy

from envs.music_env import MusicRecEnv
from music_rl.core.errors import require
from music_rl.learners.policies import CandidateScorerPolicy, Policy, candidate_distribution
from music_rl.learners.ppo import VecEnvKind
from music_rl.learners.q_learning import CandidateDQNPolicy, CandidateQRDQNPolicy, q_values
from music_rl.learners.recurrent import RecurrentCandidateScorerPolicy, recurrent_policy


class Algo(StrEnum):
    """The learning algorithms (top-level key ``algo``)."""

    ppo = "ppo"
    sac = "sac"
    td3 = "td3"
    dqn = "dqn"
    qrdqn = "qrdqn"
    recurrent_ppo = "recurrent_ppo"
    a2c = "a2c"


ALGOS: tuple[str, ...] = tuple(Algo)
DISCRETE_ONLY = (Algo.dqn, Algo.qrdqn)  # value-based: a Q-value per candidate, no continuous action
LATENT_ONLY = (Algo.sac, Algo.td3)  # continuous actors


@dataclass
class OffPolicyConfig:
    """What SAC and TD3 share (config groups ``sac`` and ``td3``)."""

    total_timesteps: int = 400_000
    """environment steps of training (as ppo.total_timesteps, and the same default)"""
    n_envs: int = 8
    """sessions stepped in parallel (one VecEnv step collects n_envs transitions)"""
    vec_env: VecEnvKind = VecEnvKind.vectorized
    """vectorized | dummy | subproc, as ppo.vec_env"""
    buffer_size: int = 100_000
    """transitions the replay buffer holds (the oldest are overwritten)"""
    learning_starts: int = 5_000
    """transitions collected with the initial policy before the first update"""
    batch_size: int = 256
    """transitions per gradient step"""
    train_freq: int = 8
    """VecEnv steps between updates (train_freq * n_envs transitions; module docstring: the cost)"""
    gradient_steps: int = 1
    """gradient steps per update"""
    learning_rate: float = 3e-4
    """Adam learning rate of the actor and the critics"""
    gamma: float = 0.9
    """discount factor (as ppo.gamma)"""
    tau: float = 0.005
    """soft update rate of the target networks"""
    actor_arch: list[int] = field(default_factory=lambda: [64, 64])
    """hidden widths of the actor (an MLP over the observation; the candidate scorer's widths)"""
    critic_arch: list[int] = field(default_factory=lambda: [64, 64])
    """hidden widths of each of the two Q-networks (observation and action in)"""
    checkpoint_freq: int = 50_000
    """save checkpoints/<algo>_<n>_steps.zip every this many steps (resume=true continues from the newest, with an
    empty replay buffer)"""
    progress_bar: bool = True
    """SB3's progress bar while training"""

    def validate(self, group: str) -> None:
        """Raise :class:`ConfigError` naming the first bad ``<group>.*`` key (``group``: sac or td3)."""
        def key(name: str) -> tuple[str, Any]:
            return f"{group}.{name}", getattr(self, name)

        require([
            *((*key(k), getattr(self, k) >= 1, "must be an integer >= 1")
              for k in ("total_timesteps", "n_envs", "buffer_size", "batch_size", "train_freq", "gradient_steps",
                        "checkpoint_freq")),
            (*key("learning_starts"), 0 <= self.learning_starts < self.total_timesteps,
             f"must be an integer in [0, {group}.total_timesteps = {self.total_timesteps}) (no update would be made)"),
            (*key("batch_size"), self.batch_size <= self.buffer_size, f"must be <= {group}.buffer_size = "
                                                                       f"{self.buffer_size}"),
            (*key("learning_rate"), 0 < self.learning_rate <= 1, "must be in (0, 1]"),
            (*key("gamma"), 0 <= self.gamma <= 1, "must be in [0, 1]"),
            (*key("tau"), 0 < self.tau <= 1, "must be in (0, 1]"),
            *((f"{group}.{k}", list(getattr(self, k)), all(w >= 1 for w in getattr(self, k)),
               "must be a list of positive layer widths") for k in ("actor_arch", "critic_arch")),
        ])


@dataclass
class SACConfig(OffPolicyConfig):
    """SAC's hyperparameters (config group ``sac``)."""

    ent_coef: Any = "auto"
    """entropy coefficient: auto (learnt towards a target entropy of -d) | a number > 0"""

    def validate(self, group: str = "sac") -> None:
        """The shared keys, then ``sac.ent_coef``."""
        super().validate(group)
        coef = self.ent_coef
        number = isinstance(coef, int | float) and not isinstance(coef, bool)
        require([("sac.ent_coef", coef, coef == "auto" or (number and 0 < coef <= 1e3),
                  "must be 'auto' or a number in (0, 1000]")])


@dataclass
class TD3Config(OffPolicyConfig):
    """TD3's hyperparameters (config group ``td3``)."""

    train_freq: int = 4
    """VecEnv steps between updates (its gradient steps cost about half SAC's: more of them for the same cost)"""
    action_noise: float = 0.1
    """standard deviation of the Gaussian exploration noise added to the actor's point (in [-1, 1] units)"""
    policy_delay: int = 2
    """critic updates per actor update"""
    target_policy_noise: float = 0.2
    """standard deviation of the noise smoothing the target policy"""
    target_noise_clip: float = 0.5
    """limit of that noise"""

    def validate(self, group: str = "td3") -> None:
        """The shared keys, then TD3's noises and delay."""
        super().validate(group)
        require([
            *((f"td3.{k}", getattr(self, k), 0 <= getattr(self, k) <= 10,
               "must be in [0, 10] (in units of the action box [-1, 1])")
              for k in ("action_noise", "target_policy_noise", "target_noise_clip")),
            ("td3.policy_delay", self.policy_delay, self.policy_delay >= 1, "must be an integer >= 1"),
        ])


def build_offpolicy_model(algo: str, cfg: OffPolicyConfig, venv: VecEnv, seed: int) -> SAC | TD3:
    """A fresh SB3 SAC or TD3 on ``venv`` with every hyperparameter from ``cfg``: an MLP actor over the observation
    (``actor_arch``) and two Q-networks (``critic_arch``)."""
    common: dict[str, Any] = dict(
        buffer_size=cfg.buffer_size, learning_starts=cfg.learning_starts, batch_size=cfg.batch_size,
        train_freq=(cfg.train_freq, "step"), gradient_steps=cfg.gradient_steps, learning_rate=cfg.learning_rate,
        gamma=cfg.gamma, tau=cfg.tau, seed=seed, device="cpu", verbose=0,
        policy_kwargs={"net_arch": {"pi": list(cfg.actor_arch), "qf": list(cfg.critic_arch)}})
    model: SAC | TD3
    if algo == Algo.sac:
        assert isinstance(cfg, SACConfig)
        model = SAC("MlpPolicy", venv, ent_coef=cfg.ent_coef, **common)
    else:
        assert isinstance(cfg, TD3Config) and isinstance(venv.action_space, spaces.Box)
        d = int(np.prod(venv.action_space.shape))
        noise = NormalActionNoise(np.zeros(d), np.full(d, cfg.action_noise))
        model = TD3("MlpPolicy", venv, action_noise=noise, policy_delay=cfg.policy_delay,
                    target_policy_noise=cfg.target_policy_noise, target_noise_clip=cfg.target_noise_clip, **common)
    model.set_logger(Logger(None, []))  # silent until a run sets its own (SB3's default makes /tmp/SB3-<time>/)
    return model


def model_policy(model: BaseAlgorithm) -> Policy:
    """A trained model as a deterministic evaluation policy (:func:`policy_actor` of its policy)."""
    return policy_actor(model.policy)


def policy_actor(policy: BasePolicy) -> Policy:
    """A model's policy network as a deterministic evaluation policy: the most probable candidate (an actor-critic
    over Discrete(k)), the candidate of highest Q-value (DQN, QR-DQN: the quantiles' mean), or the actor's point
    (latent: PPO's and A2C's Gaussian mean, SAC's squashed mean, TD3's actor); a recurrent policy carries its LSTM
    state through each session (:func:`music_rl.learners.recurrent.recurrent_policy`). The forward pass alone: no
    SB3 predict wrapping, but for a point."""
    if isinstance(policy, RecurrentActorCriticPolicy):
        return recurrent_policy(policy)
    if isinstance(policy, DQNPolicy | QRDQNPolicy):
        def best_value(obs: np.ndarray, env: MusicRecEnv) -> int:
            return int(np.argmax(q_values(policy, obs)))

        return best_value
    if isinstance(policy.action_space, spaces.Discrete):
        assert isinstance(policy, ActorCriticPolicy)

        def most_probable(obs: np.ndarray, env: MusicRecEnv) -> int:
            return int(np.argmax(candidate_distribution(policy, obs)))

        return most_probable

    def point(obs: np.ndarray, env: MusicRecEnv) -> np.ndarray:
        action, _ = policy.predict(obs, deterministic=True)
        return action

    return point


def policy_architecture(policy: BasePolicy) -> str:
    """What a model's network is (``metrics.json`` ``policies.<algo>.policy``): ``candidate_scorer`` (one shared
    network scores each candidate: PPO's and A2C's actor, DQN's and QR-DQN's Q-network, RecurrentPPO's actor with
    its LSTM context), ``mlp_lstm`` (sb3-contrib's stock recurrent MlpLstmPolicy) or ``mlp`` (an MLP over the whole
    observation: SB3's stock policies, and every actor of a latent action)."""
    if isinstance(policy, CandidateScorerPolicy | RecurrentCandidateScorerPolicy):
        return "candidate_scorer"
    if isinstance(policy, CandidateDQNPolicy | CandidateQRDQNPolicy):
        return "candidate_scorer"
    return "mlp_lstm" if isinstance(policy, RecurrentActorCriticPolicy) else "mlp"


def restart_replay(model: BaseAlgorithm, group: Any, timesteps: int) -> None:
    """Before continuing a loaded off-policy model (a resume, a fine-tune) for ``timesteps`` steps: its replay buffer
    starts empty (a model file holds none), and it collects ``min(<group>.learning_starts, timesteps // 2)``
    transitions before its updates resume (``group``: the model's :class:`OffPolicyConfig`). Nothing for PPO."""
    if isinstance(model, OffPolicyAlgorithm):
        assert model.replay_buffer is not None  # built with the model
        model.replay_buffer.reset()
        model.learning_starts = model.num_timesteps + min(group.learning_starts, timesteps // 2)
