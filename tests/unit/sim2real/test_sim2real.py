"""The fidelity protocol's parts (music_rl.sim2real): the reference's class probabilities are those of its draws,
the reference log and its order, the ranking and transfer statistics."""

from __future__ import annotations

import numpy as np
import pytest

from envs.env_config import EnvConfig
from envs.listeners import ListenerConfig
from envs.listeners.response import ResponseParams
from envs.world import World, synthetic_world
from music_rl.sim2real.logs import log_reference
from music_rl.sim2real.reference import answer_class_probabilities, reference_predictor
from music_rl.sim2real.scores import Played, bootstrap_weights, normalized_scores, ranking, transfer
from music_rl.user_model.answers import N_CLASSES, answer_class
from music_rl.user_model.fidelity import class_rates, log_likelihood, rates_predictor
from music_rl.user_model.sessions import sessions_of


@pytest.fixture(scope="module")
def world() -> World:
    """A small synthetic world of 12 parametric listeners."""
    return synthetic_world(n_tracks=600, seed=0, population=12)


def test_class_probabilities_are_those_of_the_sessions_draws(world: World) -> None:
    """A parametric session answers a track with the classes' probabilities at its current affinity (the session
    forked 20,000 times, each answering once): the ceiling is the listener itself."""
    session = world.listeners().session(0, np.random.default_rng(0))
    for track in (3, 40, 77):  # a few affinities
        session.respond(track)  # moves the state: boredom, played, drift
    tracks = np.arange(world.features.shape[0])
    affinities = np.array([session.affinity_now(int(t)) for t in tracks])
    order = np.argsort(affinities)
    for track in (int(order[0]), int(order[len(order) // 2]), int(order[-1])):
        expected = answer_class_probabilities(np.array([affinities[track]]),
                                              ResponseParams.of(ListenerConfig()))[0]
        answers = [session.fork(np.random.default_rng([1, i])).respond(track) for i in range(20_000)]
        drawn = np.bincount(answer_class(*map(np.array, zip(*answers, strict=True))), minlength=N_CLASSES) / 20_000
        assert expected.sum() == pytest.approx(1.0)
        np.testing.assert_allclose(drawn, expected, atol=0.012)


def test_reference_log_order_propensities_and_prefixes(world: World) -> None:
    """Round after round every listener plays a session; the log reads back in its order (listener after
    listener), uniform propensities 1/k, one affinity per answer, and ranks below n are the first n sessions."""
    logged = log_reference(world, EnvConfig(session_length=8), 30, "uniform", 0.3, seed=5)
    sessions = sessions_of(logged.frame, world.track_ids())
    assert sessions.n_sessions == 30 and len(logged.affinity) == len(logged.frame) == len(sessions.tracks)
    assert sorted(logged.rank.tolist()) == list(range(30))
    np.testing.assert_array_equal(logged.listener, logged.rank % 12)
    assert (np.diff(logged.listener) >= 0).all()  # listener after listener
    np.testing.assert_allclose(logged.frame["action_prob"], 0.25)
    assert (logged.frame["position"].to_numpy() <= 8).all()
    np.testing.assert_array_equal(world.track_ids().index(logged.frame["track_id"].iloc[0]), sessions.tracks[0])
    greedy = log_reference(world, EnvConfig(session_length=8), 12, "epsilon_greedy", 0.2, seed=5)
    assert set(np.round(greedy.frame["action_prob"], 6)) <= {0.05, 0.85}


def test_the_reference_predicts_its_log_better_than_the_rates(world: World) -> None:
    """On its own log, the reference's probabilities beat the log's class rates by a clear margin, and a subset
    of sessions finds its own rows (by session id)."""
    logged = log_reference(world, EnvConfig(), 120, "uniform", 0.3, seed=2)
    sessions = sessions_of(logged.frame, world.track_ids())
    probs = answer_class_probabilities(logged.affinity, ResponseParams.of(ListenerConfig()))
    reference = reference_predictor(probs, sessions)
    part = sessions.subset(np.arange(60, 120))
    assert log_likelihood(reference, part) > log_likelihood(rates_predictor(class_rates(sessions)), part) + 0.2
    np.testing.assert_array_equal(reference(part, 0, 0), probs[sessions.starts[60]:sessions.starts[61]])


def test_ranking_and_transfer() -> None:
    """Identical orders give tau 1, reversed -1; the transfer ratio is the ratio of reference scores."""
    names = ["random", "a", "b", "c"]
    ref = {n: np.full(5, v) for n, v in zip(names, [0.0, 0.2, 0.5, 0.9], strict=True)}
    same = ranking(ref, {n: v * 0.5 for n, v in ref.items()}, names)
    assert same["kendall_tau"] == pytest.approx(1.0) and same["ci95"] == [pytest.approx(1.0)] * 2
    assert same["mean_abs_difference"] == pytest.approx((0.1 + 0.25 + 0.45) / 3)
    flipped = ranking(ref, {n: -v for n, v in ref.items()}, names)
    assert flipped["kendall_tau"] == pytest.approx(-1.0)
    assert transfer(ref, "b", "c")["ratio"] == pytest.approx(0.5 / 0.9)


def test_normalized_scores_pool_steps_and_resample_listeners() -> None:
    """(policy − random) / (oracle − random) over the pooled steps; a bootstrap row counts listeners."""
    sums = {"random": np.array([0.0, 2.0]), "oracle": np.array([4.0, 6.0]), "p": np.array([2.0, 4.0])}
    played = Played([0, 1], sums, {name: np.array([2.0, 2.0]) for name in sums})
    weights = np.array([[1.0, 1.0], [2.0, 0.0]])
    scores = normalized_scores(played, weights)
    np.testing.assert_allclose(scores["p"], [0.5, 0.5])
    np.testing.assert_allclose(scores["random"], [0.0, 0.0])
    assert "oracle" not in scores
    w = bootstrap_weights(7, 50, np.random.default_rng(0))
    assert w.shape == (51, 7) and (w.sum(axis=1) == 7).all() and (w[0] == 1).all()


def test_a_policy_plays_the_same_sessions_whatever_was_played_before(world: World) -> None:
    """The random policy draws from each session's own seed: its figures do not depend on earlier plays (a log
    size's figures on which other sizes were measured)."""
    from envs.rewards import RewardConfig
    from music_rl.evaluation.new_listener import NewListenerConfig
    from music_rl.sim2real.config import Sim2RealConfig
    from music_rl.sim2real.protocol import Setting, baseline_players
    from music_rl.sim2real.scores import play

    env = EnvConfig(session_length=6, reward_source="simulator")
    setting = Setting(Sim2RealConfig(), env, ListenerConfig(population=12), RewardConfig(), NewListenerConfig(), 0)
    players = baseline_players(world, setting)
    first = play(world, env, {"random": players["random"]}, [0, 1], 3, seed=4)
    play(world, env, players, [2, 3], 2, seed=9)  # draws in between
    again = play(world, env, {"random": players["random"]}, [0, 1], 3, seed=4)
    np.testing.assert_array_equal(first.sums["random"], again.sums["random"])
