"""Tests of the simulated listeners: the interface and the factory, determinism, ranges, exact expectations
against Monte-Carlo, the response maths' scalar and vectorised paths, forks, session dynamics (boredom,
repeats, drift, leaving), the population split and the calibration figures."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import run_cli

from envs.listeners import (
    ListenerConfig,
    ListenerPopulation,
    ListenerSession,
    ParametricPopulation,
    ParametricSession,
    Population,
    Session,
    calibration_report,
    make_population,
    response_moments,
)
from envs.listeners.response import ResponseParams, answer_probabilities, exp_array, exp_scalar, moments, reward_of
from music_rl.core.errors import ConfigError
from music_rl.data.catalog import Normaliser, synthetic_catalog

N_TRACKS = 1500


@pytest.fixture(scope="module")
def X() -> np.ndarray:
    catalog = synthetic_catalog(N_TRACKS, seed=1)
    return Normaliser("physical").fit(catalog.raw).transform(catalog.raw)


@pytest.fixture(scope="module")
def pop(X: np.ndarray) -> ListenerPopulation:
    return ListenerPopulation.sample(X, ListenerConfig(population=10), np.random.default_rng(0))


def _play(pop: ListenerPopulation, listener: int, tracks: np.ndarray, seed: int) -> list[tuple[float, int]]:
    session = pop.session(listener, np.random.default_rng(seed))
    out = []
    for t in tracks:
        if session.left:
            break
        out.append(session.respond(int(t)))
    return out


def test_default_config_is_valid_and_bad_values_name_the_key() -> None:
    ListenerConfig().validate()
    for key, value in [("population", 0), ("held_out_fraction", 1.0), ("taste_width", 0.0), ("patience", 0),
                       ("taste_scaling", "zscore"), ("early_skip_max", 1.0), ("like_scale", 1.5),
                       ("partial_mean_high", 0.1), ("drift", -0.1), ("model", "bogus")]:
        with pytest.raises(ConfigError, match=rf"^listeners\.{key}={value!r}: must"):
            dataclasses.replace(ListenerConfig(), **{key: value}).validate()


def test_the_parametric_listener_implements_the_interface(X: np.ndarray, pop: ListenerPopulation) -> None:
    assert Population.__abstractmethods__ == {"session", "expected_reward_all"}
    assert Session.__abstractmethods__ == {"respond", "expected", "expected_reward", "fork"}
    assert ListenerPopulation is ParametricPopulation and ListenerSession is ParametricSession  # importers' names
    session = pop.session(0, np.random.default_rng(0))
    assert isinstance(pop, Population) and isinstance(session, Session)
    assert isinstance(session.fork(np.random.default_rng(1)), Session)
    made = make_population(X, ListenerConfig(population=10), np.random.default_rng(0))
    assert type(made) is ParametricPopulation  # listeners.model=parametric, the default, drawn as before
    np.testing.assert_array_equal(made.centres, pop.centres)
    np.testing.assert_array_equal(made.mixture, pop.mixture)
    assert make_population(X, ListenerConfig(population=10), np.random.default_rng(0), n=3).n == 3
    with pytest.raises(ConfigError, match=r"^listeners\.model='bogus': must be one of parametric, learnt$"):
        make_population(X, ListenerConfig(model="bogus"), np.random.default_rng(0))


def test_an_unknown_listener_model_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("train", "--cfg", "job", "listeners.model=bogus") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: listeners.model") and "bogus" in err[0]
    assert "parametric" in err[0]  # the choices


def test_population_is_determined_by_features_config_and_seed(X: np.ndarray, pop: ListenerPopulation) -> None:
    again = ListenerPopulation.sample(X, ListenerConfig(population=10), np.random.default_rng(0))
    other = ListenerPopulation.sample(X, ListenerConfig(population=10), np.random.default_rng(1))
    assert pop.n == again.n == 10
    np.testing.assert_array_equal(pop.centres, again.centres)
    np.testing.assert_array_equal(pop.affinity(3), again.affinity(3))
    assert not np.allclose(pop.affinity(3), other.affinity(3))
    tracks = np.random.default_rng(5).integers(N_TRACKS, size=30)
    assert _play(pop, 3, tracks, seed=7) == _play(again, 3, tracks, seed=7)
    assert _play(pop, 3, tracks, seed=7) != _play(pop, 3, tracks, seed=8)
    assert ListenerPopulation.sample(X, ListenerConfig(population=10), np.random.default_rng(0), n=4).n == 4


def test_responses_and_affinities_are_in_range(pop: ListenerPopulation) -> None:
    for listener in range(pop.n):
        a = pop.affinity(listener)
        assert a.shape == (N_TRACKS,) and a.min() >= 0 and a.max() <= 1
    rng = np.random.default_rng(0)
    answers = []
    for listener in range(pop.n):
        session = pop.session(listener, rng)
        for t in rng.integers(N_TRACKS, size=200):
            if session.left:
                session = pop.session(listener, rng)
            answers.append(session.respond(int(t)))
    pct = np.array([p for p, _ in answers])
    liked = np.array([lk for _, lk in answers])
    assert pct.min() >= 0 and pct.max() <= 1 and set(np.unique(liked)) <= {0, 1}
    assert (pct[liked == 1] == 1.0).all()  # likes only after a full listen
    assert liked.sum() > 0 and (pct < 0.1).sum() > 0 and ((pct > 0.1) & (pct < 1)).sum() > 0


def test_affinity_matrix_and_fresh_sessions_match_the_static_affinity(pop: ListenerPopulation) -> None:
    tracks = np.random.default_rng(2).integers(N_TRACKS, size=50)
    listeners = np.array([7, 0, 3])
    mat = pop.affinity_matrix(listeners, tracks)
    assert mat.shape == (3, 50)
    for row, listener in zip(mat, listeners, strict=True):
        np.testing.assert_allclose(row, pop.affinity(listener)[tracks], rtol=1e-9, atol=1e-12)
        session = pop.session(int(listener), np.random.default_rng(0))
        np.testing.assert_allclose(session.expected_reward(tracks, 10.0),
                                   pop.expected_reward_all(int(listener), 10.0)[tracks], rtol=1e-9)
        e_pct, p_like = session.expected(tracks)
        np.testing.assert_allclose(e_pct + 10.0 * p_like, session.expected_reward(tracks, 10.0), rtol=1e-12)


def _monte_carlo(pop: ListenerPopulation, listener: int, track: int, prefix: list[int], n: int, seed: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected reward (lw 10, penalty 2 below h = 0.3) predicted after ``prefix``; n drawn answers."""
    rng = np.random.default_rng(seed)
    predicted, pct, liked = [], np.empty(n), np.empty(n)
    for i in range(n):
        session = pop.session(listener, rng)
        for t in prefix:
            session.respond(t)
        predicted.append((session.expected([track]), session.expected_reward([track], 10.0, 2.0, 0.3)[0]))
        pct[i], liked[i] = session.respond(track)
    return np.array([p[1] for p in predicted]), pct, liked


