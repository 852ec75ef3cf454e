"""The learnt listener (music_rl.user_model): it learns, it is a listener (the envs.listeners interface), its
expectations are those of its answers, fork, its model file, and the fit logs it refuses."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mssd import mssd_files

from envs.listeners import LearntConfig, ListenerConfig, Population, Session, make_population
from envs.simulated_logs import random_walk_log
from envs.world import World, synthetic_world
from music_rl.core.errors import ConfigError, FeedbackError, RunFolderError
from music_rl.data.feedback import COLUMNS, write_feedback
from music_rl.user_model.features import N_CONTEXT, N_SESSION, answer_inputs, taste_readout
from music_rl.user_model.fidelity import log_likelihood
from music_rl.user_model.run import MODEL_FILE, fit_listener, load_listener, save_listener
from music_rl.user_model.sessions import read_fit_log, sessions_of
from music_rl.user_model.simulator import LearntListener


@pytest.fixture(scope="module")
def world() -> World:
    """A small synthetic world of 30 parametric listeners."""
    return synthetic_world(n_tracks=600, seed=0, population=30)


@pytest.fixture(scope="module")
def parametric_log(world: World) -> pd.DataFrame:
    """12 random-walk sessions of each of the world's 30 parametric listeners."""
    population = world.listeners()
    return random_walk_log(population, range(population.n), world.candidate_index(4, 20), 12, 20,
                           world.track_ids(), np.random.default_rng(1))


def _config(kind: str = "sequential", **learnt: object) -> ListenerConfig:
    return ListenerConfig(model="learnt", fit_log="log.csv", learnt=LearntConfig(kind=kind, **learnt))


def _fit(world: World, log: pd.DataFrame, kind: str, **learnt: object) -> tuple[LearntListener, dict]:
    torch.set_num_threads(1)
    return fit_listener(sessions_of(log, world.track_ids()), world.track_ids(), world.features, world.latents,
                        _config(kind, **learnt), seed=0)


@pytest.fixture(scope="module", params=["sequential", "independent"])
def fitted(request: pytest.FixtureRequest, world: World, parametric_log: pd.DataFrame
           ) -> tuple[LearntListener, dict]:
    """The learnt listener of each kind fitted on the parametric log, and its fidelity."""
    return _fit(world, parametric_log, request.param)


def test_the_learnt_listener_predicts_held_out_answers_better_than_the_rates(fitted) -> None:
    model, fidelity = fitted
    assert fidelity["fit"]["split_by"] == "listener" and fidelity["fit"]["sessions"]["held_out"] >= 50
    learnt, rates = fidelity["learnt"], fidelity["rates"]
    assert learnt["log_likelihood"] > rates["log_likelihood"] + 0.04, fidelity  # nats per answer
    assert learnt["skip_accuracy"] > max(rates["skip_accuracy"], fidelity["previous"]["skip_accuracy"]), fidelity


def test_the_learnt_listener_is_a_listener(fitted, world: World) -> None:
    model, _ = fitted
    population = make_population(world.features, _config(), np.random.default_rng(0), n=7, fitted=model)
    assert isinstance(population, Population) and population.n == 7
    train, held = population.split(0.3, np.random.default_rng(0))
    assert len(held) == 2 and not set(train) & set(held)
    assert population.expected_reward_all(3, 10.0).shape == (world.features.shape[0],)
    session = population.session(3, np.random.default_rng(1))
    assert isinstance(session, Session) and session.listener == 3 and not session.left
    steps = 0
    while not session.left and steps < 500:
        pct, liked = session.respond(steps)
        assert 0.0 <= pct <= 1.0 and liked in (0, 1)
        steps += 1
    assert session.left, "a learnt listener ends its sessions"
    with pytest.raises(RuntimeError):
        session.respond(0)


def test_expected_agrees_with_respond(fitted, world: World) -> None:
    model, _ = fitted
    population = model.population(world.features, _config(), np.random.default_rng(0), n=3)
    session = _with_history(population, (5, 6, 7))
    tracks = np.array([10, 200, 400])
    e_pct, p_liked = session.expected(tracks)
    reward = session.expected_reward(tracks, 10.0, early_skip_penalty=2.0, early_skip_threshold=0.1)
    n = 4000
    rng = np.random.default_rng(3)
    for i, track in enumerate(tracks):
        answers = np.array([session.fork(rng).respond(int(track)) for _ in range(n)])
        pct, liked = answers[:, 0], answers[:, 1]
        assert abs(pct.mean() - e_pct[i]) < 4 * pct.std() / np.sqrt(n) + 1e-9
        assert abs(liked.mean() - p_liked[i]) < 4 * np.sqrt(p_liked[i] * (1 - p_liked[i]) / n) + 1e-3
        drawn = pct + 10.0 * liked - 2.0 * (pct < 0.1)
        assert abs(drawn.mean() - reward[i]) < 4 * drawn.std() / np.sqrt(n) + 1e-9


