"""DQN and QR-DQN (``algo=dqn``, ``algo=qrdqn``; ``env.action=discrete`` only): the action-head DQN, whose
Q-network is the candidate scorer.

The Q-network applies the candidate scorer of :mod:`music_rl.learners.policies` (one shared network over each
candidate's ``[z_cand, z_cand - z_current, x_cand, x_cand - x_current, history]``) and reads its k outputs as
the candidates' Q-values: Tomasi et al. (2023)'s action-head DQN, a value per track rather than per slot.
QR-DQN (sb3-contrib) scores ``qrdqn.n_quantiles`` quantiles of each candidate's return with the same scorer
(``(B, n_quantiles, k)``). ``<algo>.policy=mlp`` is SB3's stock MLP over the whole observation instead.

Cost. SB3's DQN takes a gradient step of ``batch_size`` transitions every ``train_freq`` VecEnv steps (each
``n_envs`` transitions); the defaults, one step of 256 per 32 transitions, spend per environment step about
what TD3's do (:mod:`music_rl.learners.algos`). Exploration is epsilon-greedy, epsilon decaying linearly from
``exploration_initial_eps`` to ``exploration_final_eps`` over the first ``exploration_fraction`` of training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from gymnasium import spaces
from sb3_contrib import QRDQN
from sb3_contrib.qrdqn.policies import QRDQNPolicy
from stable_baselines3 import DQN
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.dqn.policies import DQNPolicy
from torch import nn

from envs.env_config import EnvConfig
from envs.world import World
from music_rl.core.errors import require
from music_rl.learners.policies import CandidateScorerExtractor, scorer_kwargs, scorer_layout
from music_rl.learners.ppo import PolicyName, VecEnvKind


@dataclass
class DQNConfig:
    """DQN's hyperparameters (config group ``dqn``)."""

    policy: PolicyName = PolicyName.candidate_scorer
    """candidate_scorer: the Q-network is the shared candidate scorer (one Q-value per candidate, the action-head
    DQN) | mlp: SB3's MLP over the whole observation (dqn.net_arch)"""
    total_timesteps: int = 400_000
    """environment steps of training (as ppo.total_timesteps, and the same default)"""
    n_envs: int = 8
    """sessions stepped in parallel (one VecEnv step collects n_envs transitions)"""
    vec_env: VecEnvKind = VecEnvKind.vectorized
    """vectorized | dummy | subproc, as ppo.vec_env"""
    buffer_size: int = 100_000
    """transitions the replay buffer holds (the oldest are overwritten)"""
    learning_starts: int = 5_000
    """transitions collected with the initial (random) policy before the first update"""
    batch_size: int = 256
    """transitions per gradient step"""
    train_freq: int = 4
    """VecEnv steps between updates (train_freq * n_envs transitions)"""
    gradient_steps: int = 1
    """gradient steps per update"""
    learning_rate: float = 5e-4
    """Adam learning rate"""
    gamma: float = 0.9
    """discount factor (as ppo.gamma)"""
    target_update_interval: int = 2_000
    """environment steps between copies of the Q-network into its target"""
    exploration_fraction: float = 0.2
    """share of training over which epsilon decays from exploration_initial_eps to exploration_final_eps"""
    exploration_initial_eps: float = 1.0
    """epsilon (the probability of a random candidate) at the start"""
    exploration_final_eps: float = 0.05
    """epsilon after the decay"""
    max_grad_norm: float = 10.0
    """gradient clipping (SB3's DQN default)"""
    scorer_arch: list[int] = field(default_factory=lambda: [64, 64])
    """hidden widths of the shared candidate scorer (policy=candidate_scorer)"""
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    """hidden widths of the MLP Q-network (policy=mlp)"""
    checkpoint_freq: int = 50_000
    """save checkpoints/<algo>_<n>_steps.zip every this many steps (resume=true continues from the newest, with an
    empty replay buffer)"""
    progress_bar: bool = True
    """SB3's progress bar while training"""

    def validate(self, group: str = "dqn") -> None:
        """Raise :class:`ConfigError` naming the first bad ``<group>.*`` key (``group``: dqn or qrdqn)."""
        def key(name: str) -> tuple[str, Any]:
            return f"{group}.{name}", getattr(self, name)

        require([
            *((*key(k), getattr(self, k) >= 1, "must be an integer >= 1")
              for k in ("total_timesteps", "n_envs", "buffer_size", "batch_size", "train_freq", "gradient_steps",
                        "target_update_interval", "checkpoint_freq")),
            (*key("learning_starts"), 0 <= self.learning_starts < self.total_timesteps,
             f"must be an integer in [0, {group}.total_timesteps = {self.total_timesteps}) (no update would be made)"),
            (*key("batch_size"), self.batch_size <= self.buffer_size,
             f"must be <= {group}.buffer_size = {self.buffer_size}"),
            (*key("learning_rate"), 0 < self.learning_rate <= 1, "must be in (0, 1]"),
            (*key("gamma"), 0 <= self.gamma <= 1, "must be in [0, 1]"),
            *((*key(k), 0 <= getattr(self, k) <= 1, "must be in [0, 1]")
              for k in ("exploration_fraction", "exploration_initial_eps", "exploration_final_eps")),
            (*key("max_grad_norm"), 0 < self.max_grad_norm <= 1e6, "must be in (0, 1e6]"),
            *((f"{group}.{k}", list(getattr(self, k)), all(w >= 1 for w in getattr(self, k)),
               "must be a list of positive layer widths") for k in ("net_arch", "scorer_arch")),
        ])


