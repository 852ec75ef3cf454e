"""The candidate-scoring actor-critic: one shared network scores every candidate.

The env's observation (``candidates``, ``history`` and ``listener`` modes) is a flat vector whose parts the
policy reads by name, as the env writes them (:class:`envs.observation.ObservationLayout`): the current track's
latent ``z`` and features ``x`` (F = 11, or 0), the candidates' ``z_cands`` and ``x_cands``, the history rows
``hist``. The actor applies the same small MLP to every candidate, with input
``[z_cand, z_cand - z_current, x_cand, x_cand - x_current, history]``,
and the k scores are the logits of ``Discrete(k)``. The policy is therefore permutation-equivariant: it
scores a track by what it is, not by the slot it sits in. (A stock MLP over the concatenated observation
has to learn the same function k times, once per slot, and in practice learns only a preference for a
rank.) The critic is an ordinary MLP over the whole observation.

With ``env.observation=listener`` (``listener=True``) each candidate's input adds what the listener's log says
about it and about the current track (r̂, evidence, r_fit, pop, pop_sd: :data:`envs.listener_log.ESTIMATES`), and an
encoding of the session's history rows ``[z, x, pct, liked, filled]`` (``history_encoder``): ``pooled``, one
shared MLP per row, averaged over the filled rows (a set encoding, the same for every candidate); ``pairwise``,
one shared MLP per (candidate, row) pair of ``[z_cand - z_row, x_cand - x_row, pct, liked]``, averaged over the
filled rows (how this candidate relates to what was heard); ``none``, no history. Either way the actor stays
permutation-equivariant over the candidates (and invariant to the order of the history rows).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn

from envs.env_config import EnvConfig
from envs.music_env import MusicRecEnv
from envs.observation import Observation, ObservationLayout, ObservationViews


class HistoryEncoder(StrEnum):
    """How the candidate scorer reads the listener observation's history rows (module docstring)."""

    pooled = "pooled"
    pairwise = "pairwise"
    none = "none"


HISTORY_ENCODERS: tuple[str, ...] = tuple(HistoryEncoder)
Policy = Callable[[np.ndarray, MusicRecEnv], Any]  # an evaluation policy: a candidate index (int), an env action,
# or a CatalogTrack (any track of the catalog: the catalog oracle)


@dataclass(frozen=True)
class CatalogTrack:
    """An evaluation policy's choice of any track of the catalog by its row, rather than of a candidate or an
    action (the catalog oracle, :func:`music_rl.evaluation.baselines.oracle_catalog_policy`)."""

    row: int
ENCODER_WIDTH = 32  # the history encoding's width (listener observation)


def _mlp(in_dim: int, arch: Sequence[int], activation: type[nn.Module]) -> tuple[nn.Sequential, int]:
    """An MLP of ``arch`` hidden layers; returns it and its output width."""
    layers: list[nn.Module] = []
    for width in arch:
        layers += [nn.Linear(in_dim, width), activation()]
        in_dim = width
    return nn.Sequential(*layers), in_dim


