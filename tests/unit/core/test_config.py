"""Config: one source of defaults (the dataclasses), and every bad value one ConfigError line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import compose
from omegaconf import OmegaConf

import music_rl.cli.train  # noqa: F401  (registers train_schema in Hydra's ConfigStore)
from music_rl.cli.help import dotted_keys, field_docs, key_rows
from music_rl.config import TrainConfig, load_config
from music_rl.core.errors import ConfigError
from vae.config import VAEConfig

CONF = Path(__file__).resolve().parents[3] / "conf"



def test_the_default_config_is_the_dataclasses():
    cfg = load_config(compose())
    assert OmegaConf.to_container(OmegaConf.structured(cfg)) == OmegaConf.to_container(
        OmegaConf.structured(TrainConfig()))


def _leaves(node: object, prefix: str = "") -> dict[str, object]:
    if isinstance(node, dict):
        out: dict[str, object] = {}
        for key, value in node.items():
            out.update(_leaves(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def test_no_yaml_restates_a_default():
    """conf/ selects and overrides: a value equal to the dataclass default is written in one place only."""
    defaults = _leaves(OmegaConf.to_container(OmegaConf.structured(TrainConfig())))
    for path in CONF.rglob("*.yaml"):
        if "hydra" in path.relative_to(CONF).parts or path.name.startswith("defaults_v"):
            continue  # Hydra's own settings; a pinned version of the defaults restates them on purpose
        text = yaml.safe_load(path.read_text()) or {}
        group = path.parent.relative_to(CONF).parts
        package = "" if not group or group[0] == "experiment" or "@package _global_" in path.read_text() \
            else f"{group[0]}."
        for key, value in _leaves({k: v for k, v in text.items() if k not in ("defaults", "hydra")}).items():
            full = f"{package}{key}"
            if full in defaults:
                assert value != defaults[full], f"{path.relative_to(CONF)}: {full}={value!r} restates the default"


def test_every_key_is_documented_in_its_dataclass():
    undocumented = [key for key, _, _, doc in key_rows(TrainConfig) if not doc]
    assert not undocumented
    assert field_docs(VAEConfig)["latent_dim"].startswith("latent width d")
    assert "vae.latent_dim" in dotted_keys(TrainConfig)


@pytest.mark.parametrize(
    "override, message",
    [
        ("vae.latent_dim=0", "vae.latent_dim=0: must be an integer >= 1"),
        ("vae.latent_dim=12", "vae.latent_dim=12: must be an integer in 1..11"),
        ("vae.epochs=0", "vae.epochs=0"),
        ("vae.lr=-1", "vae.lr=-1.0: must be in (0, 1]"),
        ("reward.like_weight=-1", "reward.like_weight=-1.0"),
        ("reward.n_clusters=30000", "reward.n_clusters=30000"),
        ("env.k=64", "env.n_neighbours=32: must be an integer >= env.k (64)"),
        ("env.session_length=0", "env.session_length=0"),
        ("env.observation=seed", "ppo.policy='candidate_scorer': candidate_scorer needs env.observation"),
        ("ppo.batch_size=100000", "ppo.batch_size=100000: must be <= ppo.n_steps * ppo.n_envs"),
        ("ppo.gamma=1.5", "ppo.gamma=1.5: must be in [0, 1]"),
        ("ppo.n_envs=0", "ppo.n_envs=0"),
        ("eval.n_episodes=1", "eval.n_episodes=1"),
        ("data=csv", "data.path=None: a CSV path is required"),
        ("algo=sac", "algo='sac': SAC and TD3 act in a continuous space: they need env.action=latent"),
        ("algo=td3", "algo='td3': SAC and TD3 act in a continuous space"),
        ("sac.batch_size=0", "sac.batch_size=0: must be an integer >= 1"),
        ("sac.ent_coef=-1", "sac.ent_coef=-1: must be 'auto' or a number in (0, 1000]"),
        ("sac.ent_coef=inf", "sac.ent_coef=inf: must be 'auto' or a number in (0, 1000]"),
        ("sac.learning_rate=inf", "sac.learning_rate=inf: must be in (0, 1]"),
        ("td3.action_noise=inf", "td3.action_noise=inf: must be in [0, 10]"),
        ("sac.learning_starts=400000", "sac.learning_starts=400000: must be an integer in [0, sac.total_timesteps"),
        ("sac.batch_size=200000", "sac.batch_size=200000: must be <= sac.buffer_size = 100000"),
        ("td3.policy_delay=0", "td3.policy_delay=0: must be an integer >= 1"),
    ],
)
def test_bad_values_name_key_value_and_what_is_allowed(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(compose(override))
    text = str(err.value)
    assert message in text
    assert "\n" not in text


@pytest.mark.parametrize(
    "override, message",
    [
        ("vae.latent_dim=abc", "Value 'abc' of type 'str' could not be converted to Integer"),
        ("seed=1.5", "Value '1.5' of type 'float' could not be converted to Integer"),
        ("reward.decay=cubic", "Invalid value 'cubic', expected one of [linear, exponential, gaussian, inverse, "
                               "none]"),
        ("env.observation=pixels", "Invalid value 'pixels', expected one of [seed, candidates, history, listener]"),
        ("env.reward_source=oracle", "expected one of [simulator, propagated]"),
        ("ppo.policy=transformer", "expected one of [candidate_scorer, mlp]"),
        ("eval.protocol=team", "expected one of [personal, population]"),
        ("data.source=s3", "expected one of [synthetic, csv, parquet]"),
        ("ppo.vec_env=batched", "expected one of [vectorized, dummy, subproc]"),
        ("env.action=continuous", "expected one of [discrete, latent]"),
        ("algo=ddpg", "expected one of [ppo, sac, td3, dqn, qrdqn, recurrent_ppo, a2c]"),
    ],
)
def test_a_wrong_type_or_choice_is_refused_while_composing(override, message):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException) as err:
        compose(override)
    assert message in str(err.value.__cause__)


@pytest.mark.parametrize("overrides", [
    ("env.action=latent",),
    ("env.action=latent", "algo=sac", "env.observation=seed"),  # the latent actor is an MLP: any observation
    ("+formulation=latent_td3", "env.observation=history"),
    ("+experiment=action_comparison",),
])
def test_latent_actions_compose_with_every_algorithm(overrides):
    cfg = load_config(compose(*overrides))
    assert cfg.algo == "ppo" or cfg.env.action == "latent"
