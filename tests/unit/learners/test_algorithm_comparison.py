"""+experiment=algorithm_comparison: its sweep crosses every (algo, env.action) pair that exists and no other, on
both reward sources and at least five listeners."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import compose

import music_rl.cli.train  # noqa: F401  (registers train_schema in Hydra's ConfigStore)
from music_rl.config import load_config
from music_rl.core.errors import ConfigError
from music_rl.learners.algos import Algo

CONF = Path(__file__).resolve().parents[3] / "conf"
SWEEP = yaml.safe_load((CONF / "experiment" / "algorithm_comparison.yaml").read_text())["hydra"]["sweeper"]["params"]



def pair(*overrides: str) -> tuple[str, str] | None:
    """The (algo, env.action) a config runs, or None when it is refused."""
    try:
        cfg = load_config(compose(*overrides))
    except ConfigError:
        return None
    return str(cfg.algo), str(cfg.env.action)


def test_the_sweep_crosses_every_pair_that_exists_and_no_other():
    learners = SWEEP["learner"].split(",")
    swept = [pair("+experiment=algorithm_comparison", f"learner={name}") for name in learners]
    existing = {p for algo in Algo for action in ("discrete", "latent")
                if (p := pair(f"algo={algo}", f"env.action={action}")) is not None}
    assert None not in swept and len(set(swept)) == len(swept) == len(existing) == 10
    assert set(swept) == existing
    assert [f"{algo}_{action}" for algo, action in swept] == learners  # each option is named by its pair


def test_both_reward_sources_and_five_listeners():
    assert set(SWEEP["env.reward_source"].split(",")) == {"simulator", "propagated"}
    assert len(set(SWEEP["seed"].split(","))) >= 5


@pytest.mark.parametrize("learner", ["dqn_discrete", "td3_latent"])
def test_the_tiny_budget_wins_over_the_learners(learner):
    """The header's test command: the tiny budget comes after the learner's budget."""
    cfg = load_config(compose("+experiment=[algorithm_comparison,tiny]", f"learner={learner}"))
    assert getattr(cfg, str(cfg.algo)).total_timesteps == 1024
