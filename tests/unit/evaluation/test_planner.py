"""The planning reference: exact session forks, the oracle at horizon 1, its own random stream (common random
numbers for every policy), its place in metrics.json, and the paired difference it is judged by."""

from __future__ import annotations

import numpy as np
import pytest

from envs.music_env import EnvConfig
from envs.world import World, synthetic_world
from music_rl.evaluation.baselines import baseline_policies, oracle_policy
from music_rl.evaluation.evaluate import Episode, evaluate_policies, make_eval_env, paired_difference, rollout
from music_rl.evaluation.planner import PlannerConfig, planner_policy


@pytest.fixture(scope="module")
def world() -> World:
    return synthetic_world(1500, latent_dim=5, seed=3)


def test_a_fork_has_the_same_state_and_its_answers_leave_the_session_alone(world):
    session = world.listeners().session(0, np.random.default_rng(0))
    for track in (5, 17, 250):
        session.respond(track)
    probe = np.array([5, 6, 7, 400, 900])
    before = session.expected_reward(probe, 10.0)
    twin = session.fork(np.random.default_rng(1))
    np.testing.assert_array_equal(twin.expected_reward(probe, 10.0), before)  # the same state
    assert (twin.left, twin.n_played, twin.skips) == (session.left, session.n_played, session.skips)
    for track in (6, 7, 8, 9):
        if not twin.left:
            twin.respond(track)
    np.testing.assert_array_equal(session.expected_reward(probe, 10.0), before)  # untouched
    assert session.n_played == 3


def test_a_fork_answers_exactly_as_the_session_would_with_the_same_generator(world):
    a = world.listeners().session(1, np.random.default_rng(5))
    b = world.listeners().session(1, np.random.default_rng(5))
    for track in (3, 30):
        assert a.respond(track) == b.respond(track)
    fork, same = a.fork(np.random.default_rng(9)), b.fork(np.random.default_rng(9))
    for track in (31, 32, 33, 34):
        if fork.left:
            break
        assert fork.respond(track) == same.respond(track) and fork.left == same.left


def test_horizon_one_is_the_myopic_oracle(world):
    env = make_eval_env(world, EnvConfig(), None)
    planner = rollout(env, planner_policy(PlannerConfig(horizon=1, samples=1), 0), 6, 100)
    oracle = rollout(env, oracle_policy, 6, 100)
    for p, o in zip(planner, oracle, strict=True):
        np.testing.assert_array_equal(p.tracks, o.tracks)


def test_the_planner_draws_from_its_own_stream_and_plans_beyond_one_step(world):
    env = make_eval_env(world, EnvConfig(), None)
    env.reset(seed=11)
    state = env.np_random.bit_generator.state
    session_state = env.session.expected_reward(env.current_candidates, 10.0)
    planner_policy(PlannerConfig(horizon=5, samples=2), 0)(None, env)
    assert env.np_random.bit_generator.state == state  # the env's (the listener's) stream untouched
    np.testing.assert_array_equal(env.session.expected_reward(env.current_candidates, 10.0), session_state)
    assert env.excluded_tracks() == [env.track]
    planner = rollout(env, planner_policy(PlannerConfig(horizon=5, samples=2), 0), 30, 200)
    oracle = rollout(env, oracle_policy, 30, 200)
    difference, half = paired_difference(planner, oracle)
    assert difference - half > 0  # looking ahead pays on this world


def test_metrics_carry_the_planner_and_its_scores(world):
    policies = baseline_policies(0)
    policies["ppo"] = policies["nearest"]
    metrics = evaluate_policies(world, EnvConfig(), policies, "personal", 8, 3,
                                planner=(planner_policy(PlannerConfig(horizon=3, samples=1), 0), 5))
    assert metrics["policies"]["planner"]["n_episodes"] == 5 and metrics["planner_episodes"] == 5
    gap = metrics["planner_minus_oracle"]
    assert set(gap) == {"mean_expected_reward", "ci95", "oracle_mean_expected_reward"}
    planner = metrics["policies"]["planner"]["mean_expected_reward"]
    assert gap["mean_expected_reward"] == pytest.approx(planner - gap["oracle_mean_expected_reward"])
    assert metrics["normalized_score_planner"] is not None


def test_paired_difference_by_hand():
    def episode(expected: list[float]) -> Episode:
        e = np.array(expected)
        return Episode(e, e, e, e, e, np.arange(len(e)))

    a = [episode([2.0, 2.0]), episode([4.0])]
    b = [episode([1.0, 1.0]), episode([1.0])]
    difference, half = paired_difference(a, b)
    assert difference == pytest.approx(8 / 3 - 1)
    # residuals (s - m c) / mean(c), mean(c) = 1.5: a: (4 - 16/3) / 1.5, (4 - 8/3) / 1.5; b: 0, 0
    resid = np.array([(4 - 16 / 3) / 1.5, (4 - 8 / 3) / 1.5])
    assert half == pytest.approx(1.959963984540054 * np.sqrt(np.sum(resid**2) / 2))
    assert paired_difference(a[:1], b[:1])[1] is None


def test_horizon_one_is_the_myopic_oracle_whatever_k(world):
    env = make_eval_env(world, EnvConfig(k=16), None)
    planner = rollout(env, planner_policy(PlannerConfig(horizon=1, samples=1, width=4), 0), 4, 100)
    oracle = rollout(env, oracle_policy, 4, 100)
    for p, o in zip(planner, oracle, strict=True):
        np.testing.assert_array_equal(p.tracks, o.tracks)


@pytest.mark.parametrize("k", [4, 16, 32])
def test_a_decision_costs_at_most_width_samples_horizon_steps_of_width_tracks(world, k, monkeypatch):
    from envs.listeners import ListenerSession

    cfg = PlannerConfig(horizon=3, samples=2, width=4)
    scored, responses = [], [0]
    expected_reward, respond = ListenerSession.expected_reward, ListenerSession.respond

    def counting_expected(self, tracks, *args, **kwargs):
        scored.append(len(tracks))
        return expected_reward(self, tracks, *args, **kwargs)

    def counting_respond(self, track):
        responses[0] += 1
        return respond(self, track)

    env = make_eval_env(world, EnvConfig(k=k, n_neighbours=32), None)
    obs, _ = env.reset(seed=4)
    monkeypatch.setattr(ListenerSession, "expected_reward", counting_expected)
    monkeypatch.setattr(ListenerSession, "respond", counting_respond)
    choice = planner_policy(cfg, 0)(obs, env)
    assert 0 <= choice < k
    steps = cfg.width * cfg.samples * cfg.horizon
    assert responses[0] <= steps  # simulated steps per decision: not k * samples * horizon
    assert sum(scored) <= k + steps * cfg.width  # the k candidates ranked once, then width tracks per step


def test_planner_width_must_be_positive():
    from music_rl.config import TrainConfig
    from music_rl.core.errors import ConfigError

    cfg = TrainConfig()
    cfg.eval.planner.width = 0
    with pytest.raises(ConfigError, match=r"^eval\.planner\.width=0: must be an integer >= 1$"):
        cfg.validate()