@dataclass
class QRDQNConfig(DQNConfig):
    """QR-DQN's hyperparameters (config group ``qrdqn``): DQN's, and the number of quantiles."""

    n_quantiles: int = 25
    """quantiles of each candidate's return the network estimates (sb3-contrib's default is 200; the quantile
    loss costs n_quantiles^2 per transition)"""

    def validate(self, group: str = "qrdqn") -> None:
        """The shared keys, then ``qrdqn.n_quantiles``."""
        super().validate(group)
        require([("qrdqn.n_quantiles", self.n_quantiles, self.n_quantiles >= 1, "must be an integer >= 1")])


class CandidateQNetwork(BasePolicy):
    """The k candidates' Q-values from the shared candidate scorer: ``(B, k)``, or with ``n_quantiles`` their
    return quantiles ``(B, n_quantiles, k)`` (QR-DQN's layout). Takes SB3's QNetwork arguments and the candidate
    scorer's (:class:`music_rl.learners.policies.CandidateScorerPolicy`)."""

    def __init__(self, observation_space: spaces.Space[Any], action_space: spaces.Discrete,
                 features_extractor: BaseFeaturesExtractor, features_dim: int, net_arch: list[int] | None = None,
                 activation_fn: type[nn.Module] = nn.ReLU, normalize_images: bool = True,
                 n_quantiles: int | None = None, *, latent_dim: int, k: int, history: int = 0,
                 n_features: int = 0, scorer_arch: Sequence[int] = (64, 64), listener: bool = False,
                 history_encoder: str = "pooled") -> None:
        super().__init__(observation_space, action_space, features_extractor=features_extractor,
                         normalize_images=normalize_images)
        del features_dim, net_arch  # the scorer reads the observation's parts, not a flat feature vector
        layout = scorer_layout(observation_space, action_space, latent_dim, k, history, n_features, listener)
        self.n_quantiles = n_quantiles
        self.scorer = CandidateScorerExtractor(layout, scorer_arch, [], activation_fn, history_encoder,
                                               n_scores=n_quantiles or 1)

    def forward(self, obs: PyTorchObs) -> torch.Tensor:
        """Q-values (B, k), or quantiles (B, n_quantiles, k)."""
        scores = self.scorer.forward_scores(self.extract_features(obs, self.features_extractor))  # (B, k, S)
        return scores.squeeze(-1) if self.n_quantiles is None else scores.transpose(1, 2)

    def q_values(self, obs: PyTorchObs) -> torch.Tensor:
        """The candidates' Q-values (B, k): the quantiles' mean for QR-DQN."""
        out = self.forward(obs)
        return out if self.n_quantiles is None else out.mean(dim=1)

    def _predict(self, observation: PyTorchObs, deterministic: bool = True) -> torch.Tensor:
        return self.q_values(observation).argmax(dim=1).reshape(-1)