class CandidateScorerExtractor(nn.Module):
    """SB3 ``mlp_extractor`` whose actor latent is the k candidate scores (the logits); it reads the observation's
    parts by name (:class:`envs.observation.ObservationLayout`)."""

    def __init__(
        self,
        layout: ObservationLayout,
        scorer_arch: Sequence[int],
        critic_arch: Sequence[int],
        activation: type[nn.Module],
        history_encoder: str = "pooled",
        n_scores: int = 1,
        context: int = 0,
    ) -> None:
        super().__init__()
        self.layout, self.history_encoder, self.context = layout, history_encoder, context
        d, f, shapes = layout.d, layout.n_feat, layout.shapes()
        self.listener = "estimate" in shapes
        if self.listener:
            n_estimates = shapes["estimate"][0]
            extra = 2 * n_estimates + (ENCODER_WIDTH if history_encoder != "none" else 0)
            if history_encoder != "none":  # pooled: whole rows; pairwise: [z, x] differences and pct, liked
                row_in = layout.row_width if history_encoder == "pooled" else d + f + 2
                self.encoder, _ = _mlp(row_in, [ENCODER_WIDTH, ENCODER_WIDTH], activation)
        else:
            extra = layout.history * layout.row_width
        body, width = _mlp(2 * (d + f) + extra + context, scorer_arch, activation)
        self.score_head = nn.Linear(width, n_scores)
        self.scorer = nn.Sequential(body, self.score_head)
        self.critic, self.latent_dim_vf = _mlp(context + layout.width, critic_arch, activation)
        self.latent_dim_pi = layout.k

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (candidate logits, critic latent)."""
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        """Score every candidate with the shared scorer: (B, obs) -> (B, k) logits."""
        return self.forward_scores(features).squeeze(-1)

    def forward_scores(self, features: torch.Tensor) -> torch.Tensor:
        """Every candidate's ``n_scores`` outputs of the shared scorer: (B, [context,] obs) -> (B, k, n_scores)
        (a context, the first ``context`` columns, is appended to every candidate's input)."""
        ctx, features = features[:, :self.context], features[:, self.context:]
        obs = self.layout.views(features)
        current = obs.z.unsqueeze(1)  # (B, 1, d)
        parts = [obs.z_cands, obs.z_cands - current]
        if obs.x is not None:
            parts += [obs.x_cands, obs.x_cands - obs.x.unsqueeze(1)]
        if self.listener:
            parts += self._listener_parts(obs)
        elif obs.hist is not None:
            parts.append(obs.hist.flatten(1).unsqueeze(1).expand(-1, self.layout.k, -1))
        if self.context:
            parts.append(ctx.unsqueeze(1).expand(-1, self.layout.k, -1))
        scores: torch.Tensor = self.scorer(torch.cat(parts, dim=-1))  # a Module's call: Any
        return scores

    def _listener_parts(self, obs: ObservationViews) -> list[torch.Tensor]:
        """The listener observation's per-candidate inputs: r̂ and evidence (the candidate's, the current
        track's) and the history encoding (module docstring)."""
        k = self.layout.k
        est = obs.estimate  # (B, N_ESTIMATES, 1 + k)
        current = est[:, :, :1].transpose(1, 2).expand(-1, k, -1)  # (B, k, N_ESTIMATES)
        parts = [est[:, :, 1:].transpose(1, 2), current]
        if self.history_encoder == "none":
            return parts
        rows = self.layout.rows(obs.hist)  # (B, H, ·) each
        mask = rows.filled  # (B, H, 1): 1 for a filled row
        count = mask.sum(dim=1).clamp(min=1.0)  # (B, 1)
        if self.history_encoder == "pooled":
            pooled = (self.encoder(obs.hist) * mask).sum(dim=1) / count  # (B, E)
            return [*parts, pooled.unsqueeze(1).expand(-1, k, -1)]
        track, played = obs.z_cands, rows.z  # (B, k, d + f), (B, H, d + f)
        if obs.x is not None:
            track, played = torch.cat([track, obs.x_cands], dim=-1), torch.cat([played, rows.x], dim=-1)
        diff = track.unsqueeze(2) - played.unsqueeze(1)  # (B, k, H, d + f)
        answers = rows.answer.unsqueeze(1).expand(-1, k, -1, -1)  # (B, k, H, 2): pct, liked
        pairs = self.encoder(torch.cat([diff, answers], dim=-1)) * mask.unsqueeze(1)  # (B, k, H, E)
        return [*parts, pairs.sum(dim=2) / count.unsqueeze(1)]

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        """The critic's latent over the whole observation."""
        latent: torch.Tensor = self.critic(features)  # a Module's call: Any
        return latent


def scorer_kwargs(env_cfg: EnvConfig, latent_dim: int, n_features: int, scorer_arch: Sequence[int],
                  history_encoder: str = "pooled") -> dict[str, Any]:
    """The keyword arguments of a candidate scorer (:class:`CandidateScorerPolicy`, and the DQN, QRDQN and
    recurrent ones) for the env's observation (``n_features``: features per track, ``history_encoder``: the
    listener observation's, :data:`HISTORY_ENCODERS`)."""
    history = env_cfg.history if env_cfg.observation in ("history", "listener") else 0
    listener = {"listener": True, "history_encoder": history_encoder} if env_cfg.observation == "listener" else {}
    return {**listener, "latent_dim": latent_dim, "k": env_cfg.k, "history": history,
            "n_features": n_features if env_cfg.candidate_features else 0, "scorer_arch": list(scorer_arch)}


def scorer_layout(observation_space: spaces.Space[Any], action_space: spaces.Space[Any], latent_dim: int, k: int,
                  history: int, n_features: int, listener: bool) -> ObservationLayout:
    """The observation layout a candidate scorer reads (:class:`CandidateScorerPolicy`'s parameters), checked
    against the spaces it is built for (ValueError: not Discrete(k), or another observation width)."""
    mode = Observation.listener if listener else Observation.history if history else Observation.candidates
    layout = ObservationLayout.of(mode, latent_dim, k, n_features, history)
    if not isinstance(action_space, spaces.Discrete) or int(action_space.n) != k:
        raise ValueError(f"a candidate scorer needs Discrete({k}), got {action_space}")
    if observation_space.shape != (layout.width,):
        raise ValueError(f"a candidate scorer needs a flat observation of {layout.width} values (d={latent_dim}, "
                         f"k={k}, features={n_features}, history={history}), got shape {observation_space.shape}")
    return layout


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
        observation_space: spaces.Space[Any],
        action_space: spaces.Space[Any],
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
        self.layout = scorer_layout(observation_space, action_space, latent_dim, k, history, n_features, listener)
        self.latent_dim, self.k, self.history, self.n_features = latent_dim, k, history, n_features
        self.scorer_arch = list(scorer_arch)
        self.listener, self.history_encoder = listener, history_encoder
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _build_mlp_extractor(self) -> None:
        critic_arch = self.net_arch["vf"] if isinstance(self.net_arch, dict) else list(self.net_arch or [])
        # SB3 annotates mlp_extractor as its MlpExtractor, but documents replacing it here by any module with
        # latent_dim_pi, latent_dim_vf, forward_actor and forward_critic, which the scorer is
        self.mlp_extractor = CandidateScorerExtractor(  # type: ignore[assignment]
            self.layout, self.scorer_arch, critic_arch, self.activation_fn, self.history_encoder)

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        scores_as_logits(self)
        # SB3 types optimizer_class as type[Optimizer], whose constructor takes no lr (SB3 ignores it alike)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1),  # type: ignore[call-arg]
                                              **self.optimizer_kwargs)

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


