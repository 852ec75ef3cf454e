"""Tests of the approximate neighbour tables (envs/ann_index.py) against the exact one.

faiss-cpu and hnswlib are the optional extra ``ann``: the tests of a kind skip when its package is missing.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from envs.ann_index import _clean_rows, approximate_neighbour_table, exact_rows, morton_order
from envs.candidates import build_neighbour_table
from music_rl.core.errors import ConfigError

K = 32
MODULES = {"faiss": "faiss", "hnsw": "hnswlib"}


@pytest.fixture(scope="module")
def latents() -> np.ndarray:
    return np.random.default_rng(0).random((3_000, 5), dtype=np.float32)


@pytest.fixture(scope="module")
def exact(latents: np.ndarray) -> np.ndarray:
    return build_neighbour_table(latents, K)


@pytest.fixture(params=["faiss", "hnsw"])
def kind(request: pytest.FixtureRequest) -> str:
    pytest.importorskip(MODULES[request.param])
    return str(request.param)


def _check_rows(table: np.ndarray, n: int, k: int) -> None:
    """int32 (n, k), every entry a valid index, no self, no duplicate within a row."""
    assert table.shape == (n, k) and table.dtype == np.int32
    assert table.min() >= 0 and table.max() < n
    assert not (table == np.arange(n)[:, None]).any()
    ordered = np.sort(table, axis=1)
    assert not (ordered[:, 1:] == ordered[:, :-1]).any()


def _recall(table: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([np.intersect1d(a, b).size for a, b in zip(table, truth, strict=True)]) / truth.shape[1])


def test_table_contract_and_recall(kind: str, latents: np.ndarray, exact: np.ndarray) -> None:
    table = approximate_neighbour_table(latents, K, kind, seed=0, chunk_rows=1_000)  # 3 chunks to add and query
    _check_rows(table, latents.shape[0], K)
    assert _recall(table, exact) >= 0.9
    # nearest first
    dist = ((latents[table].astype(np.float64) - latents[:, None, :].astype(np.float64)) ** 2).sum(axis=2)
    assert (np.diff(dist, axis=1) >= -1e-6).all()


def test_clipped_to_n_minus_one(kind: str, latents: np.ndarray) -> None:
    small = approximate_neighbour_table(latents[:6], K, kind, seed=0)
    assert small.shape == (6, 5)
    for i, row in enumerate(small):
        assert sorted(row.tolist()) == [j for j in range(6) if j != i]


def test_deterministic_for_a_seed_on_one_thread(kind: str, latents: np.ndarray) -> None:
    first = approximate_neighbour_table(latents, K, kind, seed=3, chunk_rows=1_000, threads=1)
    again = approximate_neighbour_table(latents, K, kind, seed=3, chunk_rows=1_000, threads=1)
    np.testing.assert_array_equal(first, again)


def test_duplicate_latents(kind: str) -> None:
    base = np.random.default_rng(1).random((50, 4), dtype=np.float32)
    Z = np.repeat(base, 40, axis=0)  # 2,000 tracks, 50 distinct latents: each track has 39 twins
    table = approximate_neighbour_table(Z, K, kind, seed=0, threads=1)
    _check_rows(table, Z.shape[0], K)
    # the 32 neighbours of every track are twins of it (distance 0), as in the exact table
    assert (table // 40 == (np.arange(Z.shape[0]) // 40)[:, None]).all()


def test_missing_package_is_a_config_error(monkeypatch: pytest.MonkeyPatch, latents: np.ndarray) -> None:
    for kind, module, pip_name in (("faiss", "faiss", "faiss-cpu"), ("hnsw", "hnswlib", "hnswlib")):
        monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
        with pytest.raises(ConfigError) as err:
            approximate_neighbour_table(latents, K, kind, seed=0)
        assert str(err.value) == f'world.index={kind} needs {pip_name}: pip install -e ".[ann]"'
    with pytest.raises(ConfigError, match="world.index=exact"):
        approximate_neighbour_table(latents, K, "exact", seed=0)


def test_clean_rows_drops_self_padding_and_repeats_and_fills_short_rows(latents: np.ndarray,
                                                                        exact: np.ndarray) -> None:
    """A search result with self, -1 padding, a repeated index and equal distances: the first k valid results,
    ties by index; a row with too few is replaced by its exact row."""
    rows = np.array([0, 1, 2])
    idx = np.array([
        [0, 7, 5, 9, 4],  # self first: 7 5 9 4 left
        [7, 7, 5, -1, 3],  # a repeat and a pad: 7 5 3 left
        [5, -1, -1, -1, -1],  # one valid result: exact row
    ])
    dist = np.array([
        [0.0, 0.1, 0.1, 0.2, 0.3],
        [0.1, 0.1, 0.2, np.inf, 0.3],
        [0.1, np.inf, np.inf, np.inf, np.inf],
    ], dtype=np.float32)
    out = _clean_rows(latents, rows, dist, idx, 3)
    assert out.dtype == np.int32
    assert out[0].tolist() == [5, 7, 9]  # 7 and 5 tie: lower index first
    assert out[1].tolist() == [7, 5, 3]
    assert out[2].tolist() == exact[2, :3].tolist()


def test_exact_rows_match_the_exact_table(latents: np.ndarray, exact: np.ndarray) -> None:
    rows = np.array([0, 17, 2_999])
    np.testing.assert_array_equal(exact_rows(latents, rows, K), exact[rows])


def test_morton_order_is_a_permutation(latents: np.ndarray) -> None:
    order = morton_order(latents)
    assert sorted(order.tolist()) == list(range(latents.shape[0]))
    flat = morton_order(np.zeros((10, 2), dtype=np.float32))  # no spread: index order
    assert flat.tolist() == list(range(10))
