"""Recurrent PPO (``algo=recurrent_ppo``, sb3-contrib's RecurrentPPO): an LSTM over the observation sequence of
a session, for the POMDP the design states (the listener's taste is hidden; a session's answers reveal it).

With ``env.action=discrete`` and ``recurrent_ppo.policy=candidate_scorer`` (the default) the actor is the
candidate scorer of :mod:`music_rl.learners.policies` with the actor LSTM's output as a context: each candidate
is scored by the one shared network from its own features and the LSTM's summary of the session so far
(:class:`RecurrentCandidateScorerPolicy`); the critic reads the critic LSTM's output and the observation. With
``recurrent_ppo.policy=mlp``, or ``env.action=latent`` (a Gaussian over the point), it is sb3-contrib's stock
MlpLstmPolicy (the latent one with the scorer's widths, as PPO's).

The LSTM state is carried through a session and reset at its start: by RecurrentPPO while training, by
:func:`recurrent_policy` in evaluation (a new session when the env has taken no step yet), by
:class:`LSTMState` when serving.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import VecEnv

from envs.env_config import EnvConfig
from envs.music_env import MusicRecEnv
from envs.world import World
from music_rl.core.errors import require
from music_rl.learners.policies import CandidateScorerExtractor, Policy, scorer_kwargs, scorer_layout, scores_as_logits
from music_rl.learners.ppo import LinearDecay, LRSchedule, PPOConfig


@dataclass
class RecurrentPPOConfig(PPOConfig):
    """RecurrentPPO's hyperparameters (config group ``recurrent_ppo``): PPO's keys, the same defaults, and the
    LSTM's."""

    lstm_hidden_size: int = 64
    """width of the LSTM's state (one LSTM for the actor, one for the critic)"""
    n_lstm_layers: int = 1
    """stacked LSTM layers"""

    def validate(self, group: str = "recurrent_ppo") -> None:
        """PPO's keys under ``recurrent_ppo.``, then the LSTM's."""
        super().validate(group)
        require([(f"recurrent_ppo.{k}", getattr(self, k), getattr(self, k) >= 1, "must be an integer >= 1")
                 for k in ("lstm_hidden_size", "n_lstm_layers")])


class RecurrentCandidateScorerPolicy(RecurrentActorCriticPolicy):
    """sb3-contrib's recurrent actor-critic whose actor is the candidate scorer, the LSTM's output a context of
    every candidate's score (module docstring); the parameters are :class:`CandidateScorerPolicy`'s and the
    LSTM's."""

    def __init__(self, observation_space: spaces.Space[Any], action_space: spaces.Space[Any], lr_schedule: Any, *,
                 latent_dim: int, k: int, history: int = 0, n_features: int = 0,
                 scorer_arch: Sequence[int] = (64, 64), listener: bool = False, history_encoder: str = "pooled",
                 **kwargs: Any) -> None:
        self.layout = scorer_layout(observation_space, action_space, latent_dim, k, history, n_features, listener)
        self.scorer_kwargs: dict[str, Any] = dict(
            latent_dim=latent_dim, k=k, history=history, n_features=n_features, scorer_arch=list(scorer_arch),
            listener=listener, history_encoder=history_encoder)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _build_mlp_extractor(self) -> None:
        critic_arch = self.net_arch["vf"] if isinstance(self.net_arch, dict) else list(self.net_arch or [])
        # SB3 annotates mlp_extractor as its MlpExtractor, but documents replacing it here by any module with
        # latent_dim_pi, latent_dim_vf, forward_actor and forward_critic, which the scorer is
        self.mlp_extractor = CandidateScorerExtractor(  # type: ignore[assignment]
            self.layout, self.scorer_kwargs["scorer_arch"], critic_arch, self.activation_fn,
            self.scorer_kwargs["history_encoder"], context=self.lstm_output_dim)

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        scores_as_logits(self)  # RecurrentActorCriticPolicy creates the optimizer after this

    # sb3-contrib declares _process_sequence a staticmethod, and calls it through self: this override is an
    # instance method with the same arguments, which mypy reads as another signature
    def _process_sequence(self, features: torch.Tensor, lstm_states: tuple[torch.Tensor, torch.Tensor],  # type: ignore[override]
                          episode_starts: torch.Tensor, lstm: torch.nn.LSTM) -> tuple[torch.Tensor, Any]:
        """The LSTM's output followed by the observation itself, which the scorer reads by part."""
        output, states = RecurrentActorCriticPolicy._process_sequence(features, lstm_states, episode_starts, lstm)
        return torch.cat([output, features], dim=-1), states

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), **self.scorer_kwargs}


