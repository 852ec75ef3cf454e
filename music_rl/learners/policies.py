"""The candidate-scoring actor-critic: one shared network scores every candidate.

The env's observation (``candidates`` and ``history`` modes) is a flat vector::

    [z_current (d), z_cand_1 .. z_cand_k (k*d), x_current (F), x_cand_1 .. x_cand_k (k*F), history H*(d+1)]

(F = 11 track features, or 0.) The actor applies the same small MLP to every candidate, with input
``[z_cand, z_cand - z_current, x_cand, x_cand - x_current, history]``,
and the k scores are the logits of ``Discrete(k)``. The policy is therefore permutation-equivariant: it
scores a track by what it is, not by the slot it sits in. (A stock MLP over the concatenated observation
has to learn the same function k times, once per slot, and in practice learns only a preference for a
rank.) The critic is an ordinary MLP over the whole observation.

With ``env.observation=listener`` (``listener=True``) each candidate's input adds what the listener's log says
about it and about the current track (r̂, evidence, r_fit: :data:`envs.listener_log.ESTIMATES`), and an
encoding of the session's history rows ``[z, x, pct, liked, filled]`` (``history_encoder``): ``pooled``, one
shared MLP per row, averaged over the filled rows (a set encoding, the same for every candidate); ``pairwise``,
one shared MLP per (candidate, row) pair of ``[z_cand - z_row, x_cand - x_row, pct, liked]``, averaged over the
filled rows (how this candidate relates to what was heard); ``none``, no history. Either way the actor stays
permutation-equivariant over the candidates (and invariant to the order of the history rows).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn

from envs.listener_log import ESTIMATES


class HistoryEncoder(StrEnum):
    """How the candidate scorer reads the listener observation's history rows (module docstring)."""

    pooled = "pooled"
    pairwise = "pairwise"
    none = "none"


HISTORY_ENCODERS: tuple[str, ...] = tuple(HistoryEncoder)
ENCODER_WIDTH = 32  # the history encoding's width (listener observation)
N_ESTIMATES = len(ESTIMATES)  # per-track values of the listener's log in the listener observation


def _mlp(in_dim: int, arch: Sequence[int], activation: type[nn.Module]) -> tuple[nn.Sequential, int]:
    """An MLP of ``arch`` hidden layers; returns it and its output width."""
    layers: list[nn.Module] = []
    for width in arch:
        layers += [nn.Linear(in_dim, width), activation()]
        in_dim = width
    return nn.Sequential(*layers), in_dim