@pytest.mark.parametrize("drift", [0.0, 0.1])
def test_expected_values_match_monte_carlo(X: np.ndarray, drift: float) -> None:
    """E[pct], P(liked) and the penalised expected reward agree with the mean of many drawn answers.

    Without drift the state after a prefix is the same in every draw: compare means to the prediction.
    With drift each draw has its own state: compare the draws to the mean of the per-draw predictions.
    """
    cfg = ListenerConfig(population=3, drift=drift, patience=100)
    pop = ListenerPopulation.sample(X, cfg, np.random.default_rng(4))
    a = pop.affinity(0)
    order = np.argsort(a)
    for track in (int(order[N_TRACKS // 2]), int(order[-3])):  # a typical and a well-liked track
        prefix = [int(order[-1]), int(order[-2])]  # plays that bore and shift the state
        predicted, pct, liked = _monte_carlo(pop, 0, track, prefix, n=6000, seed=track)
        reward = pct + 10.0 * liked - 2.0 * (pct < 0.3)
        se = reward.std() / np.sqrt(reward.size)
        assert abs(reward.mean() - predicted.mean()) < 4.5 * se + 1e-9
        if drift == 0.0:
            assert np.ptp(predicted) == 0.0
            session = pop.session(0, np.random.default_rng(0))
            for t in prefix:
                session.respond(t)
            e_pct, p_like = session.expected(np.array([track]))
            assert abs(pct.mean() - e_pct[0]) < 4.5 * pct.std() / np.sqrt(pct.size)
            assert abs(liked.mean() - p_like[0]) < 4.5 * max(liked.std(), 1e-3) / np.sqrt(liked.size)


def test_respond_draws_what_expected_predicts_in_the_current_state(X: np.ndarray) -> None:
    """Many forks of one session (the same state: boredom, a repeat, drift so far) answer a track; their mean
    answer is the session's ``expected`` and ``expected_reward``, and not the fresh session's (a repeat)."""
    pop = ListenerPopulation.sample(X, ListenerConfig(population=4, patience=100), np.random.default_rng(6))
    order = np.argsort(pop.affinity(1))
    liked, typical = int(order[-1]), int(order[N_TRACKS // 2])
    session = pop.session(1, np.random.default_rng(0))
    for t in (liked, int(order[-2]), typical):
        session.respond(t)
    n = 6000
    for track in (liked, int(order[-5])):  # a repeat and a well-liked track not yet played
        e_pct, p_like = session.expected(np.array([track]))
        predicted = session.expected_reward(np.array([track]), 10.0, 2.0, 0.3)[0]
        answers = np.array([session.fork(np.random.default_rng([track, i])).respond(track) for i in range(n)])
        pct, like = answers[:, 0], answers[:, 1]
        reward = pct + 10.0 * like - 2.0 * (pct < 0.3)
        se = reward.std() / np.sqrt(n)
        assert abs(pct.mean() - e_pct[0]) < 4.5 * pct.std() / np.sqrt(n)
        assert abs(like.mean() - p_like[0]) < 4.5 * max(like.std(), 1e-3) / np.sqrt(n)
        assert abs(reward.mean() - predicted) < 4.5 * se
        fresh = pop.expected_reward_all(1, 10.0, 2.0, 0.3)[track]
        if track == liked:  # the tolerance can fail: the fresh state's expectation is far outside it
            assert abs(reward.mean() - fresh) > 10 * se
    assert session.n_played == 3  # the forks moved nothing


def test_fork_leaves_the_session_and_its_random_stream_alone(X: np.ndarray) -> None:
    pop = ListenerPopulation.sample(X, ListenerConfig(population=5, patience=100), np.random.default_rng(2))
    a, b = pop.session(4, np.random.default_rng(3)), pop.session(4, np.random.default_rng(3))
    for t in (10, 20):
        a.respond(t), b.respond(t)
    twin = a.fork(np.random.default_rng(99))
    twin_answers = [twin.respond(t) for t in range(30, 60)]
    probe = np.arange(100, 140)
    np.testing.assert_array_equal(a.expected_reward(probe, 10.0), b.expected_reward(probe, 10.0))
    assert (a.left, a.n_played, a.skips) == (b.left, b.n_played, b.skips) == (False, 2, b.skips)
    assert [a.respond(t) for t in range(30, 60)] == [b.respond(t) for t in range(30, 60)] != twin_answers
    assert twin.n_played == 32


def test_scalar_and_vectorised_response_maths_agree() -> None:
    """The one kernel on Python floats (a step) and on arrays agrees to 1e-12, and with the module docstring's
    closed forms, over random response parameters (a slope steep enough to saturate the sigmoid included)."""
    rng = np.random.default_rng(0)
    for trial in range(30):
        low = rng.uniform(0.05, 0.9)
        cfg = ListenerConfig(early_skip_threshold=rng.uniform(), early_skip_slope=1e-4 if trial == 0 else
                             rng.uniform(0.01, 0.5), early_skip_max=rng.uniform(0.01, 0.5),
                             full_listen_scale=rng.uniform(), partial_mean_low=low,
                             partial_mean_high=rng.uniform(low, 0.95), like_scale=rng.uniform(),
                             like_power=rng.uniform(0.5, 5.0))
        p = ResponseParams.of(cfg)
        a = np.r_[0.0, 1.0, cfg.early_skip_threshold, rng.uniform(size=100)]
        scalar = np.array([answer_probabilities(float(x), p, exp_scalar) for x in a]).T
        np.testing.assert_allclose(answer_probabilities(a, p, exp_array), scalar, rtol=1e-12, atol=1e-15)
        for penalty, threshold in ((0.0, 0.1), (2.0, rng.uniform(0.0, 1.2))):
            vector = reward_of(a, p, 10.0, penalty, threshold, exp_array)
            one = [reward_of(float(x), p, 10.0, penalty, threshold, exp_scalar) for x in a]
            np.testing.assert_allclose(vector, one, rtol=1e-12, atol=1e-12)
        e = cfg.early_skip_max
        q_e = 0.5 * (1.0 + np.tanh(0.5 * (cfg.early_skip_threshold - a) / cfg.early_skip_slope))
        q_f, m = cfg.full_listen_scale * a, cfg.partial_mean_low + (cfg.partial_mean_high - cfg.partial_mean_low) * a
        e_pct, full, q_like, _ = moments(a, p, exp_array)
        np.testing.assert_allclose(e_pct, q_e * e / 2 + (1 - q_e) * (q_f + (1 - q_f) * (e + (1 - e) * m)),
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(full * q_like, (1 - q_e) * q_f * cfg.like_scale * a**cfg.like_power,
                                   rtol=1e-12, atol=1e-12)


def test_response_moments_penalty_probability() -> None:
    cfg = ListenerConfig()
    a = np.array([0.0, 0.3, 0.9])
    _, _, below_e = response_moments(a, cfg, threshold=0.05)
    _, _, at_e = response_moments(a, cfg, threshold=cfg.early_skip_max)
    _, _, at_one = response_moments(a, cfg, threshold=1.0)
    q_e = 1.0 / (1.0 + np.exp((a - cfg.early_skip_threshold) / cfg.early_skip_slope))
    np.testing.assert_allclose(at_e, q_e)
    np.testing.assert_allclose(below_e, q_e / 2)
    np.testing.assert_allclose(at_one, 1 - (1 - q_e) * cfg.full_listen_scale * a)  # all but full listens


def test_listener_leaves_after_patience_consecutive_skips(X: np.ndarray) -> None:
    always_skip = ListenerConfig(population=2, patience=4, early_skip_threshold=1.0, early_skip_slope=1e-4)
    pop = ListenerPopulation.sample(X, always_skip, np.random.default_rng(0))
    session = pop.session(0, np.random.default_rng(0))
    for i in range(4):
        assert not session.left
        pct, _ = session.respond(i)
        assert pct < 0.1
    assert session.left and session.n_played == 4
    with pytest.raises(RuntimeError, match="left"):
        session.respond(10)

    cfg = ListenerConfig(population=3, patience=3)
    pop = ListenerPopulation.sample(X, cfg, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    lengths = []
    for _ in range(60):  # leaving happens exactly at the first run of `patience` skips
        session = pop.session(int(rng.integers(3)), rng)
        skips = []
        while not session.left and len(skips) < 200:
            skips.append(session.respond(int(rng.integers(N_TRACKS)))[0] < 0.5)
        runs = [all(skips[i - 3:i]) for i in range(3, len(skips) + 1)]
        assert session.left == any(runs)
        if session.left:
            assert runs.index(True) == len(skips) - 3
        lengths.append(len(skips))
    assert min(lengths) < 200  # some sessions end early


def test_boredom_lowers_near_repeats_and_repeats_most(X: np.ndarray) -> None:
    cfg = ListenerConfig(population=2, drift=0.0, patience=100)
    pop = ListenerPopulation.sample(X, cfg, np.random.default_rng(3))
    table = pop.session_table(0)
    proj = table[:, -3:]
    played = int(np.argmax(pop.affinity(0)))
    dist = np.linalg.norm(proj - proj[played], axis=1)
    dist[played] = np.inf
    near, far = int(np.argmin(dist)), int(np.argmax(np.where(np.isfinite(dist), dist, -1)))
    session = pop.session(0, np.random.default_rng(0))
    before = session.expected_reward(np.array([near, far, played]), 10.0)
    a_before = [session.affinity_now(t) for t in (near, far, played)]
    session.respond(played)
    after = session.expected_reward(np.array([near, far, played]), 10.0)
    a_after = [session.affinity_now(t) for t in (near, far, played)]
    assert after[0] < before[0]
    bored = 1 - cfg.boredom * np.exp(-dist[near] ** 2 / (2 * cfg.boredom_width**2))
    assert a_after[0] == pytest.approx(a_before[0] * bored)
    assert a_after[1] == pytest.approx(a_before[1], rel=1e-6)  # far away: not boring
    assert a_after[2] == pytest.approx(a_before[2] * (1 - cfg.boredom) * (1 - cfg.repeat_penalty))
    for _ in range(cfg.boredom_window):  # the window forgets: only the repeat penalty stays
        session.respond(far)
    assert session.affinity_now(played) == pytest.approx(a_before[2] * (1 - cfg.repeat_penalty), rel=1e-3)


def test_drift_moves_the_mixture_only_when_on(X: np.ndarray) -> None:
    tracks = np.arange(0, N_TRACKS, 50)
    for drift, moves in ((0.0, False), (0.3, True)):
        cfg = ListenerConfig(population=1, drift=drift, patience=100, boredom_window=0, repeat_penalty=0.0)
        pop = ListenerPopulation.sample(X, cfg, np.random.default_rng(0))
        session = pop.session(0, np.random.default_rng(0))
        start = session.expected_reward(tracks, 10.0)
        for t in range(30):
            session.respond(t)
        assert (not np.allclose(session.expected_reward(tracks, 10.0), start)) == moves


def test_split_is_disjoint_complete_and_seeded(pop: ListenerPopulation) -> None:
    train, held = pop.split(0.2, np.random.default_rng(0))
    assert len(held) == 2 and len(train) == 8 and not set(train) & set(held)
    assert sorted([*train, *held]) == list(range(10))
    again = pop.split(0.2, np.random.default_rng(0))
    np.testing.assert_array_equal(train, again[0])
    assert len(pop.split(0.0, np.random.default_rng(0))[1]) == 0
    with pytest.raises(ConfigError, match="held_out_fraction"):
        pop.split(1.0, np.random.default_rng(0))


def test_calibration_figures(X: np.ndarray) -> None:
    report = calibration_report(X, ListenerConfig(population=20), np.random.default_rng(0), n_queries=100)
    assert 0.05 <= report["like_rate"] <= 0.2
    assert report["oracle_ratio"] >= 1.4
    assert report["oracle_reward"] > report["random_reward"] > 0
