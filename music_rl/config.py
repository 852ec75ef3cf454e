"""The run's configuration: one structured dataclass per Hydra group, composed and validated at start-up.

Hydra composes the YAML tree under ``conf/``; :func:`music_rl.core.schema.to_config`, the one door of every
command's config, merges it onto :class:`TrainConfig` and validates it: each group's dataclass checks its own
keys (its ``validate()``), :meth:`TrainConfig.validate` calls them and checks the rules across groups.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from envs.listeners import ListenerConfig
from envs.music_env import EnvConfig
from envs.rewards import RewardConfig
from envs.world_config import WorldConfig
from music_rl.core.errors import ConfigError, MusicRLError, RunFolderError, not_a, require
from music_rl.core.schema import check_seed, to_config
from music_rl.data.catalog import DataConfig
from music_rl.data.log_import import FeedbackConfig
from music_rl.evaluation.evaluate import EvalConfig
from music_rl.evaluation.new_listener import NewListenerConfig
from music_rl.learners.a2c import A2CConfig
from music_rl.learners.algos import DISCRETE_ONLY, LATENT_ONLY, Algo, SACConfig, TD3Config
from music_rl.learners.ppo import PPOConfig
from music_rl.learners.q_learning import DQNConfig, QRDQNConfig
from music_rl.learners.recurrent import RecurrentPPOConfig
from music_rl.runs.run_info import versions
from music_rl.sim2real.config import MIN_HELD_OUT, Sim2RealConfig
from vae.config import VAEConfig


@dataclass
class TrainConfig:
    """The whole run (``conf/train.yaml``)."""

    seed: int = 0
    """the run seed: every component (VAE, world, listeners, PPO, evaluation) derives its own stream from it"""
    algo: Algo = Algo.ppo
    """the learning algorithm: ppo | a2c | recurrent_ppo (actor-critics, either action) | dqn | qrdqn (value-based,
    env.action=discrete only) | sac | td3 (SB3's off-policy actors, env.action=latent only); each configured by its
    group; saved as <algo>.zip, policies.<algo> in metrics.json"""
    resume: bool = False
    """continue the algorithm from its newest checkpoint in an existing run folder: hydra.run.dir=<run> resume=true"""
    overwrite: bool = False
    """start in a folder that holds a run anyway: the old folder is moved aside to <name>.replaced-<UTC time>"""
    data: DataConfig = field(default_factory=DataConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    listeners: ListenerConfig = field(default_factory=ListenerConfig)
    world: WorldConfig = field(default_factory=WorldConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    sac: SACConfig = field(default_factory=SACConfig)
    td3: TD3Config = field(default_factory=TD3Config)
    dqn: DQNConfig = field(default_factory=DQNConfig)
    qrdqn: QRDQNConfig = field(default_factory=QRDQNConfig)
    recurrent_ppo: RecurrentPPOConfig = field(default_factory=RecurrentPPOConfig)
    a2c: A2CConfig = field(default_factory=A2CConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    new_listener: NewListenerConfig = field(default_factory=NewListenerConfig)
    sim2real: Sim2RealConfig = field(default_factory=Sim2RealConfig)

    def validate(self) -> None:
        """Check every group (its ``validate()``), then the rules across groups; raise :class:`ConfigError`
        naming the first bad key."""
        check_seed("seed", self.seed)
        check_seed("data.seed", self.data.seed)
        self.data.validate()
        try:
            self.vae.validate()  # vae/ knows no project error class
        except ValueError as err:
            raise ConfigError(str(err)) from None
        self.reward.validate()
        self.listeners.validate()
        self.world.validate()
        self.env.validate(self.data.n_tracks if self.data.source == "synthetic" else None)
        self.ppo.validate()
        self.sac.validate()
        self.td3.validate()
        self.dqn.validate()
        self.qrdqn.validate()
        self.recurrent_ppo.validate()
        self.a2c.validate()
        self.eval.validate()
        self.new_listener.validate()
        self.sim2real.validate()
        self._validate_across()

    def _validate_across(self) -> None:
        """The rules that tie keys of several groups together."""
        listeners = self.listeners
        held = min(round(listeners.held_out_fraction * listeners.population), listeners.population - 1)
        policy_key = policy_group(self)
        policy = getattr(self, policy_key).policy
        require([
            ("vae.latent_dim", self.vae.latent_dim, self.vae.latent_dim <= 11,
             "must be an integer in 1..11 (2, 4, 5 are the design's)"),
            (f"{policy_key}.policy", policy, not (policy == "candidate_scorer" and self.env.observation == "seed"
                                                  and self.env.action == "discrete"),
             f"candidate_scorer needs env.observation=candidates, history or listener (use {policy_key}.policy=mlp "
             "with seed)"),
            ("algo", self.algo, self.algo not in LATENT_ONLY or self.env.action == "latent",
             "SAC and TD3 act in a continuous space: they need env.action=latent (env.action=discrete is for ppo, "
             "a2c, recurrent_ppo, dqn, qrdqn)"),
            ("algo", self.algo, self.algo not in DISCRETE_ONLY or self.env.action == "discrete",
             "DQN and QR-DQN score the k candidates: they need env.action=discrete (env.action=latent is for ppo, "
             "a2c, recurrent_ppo, sac, td3)"),
            ("listeners.population", listeners.population, not self.new_listener.enabled or held >= 2,
             f"new_listener.enabled holds out {held} listener(s) at listeners.held_out_fraction="
             f"{listeners.held_out_fraction}: at least 2 are needed (50 or more for the issue's targets)"),
            ("listeners.held_out_fraction", listeners.held_out_fraction,
             self.eval.protocol != "population" or held >= 1,
             f"eval.protocol=population holds out no listener of listeners.population={listeners.population}: "
             "raise it or the population"),
            ("reward.n_clusters", self.reward.n_clusters,
             self.data.source != "synthetic" or self.reward.n_clusters <= self.data.n_tracks,
             f"must be <= the catalog size ({self.data.n_tracks} tracks)"),
        ])
        if self.sim2real.enabled:  # the protocol compares with the run's PPO, trained against its reference listeners
            require([
                ("listeners.model", self.listeners.model, self.listeners.model == "parametric",
                 "sim2real.enabled needs the reference listener, listeners.model=parametric (it fits the learnt one)"),
                ("algo", self.algo, self.algo == "ppo", "sim2real.enabled compares PPOs: it needs algo=ppo"),
                ("env.action", self.env.action, self.env.action == "discrete",
                 "sim2real.enabled needs env.action=discrete (the run's PPO; the latent learner is trained inside)"),
                ("eval.protocol", self.eval.protocol, self.eval.protocol == "population",
                 "sim2real.enabled needs eval.protocol=population (held-out listeners judge the simulator)"),
                ("env.reward_source", self.env.reward_source, self.env.reward_source == "simulator",
                 "sim2real.enabled needs env.reward_source=simulator (its learners train on a listener's answers, "
                 "in the learnt simulator and against the reference)"),
                ("listeners.population", listeners.population, held >= MIN_HELD_OUT,
                 f"sim2real.enabled holds out {held} listener(s) at listeners.held_out_fraction="
                 f"{listeners.held_out_fraction}: its intervals resample at least {MIN_HELD_OUT}"),
                ("sim2real.log_sizes", self.sim2real.sizes(), min(self.sim2real.sizes()) >= listeners.population,
                 f"every log size (and sim2real.log_sessions) must be >= listeners.population="
                 f"{listeners.population}: a smaller log leaves listeners, maybe every held-out one, without a "
                 "session"),
            ])


def algo_budget(cfg: TrainConfig) -> int:
    """The run's training budget: ``<algo>.total_timesteps``."""
    return int(getattr(cfg, cfg.algo).total_timesteps)


def policy_group(cfg: TrainConfig) -> str:
    """The group whose ``policy`` key names the run's network: its algo's (ppo, a2c, recurrent_ppo, dqn, qrdqn), or
    ``ppo`` for SAC and TD3 (which have none)."""
    return str(cfg.algo) if hasattr(getattr(cfg, cfg.algo), "policy") else "ppo"


def load_config(raw: DictConfig | dict[str, Any]) -> TrainConfig:
    """A composed ``music-rl train`` config as a checked :class:`TrainConfig`
    (:func:`music_rl.core.schema.to_config`)."""
    cfg: TrainConfig = to_config(raw, TrainConfig)
    return cfg


def check_inputs(cfg: TrainConfig) -> None:
    """The input files of a run exist and are files (checked before any run folder is created)."""
    given = {"data.path": cfg.data.path if cfg.data.source != "synthetic" else None, "feedback.path": cfg.feedback.path,
             "listeners.fit_log": cfg.listeners.fit_log}
    for key, value in given.items():
        if value and not Path(value).exists():
            raise ConfigError(f"{key}={value!r}: no such file")
        if value and not Path(value).is_file():
            raise ConfigError(f"{key}={value!r}: {not_a(value, 'regular file')}")


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
    if not isinstance(raw, DictConfig):
        raise RunFolderError(f"{config_path}: a YAML list, not a run's config keys{version_note(run_dir)}")
    try:
        return load_config(raw)
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