def _with_history(population: Population, tracks: tuple[int, ...]) -> Session:
    """A session of listener 1 that heard ``tracks`` and is still there (the first seed that gives one)."""
    for seed in range(100):
        session = population.session(1, np.random.default_rng(seed))
        for track in tracks:
            if not session.left:
                session.respond(track)
        if not session.left:
            return session
    raise AssertionError("every session left")


def test_fork_leaves_the_original_alone(fitted, world: World) -> None:
    model, _ = fitted
    population = model.population(world.features, _config(), np.random.default_rng(0), n=3)
    session = _with_history(population, (1, 2))
    twin_source = session.fork(np.random.default_rng(5))
    session._rng = np.random.default_rng(5)  # the two now draw the same answers
    before = session.expected_reward(np.arange(20), 10.0)
    fork = session.fork(np.random.default_rng(9))
    for track in range(30, 40):
        if fork.left:
            break
        fork.respond(track)
    np.testing.assert_array_equal(session.expected_reward(np.arange(20), 10.0), before)
    assert session.respond(50) == twin_source.respond(50)  # its own random stream untouched


def test_the_numpy_net_is_the_torch_net(fitted, world: World, parametric_log: pd.DataFrame) -> None:
    from music_rl.user_model.fit import Steps

    model, _ = fitted
    sessions = sessions_of(parametric_log, world.track_ids()).subset(np.arange(3))
    steps = Steps.of(sessions, model.latents, model.features, model.basis())
    with torch.no_grad():
        expected = model.torch_net()(*steps.batch(np.array([0]))[:2])[0].double().numpy()
    net = model.net()
    tracks, pct, liked = sessions.session(0)
    memory = np.zeros(net.memory)
    n_track = model.latents.shape[1] + model.features.shape[1]
    inputs = steps.inputs.double().numpy()  # [z, x], the session and taste features, the listener summary
    for i, t in enumerate(tracks.tolist()):
        context, user = inputs[i:i + 1, n_track:n_track + N_CONTEXT], inputs[i, n_track + N_CONTEXT:]
        # the simulator reads the listener's taste at the track from its summary as fitting did
        np.testing.assert_allclose(context[0, N_SESSION:], model.basis().weights[t] @ taste_readout(user), atol=1e-5)
        got = net.logits(np.array([t]), context, net.rest(user, memory))[0]
        np.testing.assert_allclose(got, expected[i], atol=2e-4)
        if net.memory:
            memory = net.step(memory, t, answer_inputs([pct[i]], [liked[i]])[0])


def test_the_model_file_round_trips_and_refuses_another_catalog(fitted, world: World, tmp_path: Path) -> None:
    model, fidelity = fitted
    save_listener(tmp_path, model, fidelity)
    ckpt = torch.load(tmp_path / MODEL_FILE, weights_only=True)
    assert ckpt["kind"] == model.kind and ckpt["fingerprint"] == model.fingerprint
    loaded = load_listener(tmp_path / MODEL_FILE, world)
    cfg = _config()
    a = model.population(world.features, cfg, np.random.default_rng(4), n=5)
    b = loaded.population(world.features, cfg, np.random.default_rng(4), n=5)
    np.testing.assert_allclose(a.expected_reward_all(2, 10.0), b.expected_reward_all(2, 10.0), rtol=1e-12)
    s, t = a.session(2, np.random.default_rng(8)), b.session(2, np.random.default_rng(8))
    assert [s.respond(i) for i in range(3)] == [t.respond(i) for i in range(3)]
    other = synthetic_world(n_tracks=600, seed=1, population=5)
    with pytest.raises(RunFolderError, match=r"model\.pt: fitted on another catalog \(fingerprint"):
        load_listener(tmp_path / MODEL_FILE, other)
    (tmp_path / "garbled.pt").write_bytes(b"not a model")
    with pytest.raises(RunFolderError, match="not a listener model torch can read"):
        load_listener(tmp_path / "garbled.pt", world)


def test_fitting_is_seeded(world: World, parametric_log: pd.DataFrame) -> None:
    first, _ = _fit(world, parametric_log, "sequential", max_epochs=2)
    again, _ = _fit(world, parametric_log, "sequential", max_epochs=2)
    for key, value in first.weights.items():
        np.testing.assert_array_equal(value, again.weights[key])


def _write(log: pd.DataFrame, path: Path) -> str:
    write_feedback(log[list(COLUMNS)], path)
    return str(path)


