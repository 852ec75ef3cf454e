"""Tests of the neighbour table and the candidate index against brute-force distances."""

from __future__ import annotations

import numpy as np
import pytest

from envs.candidates import CandidateIndex, build_neighbour_table
from music_rl.core.errors import ConfigError


def _brute_dist(Z: np.ndarray, i: int) -> np.ndarray:
    """Squared distances (float64) from track i to every track."""
    diff = Z.astype(np.float64) - Z[i].astype(np.float64)
    return (diff**2).sum(axis=1)


@pytest.fixture
def latents() -> np.ndarray:
    return np.random.default_rng(0).random((300, 3), dtype=np.float32)


def test_table_shape_dtype_and_clip(latents: np.ndarray) -> None:
    table = build_neighbour_table(latents, 8)
    assert table.shape == (300, 8) and table.dtype == np.int32
    small = build_neighbour_table(latents[:5], 32)
    assert small.shape == (5, 4)
    # with K = N - 1 every row is a permutation of the other tracks
    for i, row in enumerate(small):
        assert sorted(row.tolist()) == [j for j in range(5) if j != i]


def test_table_is_nearest_first_and_excludes_self(latents: np.ndarray) -> None:
    table = build_neighbour_table(latents, 10)
    for i in range(latents.shape[0]):
        row = table[i]
        assert i not in row
        assert len(set(row.tolist())) == 10
        dist = _brute_dist(latents, i)
        assert np.all(np.diff(dist[row]) >= 0)
        others = np.delete(dist, i)
        np.testing.assert_allclose(dist[row], np.sort(others)[:10])


def test_table_with_duplicate_latents() -> None:
    rng = np.random.default_rng(1)
    base = rng.random((20, 2), dtype=np.float32)
    Z = np.concatenate([base, base, base, np.repeat(base[:1], 10, axis=0)])  # 3 copies, 10 more of track 0
    table = build_neighbour_table(Z, 5)
    for i in range(Z.shape[0]):
        assert i not in table[i]
        assert len(set(table[i].tolist())) == 5
    # track 0 and 11 others share one latent: every tabled neighbour is such a duplicate, in index order
    for i in np.flatnonzero((Z == Z[0]).all(axis=1)):
        assert np.all(_brute_dist(Z, i)[table[i]] == 0)
        assert np.all(np.diff(table[i]) > 0)
    # a track with two duplicates lists them first
    assert table[1][:2].tolist() == [21, 41]


def test_candidates_are_nearest_unplayed(latents: np.ndarray) -> None:
    rng = np.random.default_rng(2)
    index = CandidateIndex(latents, build_neighbour_table(latents, 16), k=4)
    assert index.k == 4 and index.n_tracks == 300
    for _ in range(50):
        played = rng.random(300) < 0.2
        current = int(rng.integers(300))
        cand = index.candidates(current, played)
        assert cand.shape == (4,) and cand.dtype == np.int64
        assert current not in cand and not played[cand].any()
        dist = _brute_dist(latents, current)
        allowed = ~played
        allowed[current] = False
        np.testing.assert_allclose(dist[cand], np.sort(dist[allowed])[:4])


def test_current_excluded_even_if_not_marked_played(latents: np.ndarray) -> None:
    index = CandidateIndex(latents, build_neighbour_table(latents, 8), k=4)
    played = np.zeros(300, dtype=bool)
    for current in range(0, 300, 37):
        assert current not in index.candidates(current, played)


def test_fallback_when_table_runs_out() -> None:
    rng = np.random.default_rng(3)
    Z = rng.random((40, 2), dtype=np.float32)
    table = build_neighbour_table(Z, 3)
    index = CandidateIndex(Z, table, k=3)
    current = 0
    played = np.zeros(40, dtype=bool)
    played[table[current]] = True  # every tabled neighbour played: the fast path has nothing
    played[current] = True
    played[rng.choice(np.arange(1, 40), 15, replace=False)] = True
    free = np.flatnonzero(~played)
    dist = _brute_dist(Z, current)[free]
    expected = free[np.lexsort((free, dist))][:3]
    np.testing.assert_array_equal(index.candidates(current, played), expected)


def test_fallback_orders_ties_by_index() -> None:
    Z = np.zeros((10, 2), dtype=np.float32)  # every track at the same point
    index = CandidateIndex(Z, build_neighbour_table(Z, 2), k=3)
    played = np.zeros(10, dtype=bool)
    played[[1, 2, 4]] = True
    np.testing.assert_array_equal(index.candidates(0, played), [3, 5, 6])


def test_too_few_unplayed_raises() -> None:
    Z = np.random.default_rng(4).random((6, 2), dtype=np.float32)
    index = CandidateIndex(Z, build_neighbour_table(Z, 2), k=2)
    played = np.ones(6, dtype=bool)
    played[[1]] = False
    with pytest.raises(ValueError, match="unplayed"):
        index.candidates(0, played)


def test_k_out_of_range_is_config_error() -> None:
    Z = np.random.default_rng(5).random((4, 2), dtype=np.float32)
    with pytest.raises(ConfigError, match="env.k=4"):
        CandidateIndex(Z, build_neighbour_table(Z, 3), k=4)

