"""Tests of MusicRec-v0: API conformance, observation layouts, rewards, candidates and determinism."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs  # noqa: F401  (registers MusicRec-v0)
from envs.music_env import EnvConfig, MusicRecEnv
from envs.rewards import RewardConfig, reward
from envs.world import World, synthetic_world
from music_rl.core.errors import ConfigError, UnknownTrackError

MODES = list(itertools.product(("seed", "candidates", "history"), ("simulator", "propagated")))
N_TRACKS, D, K, F = 1000, 3, 4, 11


@pytest.fixture(scope="module")
def world() -> World:
    # patience 1: listeners leave after one skip, so early termination is common
    return synthetic_world(
        N_TRACKS,
        latent_dim=D,
        seed=1,
        n_clusters=8,
        population=10,
        patience=1,
        early_skip_penalty=2.0,
        env_cfg=EnvConfig(n_neighbours=12),
    )


def _env(world: World, **cfg: object) -> MusicRecEnv:
    return MusicRecEnv(world, EnvConfig(n_neighbours=12, **cfg))  # type: ignore[arg-type]


def _episode(
    env: MusicRecEnv, seed: int, actions: np.random.Generator | None = None, options: dict | None = None
) -> tuple[list[np.ndarray], list[dict], list[float], bool, bool]:
    """Play one episode (random actions from ``actions``, else always 0)."""
    obs, info = env.reset(seed=seed, options=options)
    observations, infos, rewards = [obs], [info], []
    terminated = truncated = False
    while not (terminated or truncated):
        action = int(actions.integers(env.action_space.n)) if actions is not None else 0
        obs, rew, terminated, truncated, info = env.step(action)
        observations.append(obs)
        infos.append(info)
        rewards.append(rew)
    return observations, infos, rewards, terminated, truncated


@pytest.mark.parametrize(("observation", "source"), MODES)
def test_gymnasium_and_sb3_checkers_pass(world: World, observation: str, source: str) -> None:
    env = _env(world, observation=observation, reward_source=source)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(env, skip_render_check=True)
        sb3_check_env(env, warn=True)
    obs, _ = env.reset(seed=0)
    width = {"seed": D, "candidates": (1 + K) * (D + F), "history": (1 + K) * (D + F) + 4 * (D + 1)}[
        observation
    ]
    assert obs.shape == (width,) and obs.dtype == np.float32
    assert env.action_space == gymnasium.spaces.Discrete(K)


def test_gymnasium_make_synthetic_and_saved_world(world: World, tmp_path: Path) -> None:
    env = gymnasium.make(
        "MusicRec-v0",
        observation="history",
        reward_source="propagated",
        n_tracks=300,
        latent_dim=2,
        n_clusters=4,
        population=4,
        session_length=5,
    )
    obs, _ = env.reset(seed=0)
    assert obs.shape == ((1 + K) * (2 + F) + 4 * 3,)
    world.save(tmp_path / "world")
    env = gymnasium.make(
        "MusicRec-v0", world_dir=str(tmp_path / "world"), observation="seed", k=2, n_neighbours=12
    )
    obs, info = env.reset(seed=0)
    np.testing.assert_array_equal(obs, world.latents[info["track"]])
    assert env.unwrapped.current_candidates.shape == (2,)
    with pytest.raises(ConfigError, match="n_tracks"):
        gymnasium.make("MusicRec-v0", world_dir=str(tmp_path / "world"), n_tracks=10)


@pytest.mark.parametrize("observation", ["candidates", "history"])
@pytest.mark.parametrize("features", [True, False])
def test_observation_layout(world: World, observation: str, features: bool) -> None:
    env = _env(
        world,
        observation=observation,
        reward_source="simulator",
        session_length=10,
        candidate_features=features,
    )
    obs, info = env.reset(seed=5)
    z = world.latents
    f = F if features else 0
    hist_rows: list[np.ndarray] = []
    for t in range(10):
        np.testing.assert_array_equal(obs[:D], z[env.track])
        np.testing.assert_array_equal(obs[D : (1 + K) * D].reshape(K, D), z[env.current_candidates])
        if features:
            np.testing.assert_array_equal(obs[(1 + K) * D : (1 + K) * D + F], world.features[env.track])
            np.testing.assert_array_equal(
                obs[(1 + K) * D + F : (1 + K) * (D + F)].reshape(K, F), world.features[env.current_candidates]
            )
        dist = np.linalg.norm(z[env.current_candidates] - z[env.track], axis=1)
        assert np.all(np.diff(dist) >= -1e-6)  # nearest first
        if observation == "history":
            hist = obs[(1 + K) * (D + f) :].reshape(4, D + 1)
            want = np.zeros((4, D + 1), np.float32)
            for i, row in enumerate(hist_rows[::-1][:4]):
                want[i] = row
            np.testing.assert_allclose(hist, want, rtol=1e-6)
        obs, rew, terminated, truncated, info = env.step(t % K)
        hist_rows.append(np.append(z[info["track"]], np.float32(rew)))
        if terminated:
            break


@pytest.mark.parametrize("no_repeat", ["session", 1, 3])
def test_candidates_exclude_current_and_played(world: World, no_repeat: object) -> None:
    env = _env(world, no_repeat=no_repeat, reward_source="propagated", session_length=60)
    actions = np.random.default_rng(0)
    for seed in range(3):
        _, infos, _, _, _ = _episode(env, seed, actions)
        played = [infos[0]["track"]]
        for info in infos[1:]:
            offered = set(info["candidates"].tolist())
            excluded = played if no_repeat == "session" else played[-int(no_repeat) :]  # type: ignore[call-overload]
            assert not offered & set(excluded)
            assert info["track"] in offered
            played.append(info["track"])
        if no_repeat == "session":
            assert len(set(played)) == len(played) == 61
    if no_repeat == 1:  # a window of one lets the walk come back: some session revisits a track
        env2 = _env(world, no_repeat=1, reward_source="propagated", session_length=60)
        _, infos, _, _, _ = _episode(env2, 0)
        tracks = [i["track"] for i in infos]
        assert len(set(tracks)) < len(tracks)


def test_same_seed_same_trajectory_other_seed_differs(world: World) -> None:
    def run(seed: int) -> tuple[list, list, list]:
        env = _env(world, observation="history", reward_source="simulator")
        obs, infos, rewards, _, _ = _episode(env, seed, np.random.default_rng(7))
        more, more_infos, _, _, _ = _episode(env, None, np.random.default_rng(8))  # type: ignore[arg-type]
        return obs + more, infos + more_infos, rewards

    a, b, c = run(11), run(11), run(12)
    assert all(np.array_equal(x, y) for x, y in zip(a[0], b[0], strict=True))
    assert a[2] == b[2]
    for x, y in zip(a[1], b[1], strict=True):
        assert x.keys() == y.keys()
        assert all(np.array_equal(x[key], y[key]) for key in x)
    assert [i["track"] for i in a[1]] != [i["track"] for i in c[1]]


def test_episode_length_and_termination(world: World) -> None:
    sim = _env(world, reward_source="simulator", session_length=15)
    prop = _env(world, reward_source="propagated", session_length=15)
    actions = np.random.default_rng(1)
    left = 0
    for seed in range(30):
        _, _, rewards, terminated, truncated = _episode(sim, seed, actions)
        assert terminated != truncated
        if terminated:
            left += 1
            assert sim.session.left and len(rewards) <= 15
        else:
            assert len(rewards) == 15
        _, _, rewards, terminated, truncated = _episode(prop, seed, actions)
        assert not terminated and truncated and len(rewards) == 15
    assert left > 0  # patience 1: some listeners leave early


@pytest.mark.parametrize(
    ("source", "scale"), [("simulator", "auto"), ("propagated", "auto"), ("simulator", 0.5)]
)
def test_reward_is_scaled_raw_reward(world: World, source: str, scale: object) -> None:
    env = _env(world, reward_source=source, reward_scale=scale)
    want_scale = 1 / 11 if scale == "auto" else 0.5
    cfg = RewardConfig(like_weight=10.0, early_skip_penalty=2.0)
    actions = np.random.default_rng(2)
    for seed in range(5):
        env.reset(seed=seed)
        for _ in range(10):
            expected = env.candidate_expected_rewards()
            np.testing.assert_array_equal(expected, env.candidate_expected_rewards())  # memoised per state
            cands = env.current_candidates.copy()
            a = int(actions.integers(K))
            _, rew, terminated, _, info = env.step(a)
            assert rew == pytest.approx(want_scale * info["reward"])
            raw = float(reward(np.array([info["percentage_listened"]]), np.array([info["liked"]]), cfg)[0])
            if source == "simulator":
                assert info["reward"] == pytest.approx(raw)
            else:
                assert info["reward"] == pytest.approx(float(world.reward_table[info["track"]]))
            np.testing.assert_array_equal(info["candidates"], cands)
            assert info["track"] == cands[a] and "expected_reward" not in info  # computed on demand only
            assert info["track_id"] == world.track_ids()[info["track"]]
            if terminated:
                break


def test_start_track_and_listeners(world: World) -> None:
    env = _env(world, start_track=7)
    _, info = env.reset(seed=0)
    assert info["track"] == 7 and info["listener"] == world.meta["served_listener"]
    _, info = env.reset(seed=0, options={"start_track": 9})
    assert info["track"] == 9
    with pytest.raises(UnknownTrackError, match="start_track"):
        env.reset(options={"start_track": N_TRACKS})
    held = world.meta["heldout_listeners"]
    pop = MusicRecEnv(world, EnvConfig(n_neighbours=12), listener_ids=held)
    seen = {pop.reset(seed=s)[1]["listener"] for s in range(20)}
    assert seen == set(held)  # only held-out listeners, and (20 draws) every one of them
    with pytest.raises(ConfigError, match="listener_ids"):
        MusicRecEnv(world, EnvConfig(n_neighbours=12), listener_ids=[world.listeners().n])


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("observation", "pixels", "must be one of seed, candidates, history"),
        ("reward_source", "oracle", "must be one of simulator, propagated"),
        ("k", 0, "integer >= 1"),
        ("n_neighbours", 2, "must be an integer >= env.k"),
        ("session_length", 0, "integer >= 1"),
        ("session_length", N_TRACKS, "catalog size"),
        ("no_repeat", 0, "'session' or an integer window"),
        ("reward_scale", -1.0, "'auto'"),
        ("start_track", N_TRACKS, "catalog size"),
    ],
)
def test_config_errors_name_the_key(world: World, key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=f"env.{key}={value!r}: .*{message}"):
        EnvConfig(**{key: value}).validate(N_TRACKS)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=f"env.{key}"):
        MusicRecEnv(world, EnvConfig(**{key: value}))  # type: ignore[arg-type]


def test_long_session_with_window(world: World) -> None:
    EnvConfig(session_length=5 * N_TRACKS, no_repeat=10).validate(N_TRACKS)
    env = _env(world, session_length=2 * N_TRACKS, no_repeat=10, reward_source="propagated")
    _, infos, rewards, _, truncated = _episode(env, 0, np.random.default_rng(3))
    assert truncated and len(rewards) == 2 * N_TRACKS
    assert env._played.sum() == 10  # the mask holds exactly the window


@pytest.mark.parametrize("observation", ["seed", "candidates", "history", "listener"])
@pytest.mark.parametrize("features", [True, False])
def test_layout_names_every_value_of_the_observation(world: World, observation: str, features: bool) -> None:
    """The layout's parts tile the flat vector in order, hold what their names say, and bound it."""
    env = _env(world, observation=observation, reward_source="simulator", candidate_features=features)
    layout = env.setup.layout
    obs, _ = env.reset(seed=2)
    for t in range(3):
        obs, rew, terminated, _, info = env.step(t % K)
        if terminated:
            obs, _ = env.reset(seed=3 + t)
    assert obs.shape == env.observation_space.shape == (layout.width,)
    views = layout.views(obs)
    parts = [getattr(views, name) for name in layout.shapes()]  # in the vector's order
    np.testing.assert_array_equal(np.concatenate([v.ravel() for v in parts]), obs)  # no gap, no overlap
    assert sum(v is not None for v in views) == len(parts)
    np.testing.assert_array_equal(views.z, world.latents[env.track])
    if observation != "seed":
        np.testing.assert_array_equal(views.z_cands, world.latents[env.current_candidates])
    assert (views.x is not None) == (features and observation != "seed")
    if views.x is not None:
        np.testing.assert_array_equal(views.x_cands, world.features[env.current_candidates])
    if views.hist is not None and not terminated:
        row = layout.rows(views.hist[0])  # the most recent answer
        np.testing.assert_array_equal(row.z, world.latents[info["track"]])
        want = [rew] if observation == "history" else [info["percentage_listened"], info["liked"]]
        np.testing.assert_allclose(row.answer, want, rtol=1e-6)
        assert (row.filled is None) == (observation == "history")
    low, high = env.observation_space.low.copy(), env.observation_space.high.copy()
    reward_valued = {"history": lambda v: layout.rows(v.hist).answer,
                     "listener": lambda v: v.estimate[[0, 2]]}.get(observation)
    if reward_valued is not None:  # early-skip penalty 2: a negative reward
        assert np.all(reward_valued(layout.views(low)) < 0) and np.all(reward_valued(layout.views(high)) >= 1)
        for bound, value in ((low, 0.0), (high, 1.0)):
            views = layout.views(bound)
            if observation == "history":
                layout.rows(views.hist).answer[...] = value
            else:
                views.estimate[[0, 2]] = value
    if observation == "listener":  # pop, the expected answer pct + 0.5 liked: in [0, 1.5]
        assert np.all(layout.views(high).estimate[3] == 1.5)
        layout.views(high).estimate[3] = 1.0
    assert not low.any() and np.all(high == 1)  # every other value in [0, 1]
    assert env.observation_space.contains(obs)


def test_set_listener_estimate_needs_the_listener_observation(world: World) -> None:
    with pytest.raises(ValueError, match="only listener"):
        _env(world, observation="history").set_listener_estimate(None)
