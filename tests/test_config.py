"""Config validation: every bad value is one ConfigError line naming the key, the value and what is allowed."""

import pytest
from omegaconf import OmegaConf

from agents.config import TrainConfig, load_config
from envs.errors import ConfigError

ROOT_CONF = "conf"


def compose(*overrides: str):
    from pathlib import Path

    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(Path(__file__).parent.parent / ROOT_CONF)):
        return hydra_compose(config_name="train", overrides=list(overrides))


def test_the_default_config_tree_matches_the_schema():
    cfg = load_config(compose())
    assert isinstance(cfg, TrainConfig)
    defaults = TrainConfig()
    # the YAML tree and the dataclasses say the same thing
    assert OmegaConf.to_container(OmegaConf.structured(cfg)) == OmegaConf.to_container(
        OmegaConf.structured(defaults)
    )


@pytest.mark.parametrize(
    "override, message",
    [
        ("vae.latent_dim=0", "vae.latent_dim=0: must be an integer >= 1"),
        ("vae.latent_dim=12", "vae.latent_dim=12: must be an integer in 1..11"),
        ("vae.latent_dim=abc", "vae.latent_dim: Value 'abc' of type 'str' could not be converted to Integer"),
        ("vae.epochs=0", "vae.epochs=0"),
        ("vae.lr=-1", "vae.lr=-1.0: must be > 0"),
        ("reward.like_weight=-1", "reward.like_weight=-1.0"),
        ("reward.decay=cubic", "reward.decay='cubic': must be one of"),
        ("reward.n_clusters=30000", "reward.n_clusters=30000"),
        ("env.k=64", "env.n_neighbours=32: must be an integer >= env.k (64)"),
        ("env.session_length=0", "env.session_length=0"),
        ("env.observation=pixels", "env.observation='pixels': must be one of"),
        ("env.reward_source=oracle", "env.reward_source='oracle'"),
        ("ppo.policy=transformer", "ppo.policy='transformer': must be one of candidate_scorer, mlp"),
        ("env.observation=seed", "ppo.policy='candidate_scorer': candidate_scorer needs env.observation"),
        ("ppo.batch_size=100000", "ppo.batch_size=100000: must be <= ppo.n_steps * ppo.n_envs"),
        ("ppo.gamma=1.5", "ppo.gamma=1.5: must be in [0, 1]"),
        ("ppo.n_envs=0", "ppo.n_envs=0"),
        ("ppo.vec_env=batched", "ppo.vec_env='batched': must be one of vectorized, dummy, subproc"),
        ("eval.protocol=team", "eval.protocol='team': must be one of personal, population"),
        ("eval.n_episodes=1", "eval.n_episodes=1"),
        ("data.source=s3", "data.source='s3': must be one of synthetic, csv"),
        ("data=csv", "data.path=None: a CSV path is required"),
        ("seed=1.5", "seed: Value '1.5' of type 'float' could not be converted to Integer"),
    ],
)
def test_bad_values_name_key_value_and_what_is_allowed(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(compose(override))
    text = str(err.value)
    assert message in text
    assert "\n" not in text
