"""SessionVecEnv: the same transitions as SB3's DummyVecEnv over Monitor, and PPO trains on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.monitor import Monitor

from envs.music_env import EnvConfig, MusicRecEnv
from envs.world import synthetic_world
from music_rl.core.errors import UnknownTrackError
from music_rl.learners.ppo import PPOConfig, build_model, make_vec_env
from music_rl.learners.vec_env import SessionVecEnv, session_vec_env
from music_rl.training.callbacks import FeedbackStatsCallback


@pytest.fixture(scope="module")
def world():
    return synthetic_world(n_tracks=600, latent_dim=4, seed=3, population=6, n_clusters=6)


def _same_info(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key, value in a.items():
        if key == "episode":  # Monitor's dict; "t" is wall-clock time
            assert (value["r"], value["l"]) == (b[key]["r"], b[key]["l"])
        elif isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, b[key])
        else:
            assert value == b[key], key


@pytest.mark.parametrize("observation", ["seed", "candidates", "history"])
@pytest.mark.parametrize("source", ["simulator", "propagated"])
@pytest.mark.parametrize("action", ["discrete", "latent"])
def test_same_transitions_as_dummy_vec_env_over_monitor(world, observation, source, action):
    cfg = EnvConfig(observation=observation, reward_source=source, session_length=8, action=action)
    stock = make_vec_env(world, cfg, None, 3, "dummy", seed=11)
    lean = session_vec_env(world, cfg, None, 3, seed=11)
    np.testing.assert_array_equal(stock.reset(), lean.reset())
    rng = np.random.default_rng(0)
    episodes = 0
    for _ in range(60):
        actions = (rng.integers(cfg.k, size=3) if action == "discrete"
                   else rng.uniform(-1, 1, size=(3, 4)).astype(np.float32))
        (o1, r1, d1, i1), (o2, r2, d2, i2) = stock.step(actions), lean.step(actions)
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_array_equal(d1, d2)
        for a, b in zip(i1, i2, strict=True):
            _same_info(a, b)
        episodes += int(d2.sum())
    assert episodes >= 3 * (60 // 8)  # truncated at session_length at the latest


def test_population_listeners_are_drawn_alike(world):
    cfg = EnvConfig(session_length=5)
    ids = world.meta["train_listeners"]
    stock = make_vec_env(world, cfg, ids, 2, "dummy", seed=4)
    lean = session_vec_env(world, cfg, ids, 2, seed=4)
    stock.reset(), lean.reset()
    for _ in range(12):
        _, _, _, i1 = stock.step(np.zeros(2, dtype=int))
        _, _, _, i2 = lean.step(np.zeros(2, dtype=int))
        assert [i["listener"] for i in i1] == [i["listener"] for i in i2]


def test_observations_are_not_aliased_between_steps(world):
    venv = session_vec_env(world, EnvConfig(), None, 2, seed=0)
    first = venv.reset()
    kept = first.copy()
    second, *_ = venv.step(np.array([1, 2]))
    np.testing.assert_array_equal(first, kept)  # SB3 keeps _last_obs while the next step runs
    assert not np.shares_memory(first, second)


def test_ppo_learns_with_it_and_logs_episodes(world):
    torch.set_num_threads(1)
    cfg = PPOConfig(n_steps=32, batch_size=32, n_epochs=1, n_envs=2, progress_bar=False)
    env_cfg = EnvConfig(session_length=6)
    model = build_model(cfg, env_cfg, session_vec_env(world, env_cfg, None, 2, seed=0), world, seed=0)
    model.learn(128)
    assert model.num_timesteps == 128
    assert len(model.ep_info_buffer) >= 128 // 6 - 2
    assert all(ep["l"] <= 6 for ep in model.ep_info_buffer)


def test_attribute_access_and_wrapping(world):
    venv = session_vec_env(world, EnvConfig(), None, 3, seed=0)
    venv.reset()
    assert venv.get_attr("track", indices=[1]) == [venv.envs[1].track]
    venv.set_attr("marker", 5)
    assert [e.marker for e in venv.envs] == [5, 5, 5]
    assert len(venv.env_method("candidate_expected_rewards")) == 3
    assert venv.env_is_wrapped(Monitor) == [False] * 3


def test_rejects_shared_or_missing_envs(world):
    env = MusicRecEnv(world, EnvConfig())
    with pytest.raises(ValueError, match="distinct"):
        SessionVecEnv([env, env])
    with pytest.raises(ValueError, match="at least one"):
        SessionVecEnv([])


def test_start_track_options_reach_every_session(world):
    cfg = EnvConfig(start_track=5)
    for options, want in (({}, [5, 5]), ({"start_track": 9}, [9, 9])):
        venv = make_vec_env(world, cfg, None, 2, "vectorized", seed=0)
        venv.set_options(options)
        venv.reset()
        assert [info["track"] for info in venv.reset_infos] == want
    venv.set_options({"start_track": None})  # explicitly none: a random start, not env.start_track
    venv.reset()
    assert [info["track"] for info in venv.reset_infos] != [5, 5]
    for bad in (True, len(world.tracks), "3"):
        venv.set_options({"start_track": bad})
        with pytest.raises(UnknownTrackError, match="start_track"):
            venv.reset()


class _Dumps(KVWriter):
    """Every dump of an SB3 logger, in order."""

    def __init__(self) -> None:
        self.dumps: list[dict] = []

    def write(self, key_values, key_excluded, step=0) -> None:
        self.dumps.append(dict(key_values))


class _Infos(BaseCallback):
    """The step infos of every rollout, one list per rollout."""

    def __init__(self) -> None:
        super().__init__()
        self.rollouts: list[list[dict]] = []

    def _on_rollout_start(self) -> None:
        self.rollouts.append([])

    def _on_step(self) -> bool:
        self.rollouts[-1].extend(self.locals["infos"])
        return True


def test_rollout_feedback_logs_the_listener_answers_and_no_expected_rewards(world):
    """rollout/ means are those of the rollout's infos; the listener's expected rewards are neither computed
    during training (SessionVecEnv's infos are MusicRecEnv's) nor logged (docs/benchmarks.md: too costly)."""
    torch.set_num_threads(1)
    cfg = PPOConfig(n_steps=16, batch_size=32, n_epochs=1, n_envs=2, progress_bar=False)
    env_cfg = EnvConfig(session_length=6)
    model = build_model(cfg, env_cfg, session_vec_env(world, env_cfg, None, 2, seed=0), world, seed=0)
    writer, infos = _Dumps(), _Infos()
    model.set_logger(Logger(None, [writer]))
    model.learn(64, callback=CallbackList([infos, FeedbackStatsCallback()]))
    assert len(writer.dumps) == len(infos.rollouts) == 2
    for logged, rollout in zip(writer.dumps, infos.rollouts, strict=True):
        assert len(rollout) == 32
        assert not any({"expected_reward", "oracle_expected_reward"} & set(info) for info in rollout)
        pct = np.array([info["percentage_listened"] for info in rollout])
        assert logged["rollout/like_rate"] == pytest.approx(np.mean([info["liked"] for info in rollout]))
        assert logged["rollout/mean_pct_listened"] == pytest.approx(pct.mean())
        assert logged["rollout/skip_rate"] == pytest.approx(np.mean(pct < 0.5))
        assert "rollout/mean_expected_reward" not in logged and "rollout/oracle_gap" not in logged