class CandidateScorerExtractor(nn.Module):
    """SB3 ``mlp_extractor`` whose actor latent is the k candidate scores (the logits)."""

    def __init__(
        self,
        latent_dim: int,
        k: int,
        history: int,
        n_features: int,
        scorer_arch: Sequence[int],
        critic_arch: Sequence[int],
        activation: type[nn.Module],
        listener: bool = False,
        history_encoder: str = "pooled",
    ) -> None:
        super().__init__()
        self.d, self.k, self.f = latent_dim, k, n_features
        self.listener, self.history_encoder, self.history = listener, history_encoder, history
        if listener:
            self.row_width = latent_dim + n_features + 3
            self.history_width = N_ESTIMATES * (1 + k) + history * self.row_width  # the estimate block, the rows
            extra = 2 * N_ESTIMATES + (ENCODER_WIDTH if history_encoder != "none" else 0)
            if history_encoder != "none":
                row_in = self.row_width if history_encoder == "pooled" else latent_dim + n_features + 2
                encoder, _ = _mlp(row_in, [ENCODER_WIDTH, ENCODER_WIDTH], activation)
                self.encoder = encoder
        else:
            self.history_width = extra = history * (latent_dim + 1)
        body, width = _mlp(2 * (latent_dim + n_features) + extra, scorer_arch, activation)
        self.score_head = nn.Linear(width, 1)
        self.scorer = nn.Sequential(body, self.score_head)
        obs_dim = (1 + k) * (latent_dim + n_features) + self.history_width
        self.critic, self.latent_dim_vf = _mlp(obs_dim, critic_arch, activation)
        self.latent_dim_pi = k

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (candidate logits, critic latent)."""
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        """Score every candidate with the shared scorer: (B, obs) -> (B, k) logits."""
        d, k, f = self.d, self.k, self.f
        current = features[:, :d].unsqueeze(1)  # (B, 1, d)
        cands = features[:, d : (1 + k) * d].reshape(-1, k, d)  # (B, k, d)
        parts = [cands, cands - current]
        end = (1 + k) * (d + f)
        if f:
            x_current = features[:, (1 + k) * d : (1 + k) * d + f].unsqueeze(1)  # (B, 1, f)
            x_cands = features[:, (1 + k) * d + f : end].reshape(-1, k, f)  # (B, k, f)
            parts += [x_cands, x_cands - x_current]
        if self.listener:
            parts += self._listener_parts(features[:, end:], cands, x_cands if f else None)
        elif self.history_width:
            parts.append(features[:, end:].unsqueeze(1).expand(-1, k, -1))
        return self.scorer(torch.cat(parts, dim=-1)).squeeze(-1)

    def _listener_parts(self, rest: torch.Tensor, cands: torch.Tensor,
                        x_cands: torch.Tensor | None) -> list[torch.Tensor]:
        """The listener observation's per-candidate inputs: r̂ and evidence (the candidate's, the current
        track's) and the history encoding (module docstring)."""
        k, d, f = self.k, self.d, self.f
        est = rest[:, :N_ESTIMATES * (1 + k)].reshape(-1, N_ESTIMATES, 1 + k)
        current = est[:, :, :1].transpose(1, 2).expand(-1, k, -1)  # (B, k, N_ESTIMATES)
        parts = [est[:, :, 1:].transpose(1, 2), current]
        if self.history_encoder == "none":
            return parts
        rows = rest[:, N_ESTIMATES * (1 + k):].reshape(-1, self.history, self.row_width)  # (B, H, w)
        mask = rows[:, :, -1:]  # (B, H, 1): 1 for a filled row
        count = mask.sum(dim=1).clamp(min=1.0)  # (B, 1)
        if self.history_encoder == "pooled":
            pooled = (self.encoder(rows) * mask).sum(dim=1) / count  # (B, E)
            return [*parts, pooled.unsqueeze(1).expand(-1, k, -1)]
        track = torch.cat([cands, x_cands], dim=-1) if x_cands is not None else cands  # (B, k, d + f)
        diff = track.unsqueeze(2) - rows[:, None, :, :d + f]  # (B, k, H, d + f)
        answers = rows[:, None, :, d + f:d + f + 2].expand(-1, k, -1, -1)  # (B, k, H, 2): pct, liked
        pairs = self.encoder(torch.cat([diff, answers], dim=-1)) * mask.unsqueeze(1)  # (B, k, H, E)
        return [*parts, pairs.sum(dim=2) / count.unsqueeze(1)]

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        """The critic's latent over the whole observation."""
        return self.critic(features)


