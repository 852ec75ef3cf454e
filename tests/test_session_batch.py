"""The batched sessions (ppo.vec_env=batched): the same listener and env process as the scalar classes.

ListenerBatch answers exactly as ListenerSession on the same uniforms; SessionBatch walks exactly the tracks,
observations and rewards of MusicRecEnv on the propagated table (where nothing is random after the start
track); BatchedVecEnv follows SB3's VecEnv contract and PPO trains on it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.ppo import PPOConfig, build_model, make_vec_env
from envs.candidates import CandidateIndex
from envs.errors import UnknownTrackError
from envs.listeners import _UNIFORM_BLOCK, ListenerBatch, ListenerConfig, ListenerPopulation, expected_reward
from envs.music_env import EnvConfig, MusicRecEnv
from envs.session_batch import SessionBatch
from envs.world import synthetic_world


@pytest.fixture(scope="module")
def world():
    return synthetic_world(n_tracks=600, latent_dim=4, seed=3, population=6, n_clusters=6)


@pytest.mark.parametrize("listeners", [[2, 2, 2], [0, 3, 5]])  # one shared session table / one per listener
def test_listener_batch_answers_as_listener_sessions_on_the_same_uniforms(listeners):
    X = np.random.default_rng(0).random((300, 11))
    cfg = ListenerConfig(patience=4, drift=0.2, boredom=0.6, repeat_penalty=0.5)
    pop = ListenerPopulation.sample(X, cfg, np.random.default_rng(1), n=6)
    n = len(listeners)
    batch = ListenerBatch(pop, n)
    batch.start(np.arange(n), np.array(listeners))
    seeds = iter(range(100, 10_000))

    def fresh(i: int):
        seed = next(seeds)  # a session's uniforms come in blocks of _UNIFORM_BLOCK from its generator
        block = np.random.default_rng(seed).random(_UNIFORM_BLOCK)
        return pop.session(listeners[i], np.random.default_rng(seed)), block, 0

    sessions = [fresh(i) for i in range(n)]
    picks = np.random.default_rng(2)
    restarts = 0
    for _ in range(120):
        tracks = picks.integers(12, size=(n, 3))  # a small pool: repeats and boredom both happen
        a = batch.affinities(tracks)
        for i, (session, _, _) in enumerate(sessions):
            np.testing.assert_allclose(a[i], [session.affinity_now(t) for t in tracks[i]], rtol=1e-12)
            np.testing.assert_allclose(expected_reward(a[i], cfg, 10.0, 2.0, 0.3),
                                       session.expected_reward(tracks[i], 10.0, 2.0, 0.3), rtol=1e-9)
        u = np.array([block[used:used + batch.n_uniforms] for _, block, used in sessions])
        pct, liked = batch.respond(tracks[:, 0], a[:, 0], u)
        for i, (session, block, used) in enumerate(sessions):
            want = session.respond(int(tracks[i, 0]))
            assert pct[i] == pytest.approx(want[0], rel=1e-12) and liked[i] == want[1]
            assert (batch.skips[i], batch.left[i], batch.n_played[i]) == (session.skips, session.left,
                                                                          session.n_played)
            np.testing.assert_allclose(batch.pi[i], session._pi, rtol=1e-12)
            sessions[i] = (session, block, used + batch.n_uniforms)
            if session.left or used + 2 * batch.n_uniforms > _UNIFORM_BLOCK:
                sessions[i] = fresh(i)
                batch.start(np.array([i]), np.array([listeners[i]]))
                restarts += 1
    assert restarts >= n  # sessions were restarted (left, or their block ran out), clearing their state


def _drive(world, cfg: EnvConfig, n: int, steps: int, seed: int):
    """Step a SessionBatch with random actions; yield (batch, current tracks, actions, step result)."""
    batch = SessionBatch(world, cfg, n)
    batch.seed(seed)
    batch.reset(np.arange(n))
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        current = batch.track.copy()
        actions = rng.integers(cfg.k, size=n)
        out = batch.step(actions)
        yield batch, current, actions, out
        done = np.flatnonzero(out.terminated | out.truncated)
        batch.reset(done)


@pytest.mark.parametrize("observation", ["seed", "candidates", "history"])
@pytest.mark.parametrize("no_repeat", ["session", 3])
def test_session_batch_walks_as_music_rec_env_on_the_propagated_table(world, observation, no_repeat):
    cfg = EnvConfig(observation=observation, reward_source="propagated", session_length=7, no_repeat=no_repeat)
    n = 3
    envs = [MusicRecEnv(world, cfg) for _ in range(n)]
    fresh = [True] * n
    episodes = 0
    for batch, starts, actions, out in _drive(world, cfg, n, 40, seed=5):
        for i, env in enumerate(envs):
            if fresh[i]:
                env.reset(seed=0, options={"start_track": int(starts[i])})
                fresh[i] = False
            np.testing.assert_array_equal(env.current_candidates, out.candidates[i])
            obs, reward, terminated, truncated, info = env.step(int(actions[i]))
            assert (info["track"], info["reward"]) == (out.tracks[i], out.raw_reward[i])
            assert reward == pytest.approx(out.reward[i], rel=1e-12)
            assert (terminated, truncated) == (out.terminated[i], out.truncated[i])
            np.testing.assert_array_equal(obs, batch.obs[i])  # the final observation, before any reset
            if terminated or truncated:
                fresh[i] = True
                episodes += 1
    assert episodes == n * (40 // 7)


def test_candidates_are_the_nearest_unplayed_and_expected_rewards_match_the_listener(world):
    cfg = EnvConfig(session_length=12)
    index = CandidateIndex(world.latents, world.neighbours[:, :cfg.n_neighbours], cfg.k)
    played: dict[int, set[int]] = {}
    for batch, starts, _, out in _drive(world, cfg, 4, 60, seed=1):
        for i in range(batch.n):
            played.setdefault(i, {int(starts[i])})
            mask = np.zeros(len(world.tracks), dtype=bool)
            mask[list(played[i])] = True
            np.testing.assert_array_equal(out.candidates[i], index.candidates(int(starts[i]), mask))
            assert out.expected_reward[i] <= out.oracle_expected_reward[i]
            played[i].add(int(out.tracks[i]))
            if out.terminated[i] or out.truncated[i]:
                del played[i]


def test_simulated_rewards_average_to_their_expectation_and_listeners_leave_after_patience(world):
    cfg = EnvConfig(session_length=20)
    raw, expected, skips, left = [], [], {}, 0
    for batch, _, _, out in _drive(world, cfg, 16, 400, seed=2):
        raw.append(out.raw_reward)
        expected.append(out.expected_reward)
        for i in range(batch.n):
            skips[i] = skips.get(i, 0) + 1 if out.pct[i] < 0.5 else 0
            assert out.terminated[i] == (skips[i] >= world.listeners().cfg.patience)
            if out.terminated[i] or out.truncated[i]:
                left += int(out.terminated[i])
                skips[i] = 0
    raw, expected = np.concatenate(raw), np.concatenate(expected)
    se = raw.std() / np.sqrt(raw.size)
    assert abs(raw.mean() - expected.mean()) < 4 * se  # responses are drawn from the expected-reward model
    assert left > 0


def test_batched_vec_env_contract_and_seeding(world):
    cfg = EnvConfig(session_length=5, observation="history")
    runs = []
    for seed in (7, 7, 8):
        venv = make_vec_env(world, cfg, world.meta["train_listeners"], 3, "batched", seed=seed)
        obs = venv.reset()
        assert obs.shape == (3, *venv.observation_space.shape) and venv.observation_space.contains(obs[0])
        trace = [obs]
        for _ in range(12):
            obs, rewards, dones, infos = venv.step(np.array([0, 1, 2]))
            assert rewards.dtype == np.float32 and len(infos) == 3
            for i, info in enumerate(infos):
                assert info["listener"] in world.meta["train_listeners"]
                assert info["reward"] * (1 / 11) == pytest.approx(rewards[i], rel=1e-6)
                if dones[i]:
                    assert info["episode"]["l"] <= 5 and info["terminal_observation"].shape == obs[i].shape
                    assert info["episode"]["l"] == 5 or not info["TimeLimit.truncated"]  # else the listener left
                    d = world.latents.shape[1]
                    np.testing.assert_array_equal(obs[i, :d], world.latents[venv.reset_infos[i]["track"]])
            trace.append(obs)
        runs.append(np.stack(trace))
    np.testing.assert_array_equal(runs[0], runs[1])  # same seed, same transitions
    assert not np.array_equal(runs[0], runs[2])


def test_ppo_learns_with_batched_sessions(world):
    torch.set_num_threads(1)
    cfg = PPOConfig(n_steps=32, batch_size=32, n_epochs=1, n_envs=4, vec_env="batched", progress_bar=False)
    env_cfg = EnvConfig(session_length=6)
    model = build_model(cfg, env_cfg, make_vec_env(world, env_cfg, None, 4, "batched", seed=0), world, seed=0)
    model.learn(256)
    assert model.num_timesteps == 256
    assert len(model.ep_info_buffer) >= 256 // 6 - 4
    assert all(ep["l"] <= 6 for ep in model.ep_info_buffer)


def test_start_track_options_read_as_the_scalar_env_reads_them(world):
    cfg = EnvConfig(start_track=5)
    for options, want in (({}, [5, 5]), ({"start_track": 9}, [9, 9])):
        starts = {}
        for vec in ("vectorized", "batched"):
            venv = make_vec_env(world, cfg, None, 2, vec, seed=0)
            venv.set_options(options)
            venv.reset()
            starts[vec] = [info["track"] for info in venv.reset_infos]
        assert starts["vectorized"] == starts["batched"] == want
    venv = make_vec_env(world, cfg, None, 2, "batched", seed=0)
    venv.set_options({"start_track": None})  # explicitly none: a random start, not env.start_track
    venv.reset()
    assert [info["track"] for info in venv.reset_infos] != [5, 5]
    for bad in (True, len(world.tracks), "3"):
        venv.set_options({"start_track": bad})
        with pytest.raises(UnknownTrackError, match="start_track"):
            venv.reset()
    with pytest.raises(ValueError, match="2 given for 3 slots"):
        SessionBatch(world, cfg, 3).reset(np.arange(3), [1, 2])


def test_rollout_feedback_means_include_expected_rewards_only_where_infos_carry_them():
    from agents.callbacks import FeedbackStatsCallback

    recorded: dict[str, float] = {}
    callback = FeedbackStatsCallback()
    logger = type("Logger", (), {"record": lambda self, key, value: recorded.__setitem__(key, value)})()
    callback.model = type("Model", (), {"logger": logger})()  # BaseCallback.logger is the model's
    answers = {"percentage_listened": 1.0, "liked": 1}
    callback.locals = {"infos": [dict(answers, expected_reward=2.0, oracle_expected_reward=3.0),
                                 {"percentage_listened": 0.2, "liked": 0}]}
    callback._on_step()
    callback._on_rollout_end()
    assert recorded == pytest.approx({"rollout/like_rate": 0.5, "rollout/mean_pct_listened": 0.6,
                                      "rollout/skip_rate": 0.5, "rollout/mean_expected_reward": 2.0,
                                      "rollout/oracle_gap": 1.0})
    recorded.clear()
    callback.locals = {"infos": [answers]}
    callback._on_step()
    callback._on_rollout_end()
    assert set(recorded) == {"rollout/like_rate", "rollout/mean_pct_listened", "rollout/skip_rate"}