class CandidateDQNPolicy(DQNPolicy):
    """SB3's DQNPolicy whose Q-network (and its target) is a :class:`CandidateQNetwork`."""

    def __init__(self, observation_space: spaces.Space[Any], action_space: spaces.Discrete, lr_schedule: Any, *,
                 latent_dim: int, k: int, history: int = 0, n_features: int = 0,
                 scorer_arch: Sequence[int] = (64, 64), listener: bool = False, history_encoder: str = "pooled",
                 **kwargs: Any) -> None:
        self.scorer_kwargs: dict[str, Any] = dict(
            latent_dim=latent_dim, k=k, history=history, n_features=n_features, scorer_arch=list(scorer_arch),
            listener=listener, history_encoder=history_encoder)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    # SB3 annotates make_q_net as returning its QNetwork, which would build an unused MLP: the scorer is a
    # BasePolicy with QNetwork's interface (forward, _predict), so the override's return type differs
    def make_q_net(self) -> CandidateQNetwork:  # type: ignore[override]
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return CandidateQNetwork(**net_args, **self.scorer_kwargs).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), **self.scorer_kwargs}


class CandidateQRDQNPolicy(QRDQNPolicy):
    """sb3-contrib's QRDQNPolicy whose quantile network (and its target) is a :class:`CandidateQNetwork`."""

    def __init__(self, observation_space: spaces.Space[Any], action_space: spaces.Discrete, lr_schedule: Any, *,
                 latent_dim: int, k: int, history: int = 0, n_features: int = 0,
                 scorer_arch: Sequence[int] = (64, 64), listener: bool = False, history_encoder: str = "pooled",
                 **kwargs: Any) -> None:
        self.scorer_kwargs: dict[str, Any] = dict(
            latent_dim=latent_dim, k=k, history=history, n_features=n_features, scorer_arch=list(scorer_arch),
            listener=listener, history_encoder=history_encoder)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    # sb3-contrib annotates make_quantile_net as returning its QuantileNetwork (see make_q_net above)
    def make_quantile_net(self) -> CandidateQNetwork:  # type: ignore[override]
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return CandidateQNetwork(**net_args, **self.scorer_kwargs).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), **self.scorer_kwargs}


def q_values(policy: BasePolicy, obs: Any) -> Any:
    """The candidates' Q-values (k,) of one observation under a DQN or QR-DQN policy (its online network)."""
    net = policy.q_net if isinstance(policy, DQNPolicy) else cast(QRDQNPolicy, policy).quantile_net
    with torch.inference_mode():
        out = net(torch.as_tensor(obs, dtype=torch.float32).reshape(1, -1))
    return (out if out.ndim == 2 else out.mean(dim=1))[0].numpy().astype("float64")


def build_q_model(algo: str, cfg: DQNConfig, env_cfg: EnvConfig, venv: VecEnv, world: World, seed: int,
                  history_encoder: str = "pooled") -> DQN | QRDQN:
    """A fresh SB3 DQN (``algo=dqn``) or sb3-contrib QRDQN (``algo=qrdqn``) with every hyperparameter from ``cfg``:
    the candidate scorer as the Q-network, or SB3's MLP with ``<algo>.policy=mlp``."""
    quantile = algo == "qrdqn"
    policy_kwargs: dict[str, Any] = {"net_arch": list(cfg.net_arch)}
    if quantile:
        assert isinstance(cfg, QRDQNConfig)
        policy_kwargs["n_quantiles"] = cfg.n_quantiles
    policy: type | str = "MlpPolicy"
    if cfg.policy == PolicyName.candidate_scorer:
        policy = CandidateQRDQNPolicy if quantile else CandidateDQNPolicy
        policy_kwargs.update(scorer_kwargs(env_cfg, world.latents.shape[1], world.features.shape[1], cfg.scorer_arch,
                                           history_encoder))
    cls = QRDQN if quantile else DQN
    model = cls(policy, venv, buffer_size=cfg.buffer_size, learning_starts=cfg.learning_starts,
                batch_size=cfg.batch_size, train_freq=(cfg.train_freq, "step"), gradient_steps=cfg.gradient_steps,
                learning_rate=cfg.learning_rate, gamma=cfg.gamma, target_update_interval=cfg.target_update_interval,
                exploration_fraction=cfg.exploration_fraction, exploration_initial_eps=cfg.exploration_initial_eps,
                exploration_final_eps=cfg.exploration_final_eps, max_grad_norm=cfg.max_grad_norm,
                policy_kwargs=policy_kwargs, seed=seed, device="cpu", verbose=0)
    model.set_logger(Logger(None, []))  # silent until a run sets its own (SB3's default makes /tmp/SB3-<time>/)
    return model