def test_ten_sessions_fit_and_nine_are_refused(world: World, parametric_log: pd.DataFrame, tmp_path: Path) -> None:
    sessions = parametric_log["session_id"].unique()
    nine = _write(parametric_log[parametric_log["session_id"].isin(sessions[:9])], tmp_path / "nine.csv")
    with pytest.raises(FeedbackError, match=r"nine\.csv: 9 session\(s\): a listener is fitted on at least 10"):
        read_fit_log(nine, world.track_ids())
    ten = _write(parametric_log[parametric_log["session_id"].isin(sessions[:10])], tmp_path / "ten.csv")
    fit_sessions, _ = read_fit_log(ten, world.track_ids())
    model, fidelity = fit_listener(fit_sessions, world.track_ids(), world.features, world.latents,
                                   _config(max_epochs=2), seed=0)
    assert fidelity["fit"]["split_by"] == "session" and fidelity["fit"]["sessions"]["held_out"] == 2
    assert np.isfinite(fidelity["learnt"]["log_likelihood"])


def test_unknown_tracks_are_dropped_and_a_log_of_none_is_refused(world: World, parametric_log: pd.DataFrame,
                                                                  tmp_path: Path) -> None:
    log = parametric_log.copy()
    log.loc[:4, "track_id"] = "not-a-track"
    sessions, report = read_fit_log(_write(log, tmp_path / "some.csv"), world.track_ids())
    assert report.unknown_rows == 5 and len(sessions.tracks) == len(log) - 5
    log["track_id"] = "elsewhere"
    with pytest.raises(FeedbackError, match="joins no row of the catalog"):
        read_fit_log(_write(log, tmp_path / "none.csv"), world.track_ids())


def test_nan_answers_are_refused(world: World, parametric_log: pd.DataFrame, tmp_path: Path) -> None:
    log = parametric_log.copy()
    log["percentage_listened"] = log["percentage_listened"].astype(object)
    log.loc[3, "percentage_listened"] = "NaN"
    log.to_csv(tmp_path / "nan.csv", index=False)
    with pytest.raises(FeedbackError, match=r"column percentage_listened, row 4: must be a number in \[0, 1\]"):
        read_fit_log(str(tmp_path / "nan.csv"), world.track_ids())


def test_an_mssd_log_without_user_ids_fits(tmp_path: Path) -> None:
    from envs.world import pca_latents
    from music_rl.data.catalog import DataConfig, Normaliser, load_catalog

    tracks, log = mssd_files(tmp_path, n_sessions=30, unknown=3, no_flag=5)
    catalog = load_catalog(DataConfig(source="csv", path=str(tracks)), seed=0, min_tracks=5)
    ids = catalog.tracks["track_id"].astype(str).tolist()
    features = Normaliser().fit(catalog.raw).transform(catalog.raw)
    sessions, report = read_fit_log(str(log), ids)
    assert not sessions.has_users and report.unknown_rows == 3 and report.no_flag_rows == 5
    model, fidelity = fit_listener(sessions, ids, features, pca_latents(features, 4), _config(max_epochs=3),
                                   seed=0)
    assert fidelity["fit"]["split_by"] == "session" and model.listeners.shape[0] == 1
    assert set(fidelity) == {"learnt", "rates", "previous", "fit"}


def test_a_reference_predictor_is_measured(world: World, parametric_log: pd.DataFrame) -> None:
    from music_rl.user_model.answers import N_CLASSES

    def uniform(sessions, s, given):
        return np.full((len(sessions.session(s)[0]), N_CLASSES), 1.0 / N_CLASSES)

    sessions = sessions_of(parametric_log, world.track_ids())
    _, fidelity = fit_listener(sessions, world.track_ids(), world.features, world.latents, _config(max_epochs=1),
                               seed=0, reference=uniform)
    assert fidelity["reference"]["log_likelihood"] == pytest.approx(np.log(1.0 / N_CLASSES), abs=1e-6)
    assert log_likelihood(uniform, sessions) == pytest.approx(np.log(1.0 / N_CLASSES))


def test_the_config_rules() -> None:
    with pytest.raises(ConfigError, match=r"listeners\.fit_log=None: listeners\.model=learnt is fitted on a session"):
        ListenerConfig(model="learnt").validate()
    with pytest.raises(ConfigError, match=r"listeners\.fit_log='log\.csv': is read by listeners\.model=learnt only"):
        ListenerConfig(fit_log="log.csv").validate()
    with pytest.raises(ConfigError, match=r"listeners\.learnt\.holdout=0\.5: must be in \(0, 0\.3\]"):
        _config(holdout=0.5).validate()
    with pytest.raises(ConfigError, match="no fitted listener given"):
        make_population(np.random.default_rng(0).random((20, 11)), _config(), np.random.default_rng(0))
    plain = dataclasses.asdict(_config("independent"))
    assert ListenerConfig.of(plain) == _config("independent")
