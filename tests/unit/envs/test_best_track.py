"""The catalog oracle's track (:meth:`Session.best_track`): the interface's full scan, and the parametric listener's
search through its taste index, which must give the full scan's row (ties to the lower row) in every state: after
random and best plays (boredom, repeats, drift), for several listener and reward configs, on a catalog of distinct
tracks and on one of many duplicated feature rows (exact ties)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import envs.listeners.parametric as parametric
from envs.listeners import ListenerConfig, ParametricPopulation, ParametricSession, Session, TasteScaling
from envs.listeners.parametric import _BLOCK, _reward_floor, _rewards_rise, _z_order
from envs.listeners.response import ResponseParams, exp_array, reward_of
from music_rl.data.catalog import Normaliser, synthetic_catalog

N_TRACKS = 4000
REWARDS = [(10.0, 0.0, 0.1), (0.0, 0.0, 0.1), (100.0, 0.0, 0.1), (10.0, 0.5, 0.1), (0.0, 2.0, 0.5), (100.0, 1.0, 0.0)]
CONFIGS = {
    "default": ListenerConfig(population=4),
    "four centres, strong drift and boredom": ListenerConfig(population=4, n_taste_centres=4, drift=0.5,
                                                             boredom=0.9, boredom_window=5),
    "one centre, tracks heard bore and repeat fully": ListenerConfig(population=4, n_taste_centres=1, boredom=1.0,
                                                                     repeat_penalty=1.0, taste_width=0.3),
    "pooled, no boredom, steep skips": ListenerConfig(population=4, taste_scaling=TasteScaling.pooled, boredom_window=0,
                                                      early_skip_slope=0.01, early_skip_threshold=0.6,
                                                      like_power=1.0, partial_mean_high=0.95),
}


@pytest.fixture(scope="module")
def X() -> np.ndarray:
    catalog = synthetic_catalog(N_TRACKS, seed=2)
    return Normaliser("physical").fit(catalog.raw).transform(catalog.raw)


@pytest.fixture(scope="module")
def X_duplicated(X: np.ndarray) -> np.ndarray:
    """150 distinct feature rows, each repeated about 27 times at random rows: tracks of equal reward."""
    return X[np.random.default_rng(3).integers(0, 150, size=N_TRACKS)]


@pytest.fixture
def walk_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """The search never hands over to the full scan for the share of the catalog it reads: every state tests the
    search itself (the defaults hand a small catalog like this one to the full scan where the search would read
    more than an eighth of it)."""
    monkeypatch.setattr(parametric, "_WALK_UNTIL", 2.0)


def full_scan(session: Session, excluded: np.ndarray, *reward: float) -> int:
    """The full scan's row: the interface's default, whatever the session's own method does."""
    return Session.best_track(session, N_TRACKS, excluded, *reward)


def states(pop: ParametricPopulation, seed: int, steps: int) -> Iterator[tuple[ParametricSession, np.ndarray]]:
    """Sessions of every listener along ``steps`` plays (half random tracks, half the best one, some played
    again), each state with the tracks excluded there (the session's tracks, or a random set)."""
    rng = np.random.default_rng(seed)
    for listener in range(pop.n):
        session = pop.session(listener, np.random.default_rng(seed + listener))
        played: list[int] = []
        for _ in range(steps):
            excluded = np.array(played, dtype=np.int64) if rng.random() < 0.7 else rng.choice(
                N_TRACKS, size=int(rng.integers(0, 40)), replace=False)
            yield session, excluded
            if session.left:
                break
            pick = rng.random()
            if pick < 0.4:
                track = int(rng.integers(N_TRACKS))
            elif pick < 0.5 and played:
                track = played[int(rng.integers(len(played)))]  # a repeat
            else:
                track = full_scan(session, excluded, *REWARDS[0])
            session.respond(track)
            played.append(track)


def reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records the number of tracks of each :meth:`ParametricSession.affinities_now` call."""
    read: list[int] = []
    affinities_now = ParametricSession.affinities_now

    def counting(self: ParametricSession, tracks: np.ndarray) -> np.ndarray:
        read.append(len(tracks))
        return affinities_now(self, tracks)

    monkeypatch.setattr(ParametricSession, "affinities_now", counting)
    return read


def searched(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records, per call of the search, whether it decided (True) or handed over to the full scan."""
    decided: list[bool] = []
    search = ParametricSession._search

    def recording(self: ParametricSession, *args: object) -> object:
        found = search(self, *args)  # type: ignore[arg-type]
        decided.append(found is not None)
        return found

    monkeypatch.setattr(ParametricSession, "_search", recording)
    return decided


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("duplicated", [False, True], ids=["distinct", "duplicated"])
def test_the_search_finds_the_full_scans_row(X: np.ndarray, X_duplicated: np.ndarray, name: str, duplicated: bool,
                                             walk_everywhere: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hundreds of states a config and catalog, each reward: the same row as the full scan, ties included."""
    pop = ParametricPopulation.sample(X_duplicated if duplicated else X, CONFIGS[name], np.random.default_rng(1))
    decided = searched(monkeypatch)
    n_states = ties = 0
    deepest: list[int] = []  # the tracks a search read
    for session, excluded in states(pop, seed=5, steps=12):
        for reward in REWARDS:
            expected = full_scan(session, excluded, *reward)
            with monkeypatch.context() as patch:
                read = reads(patch)
                assert session.best_track(N_TRACKS, excluded, *reward) == expected
            deepest.append(sum(read))
            values = session.expected_reward(np.arange(N_TRACKS), *reward)
            values[excluded] = -np.inf
            ties += int(np.count_nonzero(values == values[expected]) > 1)
            n_states += 1
    assert n_states >= 200 and len(decided) == n_states and all(decided)
    assert np.median(deepest) < N_TRACKS / 4  # it stopped early, most often
    if duplicated:
        assert ties > n_states // 4  # the lower row among equal rewards, often


def test_at_the_defaults_the_search_reads_a_few_blocks_or_hands_over_to_the_full_scan(
        X: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    """20000 tracks at the defaults: the search decides nearly every step of sessions the oracle plays, reading a
    few blocks of 64 tracks. Where it would read more than ``_WALK_UNTIL`` of the catalog (none, here) it hands the
    state over to the full scan: the same row."""
    decided = searched(monkeypatch)
    catalog = synthetic_catalog(20000, seed=4)
    pop = ParametricPopulation.sample(Normaliser("physical").fit(catalog.raw).transform(catalog.raw),
                                      ListenerConfig(population=3), np.random.default_rng(0))
    deepest: list[int] = []
    for listener in range(pop.n):
        session = pop.session(listener, np.random.default_rng(listener))
        played: list[int] = []
        for _ in range(10):
            excluded = np.array(played, dtype=np.int64)
            expected = Session.best_track(session, 20000, excluded, *REWARDS[0])
            with monkeypatch.context() as patch:
                read = reads(patch)
                assert session.best_track(20000, excluded, *REWARDS[0]) == expected
            deepest.append(sum(read))
            with monkeypatch.context() as patch:
                patch.setattr(parametric, "_WALK_UNTIL", 0.0)
                assert session.best_track(20000, excluded, *REWARDS[0]) == expected
            session.respond(expected)
            played.append(expected)
    assert len(decided) == 60 and decided[0::2] == [True] * 30 and decided[1::2] == [False] * 30
    assert np.median(deepest) < 1000


def test_a_reward_that_may_fall_with_affinity_takes_the_full_scan(X: np.ndarray,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A negative like weight or penalty, a negative threshold, a listener whose likes fall with affinity, or one
    whose boredom or repeats raise an affinity (configs validate() refuses): the premise fails, the full scan decides
    (the search is not called), with the full scan's row."""
    decided = searched(monkeypatch)
    pop = ParametricPopulation.sample(X, ListenerConfig(population=2), np.random.default_rng(0))
    def unvalidated(**values: Any) -> ParametricPopulation:
        return ParametricPopulation(X, dataclasses.replace(pop.cfg, **values), pop.centres, pop.weights, pop.mixture)

    falling = unvalidated(like_power=-1.0)
    for population, reward in [(pop, (-1.0, 0.0, 0.1)), (pop, (10.0, -1.0, 0.1)), (pop, (10.0, 1.0, -0.2)),
                               (falling, (10.0, 0.0, 0.1)), (unvalidated(boredom=-0.5), (10.0, 0.0, 0.1)),
                               (unvalidated(repeat_penalty=-0.5), (10.0, 0.0, 0.1))]:
        for session, excluded in states(population, seed=2, steps=4):
            assert session.best_track(N_TRACKS, excluded, *reward) == full_scan(session, excluded, *reward)
    assert not decided
    assert _rewards_rise(ResponseParams.of(pop.cfg), 10.0, 0.0, 0.1)
    assert not _rewards_rise(ResponseParams.of(falling.cfg), 10.0, 0.0, 0.1)


def test_the_reward_rises_with_affinity_for_validated_configs() -> None:
    """The search's premise, on random configs in the validated ranges: the exact reward is non-decreasing in ``a``
    on a fine grid (up to rounding), and :func:`_rewards_rise` says so."""
    rng = np.random.default_rng(0)
    a = np.linspace(0.0, 1.0, 20001)
    for _ in range(300):
        low = float(rng.uniform(0.01, 0.98))
        cfg = ListenerConfig(early_skip_threshold=float(rng.uniform(0, 1)),
                             early_skip_slope=float(rng.uniform(0.005, 1)),
                             early_skip_max=float(rng.uniform(0.01, 0.99)),
                             full_listen_scale=float(rng.uniform(0, 1)), partial_mean_low=low,
                             partial_mean_high=float(rng.uniform(low, 0.99)), like_scale=float(rng.uniform(0, 1)),
                             like_power=float(rng.uniform(0.1, 5)))
        cfg.validate()
        reward = (float(rng.choice([0.0, 1.0, 10.0, 100.0])), float(rng.choice([0.0, 0.5, 5.0])),
                  float(rng.uniform(0, 1)))
        p = ResponseParams.of(cfg)
        values = reward_of(a, p, *reward, exp_array)
        assert np.diff(values).min() >= -1e-12 * (1 + reward[0] + reward[1])
        assert _rewards_rise(p, *reward)


def test_the_floor_is_below_the_best_affinity_by_more_than_the_rounding() -> None:
    """The affinity below which no track can reach the best one's reward: below ``a*``, its reward below ``a*``'s by
    more than three times the rounding bound, and as close to ``a*`` as the grid allows where the reward rises;
    none (-1) where the reward is flat in floats (a step-like early skip far above the best affinity) or moves by
    less than the rounding bound (a best affinity of 0 or nearly)."""
    p = ResponseParams.of(ListenerConfig())
    for best in (1.0, 0.93, 0.5, 0.01):
        for reward in REWARDS:
            tol = 1e-10 * (1 + reward[0] + reward[1]) / (1 - ListenerConfig().partial_mean_high)
            floor = _reward_floor(best, p, tol, *reward)
            values = reward_of(np.array([floor, best]), p, *reward, exp_array)
            assert 0.0 <= floor < best and values[0] < values[1] - 3 * tol
            assert best - floor < 1e-5 or floor == 0.0
    flat = ResponseParams.of(ListenerConfig(early_skip_threshold=1.0, early_skip_slope=0.001))
    assert _reward_floor(0.5, flat, 1e-10, 10.0, 0.0, 0.1) == -1.0
    assert _reward_floor(0.0, p, 1e-10, 10.0, 0.0, 0.1) == _reward_floor(1e-9, p, 5e-9, 10.0, 0.0, 0.1) == -1.0


def test_the_taste_index_is_the_catalog_in_blocks_of_close_affinities(X: np.ndarray) -> None:
    pop = ParametricPopulation.sample(X, ListenerConfig(population=2, n_taste_centres=3), np.random.default_rng(0))
    order, block_max = pop.taste_index(1)
    assert pop.taste_index(1)[0] is order  # cached
    assert order.dtype == np.int32 and np.array_equal(np.sort(order), np.arange(N_TRACKS))
    affinities = pop.centre_affinities(1)
    assert block_max.shape == (3, -(-N_TRACKS // _BLOCK)) and block_max.flags.c_contiguous
    for b in (0, 7, block_max.shape[1] - 1):
        np.testing.assert_array_equal(block_max[:, b], affinities[order[b * _BLOCK:(b + 1) * _BLOCK]].max(axis=0))
    prefixes = _z_order(affinities)[order] >> np.uint64(11)  # the sort reads the top 52 bits (12 for 4000 rows)
    assert (prefixes[1:] >= prefixes[:-1]).all()
    # Z-order: bit k of each coordinate's 21-bit quantisation at bit 3k + c
    point = np.array([[0.5, 0.25, 1.0]])
    q = [1 << 20, 1 << 19, (1 << 21) - 1]
    assert int(_z_order(point)[0]) == sum(((q[c] >> k) & 1) << (3 * k + c) for c in range(3) for k in range(21))


class _Table(Session):
    """A listener that knows only its expected rewards (as the learnt listener): the interface's full scan."""

    listener, left = 0, False

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def respond(self, track: int) -> tuple[float, int]:
        raise NotImplementedError

    def expected(self, tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def expected_reward(self, tracks: np.ndarray, like_weight: float, early_skip_penalty: float = 0.0,
                        early_skip_threshold: float = 0.1) -> np.ndarray:
        values: np.ndarray = self.values[tracks].copy()
        return values

    def fork(self, rng: np.random.Generator) -> Session:
        return self


def test_the_interfaces_best_track_scans_every_track() -> None:
    session = _Table(np.array([0.5, 2.0, 1.0, 2.0, 0.1]))
    assert session.best_track(5, np.array([], dtype=np.int64), 10.0) == 1  # ties to the lower row
    assert session.best_track(5, np.array([1]), 10.0) == 3
    assert session.best_track(5, np.array([1, 3]), 10.0) == 2
    np.testing.assert_array_equal(session.values, [0.5, 2.0, 1.0, 2.0, 0.1])  # its values untouched


def test_a_parametric_session_refuses_another_catalogs_size(X: np.ndarray) -> None:
    session = ParametricPopulation.sample(X, ListenerConfig(population=1), np.random.default_rng(0)).session(
        0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="n_tracks=10: this listener's catalog has 4000 tracks"):
        session.best_track(10, np.array([], dtype=np.int64), 10.0)