class CandidateScorerPolicy(ActorCriticPolicy):
    """Actor-critic whose actor is a shared per-candidate scorer (see the module docstring).

    :param latent_dim: d, the width of one track's latent in the observation.
    :param k: the number of candidates (the action space size).
    :param history: the number of history rows in the observation (0 in ``candidates`` mode).
    :param n_features: features per candidate in the observation (11, or 0 without candidate features).
    :param scorer_arch: hidden layers of the shared scorer.
    :param listener: the observation is ``env.observation=listener``'s (r̂, evidence, answer rows).
    :param history_encoder: how the listener observation's history rows are encoded (:data:`HISTORY_ENCODERS`).
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Any,
        *,
        latent_dim: int,
        k: int,
        history: int = 0,
        n_features: int = 0,
        scorer_arch: Sequence[int] = (64, 64),
        listener: bool = False,
        history_encoder: str = "pooled",
        **kwargs: Any,
    ) -> None:
        expected = (1 + k) * (latent_dim + n_features) + (
            N_ESTIMATES * (1 + k) + history * (latent_dim + n_features + 3) if listener
            else history * (latent_dim + 1))
        if not isinstance(action_space, spaces.Discrete) or int(action_space.n) != k:
            raise ValueError(f"CandidateScorerPolicy needs Discrete({k}), got {action_space}")
        if observation_space.shape != (expected,):
            raise ValueError(
                f"CandidateScorerPolicy needs a flat observation of {expected} values "
                f"(d={latent_dim}, k={k}, features={n_features}, history={history}), "
                f"got shape {observation_space.shape}"
            )
        self.latent_dim, self.k, self.history, self.n_features = latent_dim, k, history, n_features
        self.scorer_arch = list(scorer_arch)
        self.listener, self.history_encoder = listener, history_encoder
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _build_mlp_extractor(self) -> None:
        critic_arch = self.net_arch["vf"] if isinstance(self.net_arch, dict) else list(self.net_arch or [])
        self.mlp_extractor = CandidateScorerExtractor(
            self.latent_dim,
            self.k,
            self.history,
            self.n_features,
            self.scorer_arch,
            critic_arch,
            self.activation_fn,
            self.listener,
            self.history_encoder,
        )

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        # The scores are the logits: no extra linear layer that would mix the candidate slots.
        self.action_net = nn.Identity()
        if self.ortho_init:  # near-uniform initial policy, as SB3 does for its action head
            nn.init.orthogonal_(self.mlp_extractor.score_head.weight, gain=0.01)
            nn.init.zeros_(self.mlp_extractor.score_head.bias)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            latent_dim=self.latent_dim,
            k=self.k,
            history=self.history,
            n_features=self.n_features,
            scorer_arch=self.scorer_arch,
            listener=self.listener,
            history_encoder=self.history_encoder,
        )
        return data


def _latents(policy: ActorCriticPolicy, obs: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The actor's and the critic's inputs for a batch of observations (n, obs_dim)."""
    features = policy.extract_features(torch.as_tensor(obs, dtype=torch.float32))
    return features if isinstance(features, tuple) else (features, features)


def candidate_distributions(policy: ActorCriticPolicy, observations: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Candidate probabilities (n, k) of a batch of observations (n, obs_dim): the actor only, ``chunk`` rows
    per forward pass."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(observations), chunk):
            latent_pi = policy.mlp_extractor.forward_actor(_latents(policy, observations[start:start + chunk])[0])
            out.append(torch.softmax(policy.action_net(latent_pi), dim=-1).numpy().astype(np.float64))
    return np.concatenate(out)


def candidate_distribution(policy: ActorCriticPolicy, obs: np.ndarray) -> np.ndarray:
    """Candidate probabilities (k,) of one observation (the actor only)."""
    return candidate_distributions(policy, np.asarray(obs).reshape(1, -1))[0]


def candidate_probabilities(policy: ActorCriticPolicy, obs: np.ndarray) -> tuple[np.ndarray, float]:
    """Candidate probabilities (k,) and the critic's value of one observation, in one forward pass."""
    with torch.inference_mode():
        pi_features, vf_features = _latents(policy, np.asarray(obs).reshape(1, -1))
        latent_pi = policy.mlp_extractor.forward_actor(pi_features)
        latent_vf = policy.mlp_extractor.forward_critic(vf_features)
        probs = torch.softmax(policy.action_net(latent_pi), dim=-1)[0].numpy()
        value = float(policy.value_net(latent_vf)[0, 0])
    return probs.astype(np.float64), value


def sampling_policy(policy: ActorCriticPolicy, seed: int) -> Callable[[np.ndarray, Any], int]:
    """The policy as it explores: each candidate drawn with its probability (a generator seeded with ``seed``).
    An evaluation policy (``music_rl.evaluation.baselines.Policy``)."""
    rng = np.random.default_rng(seed)

    def act(obs: np.ndarray, env: Any) -> int:
        probs = candidate_distribution(policy, obs)
        return int(rng.choice(len(probs), p=probs / probs.sum()))

    return act
