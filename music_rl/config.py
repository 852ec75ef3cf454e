"""The run's configuration: one structured dataclass per Hydra group, composed and validated at start-up.

Hydra composes the YAML tree under ``conf/``; :func:`load_config` merges it onto the dataclass schema
(type errors become one-line :class:`ConfigError`s naming the key) and checks every value before any work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from envs.listeners import ListenerConfig
from envs.music_env import EnvConfig
from envs.rewards import RewardConfig
from music_rl.core.errors import ConfigError, MusicRLError, RunFolderError, not_a
from music_rl.data.catalog import DataConfig
from music_rl.data.log_import import FeedbackConfig
from music_rl.evaluation.evaluate import EvalConfig
from music_rl.evaluation.new_listener import NewListenerConfig
from music_rl.learners.algos import ALGOS, Algo, OffPolicyConfig, SACConfig, TD3Config
from music_rl.learners.ppo import VEC_ENVS, PPOConfig
from music_rl.memory_budget import check_memory
from music_rl.runs.run_info import versions
from music_rl.runs.seeding import check_seed
from vae.config import VAEConfig


@dataclass
class TrainConfig:
    """The whole run (``conf/train.yaml``)."""

    seed: int = 0
    """the run seed: every component (VAE, world, listeners, PPO, evaluation) derives its own stream from it"""
    algo: Algo = Algo.ppo
    """the learning algorithm: ppo (the only choice with env.action=discrete) | sac | td3 (SB3's off-policy
    actors for env.action=latent; their groups sac and td3); saved as <algo>.zip, policies.<algo> in metrics.json"""
    resume: bool = False
    """continue PPO from the newest checkpoint of an existing run folder: hydra.run.dir=<run> resume=true"""
    overwrite: bool = False
    """start in a folder that holds a run anyway: the old folder is moved aside to <name>.replaced-<UTC time>"""
    data: DataConfig = field(default_factory=DataConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    listeners: ListenerConfig = field(default_factory=ListenerConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    sac: SACConfig = field(default_factory=SACConfig)
    td3: TD3Config = field(default_factory=TD3Config)
    eval: EvalConfig = field(default_factory=EvalConfig)
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    new_listener: NewListenerConfig = field(default_factory=NewListenerConfig)


def _require(key: str, value: Any, ok: bool, allowed: str) -> None:
    if not ok:
        shown = value.value if isinstance(value, Enum) else value  # a choice as the user typed it
        raise ConfigError(f"{key}={shown!r}: {allowed}")


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    _require(key, value, value in choices, f"must be one of {', '.join(choices)}")


def validate_data(cfg: DataConfig) -> None:
    """Check the ``data`` group."""
    _choice("data.source", cfg.source, ("synthetic", "csv"))
    _choice("data.normalisation", cfg.normalisation, ("physical", "minmax"))
    if cfg.source == "csv":
        _require("data.path", cfg.path, bool(cfg.path), "a CSV path is required when data.source=csv")
    else:
        _require("data.path", cfg.path, not cfg.path, "is set but data.source=synthetic: add data=csv to read it")
    _require("data.delimiter", cfg.delimiter, cfg.delimiter is None or len(cfg.delimiter) == 1,
             "must be null (sniffed) or one character, e.g. ';' or a tab")
    _require("data.n_tracks", cfg.n_tracks, cfg.n_tracks >= 10, "must be an integer >= 10")
    check_seed("data.seed", cfg.seed)


def validate_vae(cfg: VAEConfig) -> None:
    """Check the ``vae`` group (its own rules, and a latent no wider than the 11 features)."""
    try:
        cfg.validate()
    except ValueError as err:
        raise ConfigError(str(err)) from None
    _require(
        "vae.latent_dim",
        cfg.latent_dim,
        cfg.latent_dim <= 11,
        "must be an integer in 1..11 (2, 4, 5 are the design's)",
    )


def validate_ppo(cfg: PPOConfig, observation: str, action: str = "discrete") -> None:
    """Check the ``ppo`` group (and that the policy can read the env's observation)."""
    _choice("ppo.policy", cfg.policy, ("candidate_scorer", "mlp"))
    _require(
        "ppo.policy",
        cfg.policy,
        not (cfg.policy == "candidate_scorer" and observation == "seed" and action == "discrete"),
        "candidate_scorer needs env.observation=candidates, history or listener (use ppo.policy=mlp with seed)",
    )
    _choice("ppo.vec_env", cfg.vec_env, VEC_ENVS)
    for key in ("total_timesteps", "n_envs", "n_steps", "batch_size", "n_epochs"):
        _require(f"ppo.{key}", getattr(cfg, key), getattr(cfg, key) >= 1, "must be an integer >= 1")
    _require(
        "ppo.batch_size",
        cfg.batch_size,
        cfg.batch_size <= cfg.n_steps * cfg.n_envs,
        f"must be <= ppo.n_steps * ppo.n_envs = {cfg.n_steps * cfg.n_envs}",
    )
    _require("ppo.learning_rate", cfg.learning_rate, 0 < cfg.learning_rate <= 1, "must be in (0, 1]")
    for key in ("gamma", "gae_lambda"):
        _require(f"ppo.{key}", getattr(cfg, key), 0 <= getattr(cfg, key) <= 1, "must be in [0, 1]")
    _require("ppo.clip_range", cfg.clip_range, 0 < cfg.clip_range <= 10, "must be in (0, 10]")
    for key in ("ent_coef", "vf_coef"):
        _require(f"ppo.{key}", getattr(cfg, key), 0 <= getattr(cfg, key) <= 1e3, "must be in [0, 1000]")
    _require("ppo.max_grad_norm", cfg.max_grad_norm, 0 < cfg.max_grad_norm <= 1e6, "must be in (0, 1e6]")
    for key in ("net_arch", "scorer_arch"):
        arch = list(getattr(cfg, key))
        _require(f"ppo.{key}", arch, all(w >= 1 for w in arch), "must be a list of positive layer widths")
    _require("ppo.checkpoint_freq", cfg.checkpoint_freq, cfg.checkpoint_freq >= 1, "must be an integer >= 1")


def validate_offpolicy(group: str, cfg: OffPolicyConfig) -> None:
    """Check the ``sac`` or ``td3`` group."""
    _choice(f"{group}.vec_env", cfg.vec_env, VEC_ENVS)
    for key in ("total_timesteps", "n_envs", "buffer_size", "batch_size", "train_freq", "gradient_steps",
                "checkpoint_freq"):
        _require(f"{group}.{key}", getattr(cfg, key), getattr(cfg, key) >= 1, "must be an integer >= 1")
    _require(f"{group}.learning_starts", cfg.learning_starts, 0 <= cfg.learning_starts < cfg.total_timesteps,
             f"must be an integer in [0, {group}.total_timesteps = {cfg.total_timesteps}) (no update would be made)")
    _require(f"{group}.batch_size", cfg.batch_size, cfg.batch_size <= cfg.buffer_size,
             f"must be <= {group}.buffer_size = {cfg.buffer_size}")
    _require(f"{group}.learning_rate", cfg.learning_rate, 0 < cfg.learning_rate <= 1, "must be in (0, 1]")
    _require(f"{group}.gamma", cfg.gamma, 0 <= cfg.gamma <= 1, "must be in [0, 1]")
    _require(f"{group}.tau", cfg.tau, 0 < cfg.tau <= 1, "must be in (0, 1]")
    for key in ("actor_arch", "critic_arch"):
        arch = list(getattr(cfg, key))
        _require(f"{group}.{key}", arch, all(w >= 1 for w in arch), "must be a list of positive layer widths")
    if isinstance(cfg, SACConfig):
        coef = cfg.ent_coef
        number = isinstance(coef, int | float) and not isinstance(coef, bool)
        _require("sac.ent_coef", coef, coef == "auto" or (number and 0 < coef <= 1e3),
                 "must be 'auto' or a number in (0, 1000]")
    if isinstance(cfg, TD3Config):
        for key in ("action_noise", "target_policy_noise", "target_noise_clip"):
            _require(f"td3.{key}", getattr(cfg, key), 0 <= getattr(cfg, key) <= 10,
                     "must be in [0, 10] (in units of the action box [-1, 1])")
        _require("td3.policy_delay", cfg.policy_delay, cfg.policy_delay >= 1, "must be an integer >= 1")


def validate_algo(cfg: TrainConfig) -> None:
    """Check ``algo`` against ``env.action``, and the groups of the off-policy algorithms."""
    _choice("algo", cfg.algo, ALGOS)
    _require("algo", cfg.algo, cfg.algo == "ppo" or cfg.env.action == "latent",
             "SAC and TD3 act in a continuous space: they need env.action=latent (env.action=discrete is PPO's)")
    validate_offpolicy("sac", cfg.sac)
    validate_offpolicy("td3", cfg.td3)


def algo_budget(cfg: TrainConfig) -> int:
    """The run's training budget: ``<algo>.total_timesteps``."""
    return int(getattr(cfg, cfg.algo).total_timesteps)


def validate_eval(cfg: EvalConfig) -> None:
    """Check the ``eval`` group."""
    _choice("eval.protocol", cfg.protocol, ("personal", "population"))
    _require(
        "eval.n_episodes", cfg.n_episodes, cfg.n_episodes >= 2, "must be an integer >= 2 (a CI needs two)"
    )
    _require(
        "eval.periodic_episodes", cfg.periodic_episodes, cfg.periodic_episodes >= 2, "must be an integer >= 2"
    )
    _require("eval.eval_freq", cfg.eval_freq, cfg.eval_freq >= 0, "must be an integer >= 0 (0: off)")
    _require("eval.plateau_patience", cfg.plateau_patience, cfg.plateau_patience >= 1, "must be an integer >= 1")
    _require("eval.plateau_delta", cfg.plateau_delta, 0 <= cfg.plateau_delta < float("inf"), "must be a number >= 0")
    _require("eval.ope_log_steps", cfg.ope_log_steps, cfg.ope_log_steps >= 0, "must be an integer >= 0 (0: off)")
    _require("eval.ope_epsilon", cfg.ope_epsilon, 0 < cfg.ope_epsilon <= 1,
             "must be in (0, 1] (every candidate needs a non-zero probability)")
    planner = cfg.planner
    _require("eval.planner.horizon", planner.horizon, planner.horizon >= 1, "must be an integer >= 1 (1: the oracle)")
    _require("eval.planner.samples", planner.samples, planner.samples >= 1, "must be an integer >= 1")
    _require("eval.planner.width", planner.width, planner.width >= 1, "must be an integer >= 1")
    _require("eval.planner.gamma", planner.gamma, 0 <= planner.gamma <= 1, "must be in [0, 1]")
    _require("eval.planner.n_episodes", planner.n_episodes, planner.n_episodes >= 0,
             "must be an integer >= 0 (0: no planner)")


def validate(cfg: TrainConfig, memory: bool = True) -> None:
    """Check every group; raise :class:`ConfigError` naming the first bad key. With ``memory``, then check the
    memory the run would need against the machine's (:mod:`music_rl.memory_budget`)."""
    check_seed("seed", cfg.seed)
    validate_data(cfg.data)
    validate_vae(cfg.vae)
    cfg.reward.validate()
    cfg.listeners.validate()
    cfg.env.validate(cfg.data.n_tracks if cfg.data.source == "synthetic" else None)
    validate_ppo(cfg.ppo, cfg.env.observation, cfg.env.action)
    validate_algo(cfg)
    validate_eval(cfg.eval)
    cfg.new_listener.validate()
    if cfg.new_listener.enabled:
        held = min(round(cfg.listeners.held_out_fraction * cfg.listeners.population), cfg.listeners.population - 1)
        _require("listeners.population", cfg.listeners.population, held >= 2,
                 f"new_listener.enabled holds out {held} listener(s) at listeners.held_out_fraction="
                 f"{cfg.listeners.held_out_fraction}: at least 2 are needed (50 or more for the issue's targets)")
    if cfg.eval.protocol == "population":
        held = min(round(cfg.listeners.held_out_fraction * cfg.listeners.population), cfg.listeners.population - 1)
        _require("listeners.held_out_fraction", cfg.listeners.held_out_fraction, held >= 1,
                 f"eval.protocol=population holds out no listener of listeners.population="
                 f"{cfg.listeners.population}: raise it or the population")
    if cfg.data.source == "synthetic":
        _require(
            "reward.n_clusters",
            cfg.reward.n_clusters,
            cfg.reward.n_clusters <= cfg.data.n_tracks,
            f"must be <= the catalog size ({cfg.data.n_tracks} tracks)",
        )
    if memory:
        check_memory(cfg)


def check_inputs(cfg: TrainConfig) -> None:
    """The input files of a run exist and are files (checked before any run folder is created)."""
    given = {"data.path": cfg.data.path if cfg.data.source == "csv" else None, "feedback.path": cfg.feedback.path}
    for key, value in given.items():
        if value and not Path(value).exists():
            raise ConfigError(f"{key}={value!r}: no such file")
        if value and not Path(value).is_file():
            raise ConfigError(f"{key}={value!r}: {not_a(value, 'regular file')}")


def load_config(cfg: DictConfig | dict, memory: bool = True) -> TrainConfig:
    """Merge a composed Hydra config onto the schema, validate it (``memory``: the memory check too, for a run
    about to start), and return the typed object."""
    raw = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), raw)
        typed: TrainConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"{err.full_key}: {first}") from None
    validate(typed, memory)
    return typed


def load_run_config(run_dir: Path) -> TrainConfig:
    """The validated config of a run folder; a config this version cannot read names what differs."""
    config_path = run_dir / ".hydra" / "config.yaml"
    if not config_path.is_file():
        raise RunFolderError(f"{config_path}: missing; is {run_dir} a music-rl run folder?")
    try:
        raw = OmegaConf.load(config_path)
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunFolderError(f"{config_path}: unreadable YAML ({first[:200]})") from None
    try:
        return load_config(raw, memory=False)  # a saved run is read, not trained: any machine may read it
    except MusicRLError as err:
        raise RunFolderError(f"{config_path}: {err}{version_note(run_dir)}") from None


def version_note(run_dir: Path) -> str:
    """'; the run was made by music-rl X (this is Y)' when run_info.json names another version, else ''."""
    try:
        made_by = json.loads((run_dir / "run_info.json").read_text(encoding="utf-8"))["versions"]["music-rl"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    ours = versions()["music-rl"]
    return f"; the run was made by music-rl {made_by} (this is {ours})" if made_by != ours else ""