def scores_as_logits(policy: ActorCriticPolicy) -> None:
    """After SB3 built an actor-critic on a :class:`CandidateScorerExtractor`: the scores are the logits, with no
    extra linear layer that would mix the candidate slots; a near-uniform initial policy with ``ortho_init``, as
    SB3 initialises its own action head."""
    policy.action_net = nn.Identity()
    if policy.ortho_init:
        # the scorer built by _build_mlp_extractor, though SB3 annotates mlp_extractor as its MlpExtractor
        head = cast(CandidateScorerExtractor, policy.mlp_extractor).score_head
        nn.init.orthogonal_(head.weight, gain=0.01)
        nn.init.zeros_(head.bias)


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
    probs: np.ndarray = candidate_distributions(policy, np.asarray(obs).reshape(1, -1))[0]  # indexing's stubs: Any
    return probs


def candidate_probabilities(policy: ActorCriticPolicy, obs: np.ndarray) -> tuple[np.ndarray, float]:
    """Candidate probabilities (k,) and the critic's value of one observation, in one forward pass."""
    with torch.inference_mode():
        pi_features, vf_features = _latents(policy, np.asarray(obs).reshape(1, -1))
        latent_pi = policy.mlp_extractor.forward_actor(pi_features)
        latent_vf = policy.mlp_extractor.forward_critic(vf_features)
        probs = torch.softmax(policy.action_net(latent_pi), dim=-1)[0].numpy()
        value = float(policy.value_net(latent_vf)[0, 0])
    return probs.astype(np.float64), value


def sampling_policy(policy: ActorCriticPolicy, seed: int) -> Policy:
    """The policy as it explores, an evaluation policy (:data:`Policy`): each candidate drawn with its probability
    (a generator seeded with ``seed``)."""
    rng = np.random.default_rng(seed)

    def act(obs: np.ndarray, env: Any) -> int:
        probs = candidate_distribution(policy, obs)
        return int(rng.choice(len(probs), p=probs / probs.sum()))

    return act