def recurrent_policy_spec(cfg: RecurrentPPOConfig, env_cfg: EnvConfig, latent_dim: int, n_features: int,
                          history_encoder: str = "pooled") -> tuple[type | str, dict[str, Any]]:
    """The policy class and its kwargs for ``recurrent_ppo.policy`` and ``env.action`` (module docstring)."""
    lstm = {"lstm_hidden_size": cfg.lstm_hidden_size, "n_lstm_layers": cfg.n_lstm_layers}
    if cfg.policy == "mlp":
        return "MlpLstmPolicy", {**lstm, "net_arch": list(cfg.net_arch)}
    if env_cfg.action == "latent":
        return "MlpLstmPolicy", {**lstm, "net_arch": {"pi": list(cfg.scorer_arch), "vf": list(cfg.net_arch)}}
    return RecurrentCandidateScorerPolicy, {
        **lstm, **scorer_kwargs(env_cfg, latent_dim, n_features, cfg.scorer_arch, history_encoder),
        "net_arch": list(cfg.net_arch)}


def build_recurrent_model(cfg: RecurrentPPOConfig, env_cfg: EnvConfig, venv: VecEnv, world: World, seed: int,
                          history_encoder: str = "pooled") -> RecurrentPPO:
    """A fresh sb3-contrib RecurrentPPO with every hyperparameter from ``cfg``."""
    policy, policy_kwargs = recurrent_policy_spec(cfg, env_cfg, world.latents.shape[1], world.features.shape[1],
                                                  history_encoder)
    model = RecurrentPPO(
        policy, venv, n_steps=cfg.n_steps, batch_size=cfg.batch_size, n_epochs=cfg.n_epochs,
        learning_rate=LinearDecay(cfg.learning_rate) if cfg.lr_schedule == LRSchedule.linear else cfg.learning_rate,
        gamma=cfg.gamma, gae_lambda=cfg.gae_lambda, clip_range=cfg.clip_range, ent_coef=cfg.ent_coef,
        vf_coef=cfg.vf_coef, max_grad_norm=cfg.max_grad_norm, policy_kwargs=policy_kwargs, seed=seed, device="cpu",
        verbose=0)
    model.set_logger(Logger(None, []))  # silent until a run sets its own (SB3's default makes /tmp/SB3-<time>/)
    return model


class LSTMState:
    """A recurrent policy's actor state through one session: :meth:`distribution` of each step's observation,
    the state reset where ``start`` says a session begins."""

    def __init__(self, policy: RecurrentActorCriticPolicy) -> None:
        self.policy = policy
        self.state = (torch.zeros(policy.lstm_hidden_state_shape), torch.zeros(policy.lstm_hidden_state_shape))

    def distribution(self, obs: np.ndarray, start: bool) -> Any:
        """The action distribution (SB3's) of one observation, the state advanced past it."""
        with torch.inference_mode():
            obs_t = torch.as_tensor(np.asarray(obs), dtype=torch.float32).reshape(1, -1)
            dist, (hidden, cell) = self.policy.get_distribution(obs_t, self.state, torch.tensor([float(start)]))
        self.state = (hidden, cell)
        return dist

    def probabilities(self, obs: np.ndarray, start: bool) -> np.ndarray:
        """Candidate probabilities (k,) of one observation (Discrete(k))."""
        probs: np.ndarray = self.distribution(obs, start).distribution.probs[0].numpy().astype(np.float64)
        return probs

    def action(self, obs: np.ndarray, start: bool, deterministic: bool = True) -> Any:
        """The action of one observation: the most probable candidate (discrete), or the Gaussian's mean (or a
        draw) clipped to the box (latent)."""
        actions = self.distribution(obs, start).get_actions(deterministic=deterministic)[0].numpy()
        space = self.policy.action_space
        if isinstance(space, spaces.Box):
            return np.clip(actions, space.low, space.high)
        return int(actions)


def session_start(env: MusicRecEnv) -> bool:
    """Whether the env's session has taken no step yet (the LSTM state starts afresh)."""
    return env.steps_left == env.cfg.session_length


def recurrent_policy(policy: RecurrentActorCriticPolicy) -> Policy:
    """A recurrent policy as a deterministic evaluation policy, its LSTM state carried through each session and
    reset when a new one starts (:func:`session_start`)."""
    state = LSTMState(policy)

    def act(obs: np.ndarray, env: MusicRecEnv) -> Any:
        return state.action(obs, session_start(env))

    return act
