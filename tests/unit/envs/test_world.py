"""Tests of the world: the synthetic assembly, its determinism and the world/ folder round trip."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from envs.listeners import ListenerConfig, ParametricPopulation, Population
from envs.music_env import EnvConfig
from envs.rewards import RewardConfig, propagate, reward, select_probes
from envs.world import ARRAYS, World, build_world, pca_latents, synthetic_world
from music_rl.core.errors import ConfigError, RunFolderError
from music_rl.data.catalog import Normaliser, synthetic_catalog

N_TRACKS = 1200


def _configs() -> tuple[RewardConfig, ListenerConfig, EnvConfig]:
    return RewardConfig(n_clusters=8), ListenerConfig(population=12), EnvConfig(n_neighbours=16)


@pytest.fixture(scope="module")
def built() -> tuple[World, pd.DataFrame]:
    catalog = synthetic_catalog(N_TRACKS, seed=3)
    features = Normaliser("physical").fit(catalog.raw).transform(catalog.raw)
    return build_world(catalog.tracks, features, pca_latents(features, 3), *_configs(), seed=3,
                       latent_source="pca")


@pytest.fixture(scope="module")
def world(built: tuple[World, pd.DataFrame]) -> World:
    return built[0]


@pytest.fixture(scope="module")
def saved(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tracks = world.tracks.copy()
    tracks.loc[0, "track_id"] = "NA"  # a real id that pandas would read as missing by default
    tracks["name"] = "NA"
    tracks.loc[1, "name"] = ""
    nasty = dataclasses.replace(world, tracks=tracks)
    out = tmp_path_factory.mktemp("run") / "world"
    nasty.save(out)
    return out


def test_synthetic_world_arrays_line_up(world: World) -> None:
    n = N_TRACKS
    assert world.tracks.columns[0] == "track_id" and world.tracks["track_id"].is_unique
    assert world.features.shape == (n, 11) and world.features.dtype == np.float32
    assert world.latents.shape == (n, 3) and world.latents.dtype == np.float32
    assert world.latents.min() >= 0 and world.latents.max() <= 1
    assert np.isclose(world.latents.min(axis=0), 0).all() and np.isclose(world.latents.max(axis=0), 1).all()
    assert world.neighbours.shape == (n, 16) and world.neighbours.dtype == np.int32
    assert not (world.neighbours == np.arange(n)[:, None]).any()
    assert world.clusters.shape == (n,) and set(np.unique(world.clusters)) <= set(range(8))
    assert world.centroids.shape == (8, 3)
    assert world.reward_table.shape == (n,) and np.isfinite(world.reward_table).all()
    assert world.reward_table.std() > 0  # propagation gives different tracks different rewards


def test_meta_is_json_and_names_the_listeners(world: World) -> None:
    meta = json.loads(json.dumps(world.meta))
    assert meta == world.meta
    assert meta["latent_source"] == "pca" and meta["like_weight"] == 10.0
    train, held = set(meta["train_listeners"]), set(meta["heldout_listeners"])
    assert meta["served_listener"] in train and not train & held
    assert train | held == set(range(world.listeners().n)) and world.listeners().n == 12


def test_reward_table_comes_from_the_served_listeners_probe_log(built: tuple[World, pd.DataFrame]) -> None:
    world, log = built
    reward_cfg = _configs()[0]
    assert set(log["user_id"]) == {f"listener-{world.meta['served_listener']}"}
    rows = pd.Index(world.track_ids()).get_indexer(log["track_id"].astype(str))
    assert (rows >= 0).all()
    # the probes: the 4 tracks nearest each centroid
    want = select_probes(world.latents, world.clusters, world.centroids, 4, "nearest")
    assert set(rows.tolist()) == set(want.tolist())
    observed = reward(log["percentage_listened"].to_numpy(), log["liked"].to_numpy(), reward_cfg)
    per_track = pd.Series(observed).groupby(rows).mean()
    np.testing.assert_allclose(world.reward_table[per_track.index.to_numpy()], per_track.to_numpy(),
                               rtol=1e-6)
    r_hat = propagate(world.latents, world.clusters, world.centroids, rows, observed, reward_cfg)
    np.testing.assert_array_equal(world.reward_table, r_hat)


def test_synthetic_world_is_the_same_assembly(world: World) -> None:
    again = synthetic_world(N_TRACKS, latent_dim=3, seed=3, n_clusters=8, population=12,
                            env_cfg=EnvConfig(n_neighbours=16))
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(again, name), getattr(world, name))
    assert again.meta == world.meta
    other = synthetic_world(N_TRACKS, latent_dim=3, seed=4, n_clusters=8, population=12,
                            env_cfg=EnvConfig(n_neighbours=16))
    assert not np.array_equal(other.reward_table, world.reward_table)
    assert other.meta["listeners_seed"] != world.meta["listeners_seed"]


def test_unknown_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="colour"):
        synthetic_world(200, colour="blue")


def test_save_load_round_trip(world: World, saved: Path) -> None:
    back = World.load(saved)
    for name in ARRAYS:
        arr = getattr(back, name)
        assert arr.dtype == getattr(world, name).dtype
        np.testing.assert_array_equal(arr, getattr(world, name))
    assert back.meta == world.meta
    assert back.tracks["track_id"].iloc[0] == "NA"
    assert back.tracks["track_id"].tolist()[1:] == world.tracks["track_id"].astype(str).tolist()[1:]
    assert back.tracks["name"].iloc[0] == "NA" and back.tracks["name"].iloc[1] == ""
    assert back.track_ids()[0] == "NA"
    assert sorted(p.name for p in saved.iterdir()) == sorted(
        ["tracks.csv", "meta.json", *(f"{a}.npy" for a in ARRAYS)])  # no temporary files left


def test_loaded_world_rebuilds_the_same_listeners(world: World, saved: Path) -> None:
    back = World.load(saved)
    listener = world.meta["served_listener"]
    np.testing.assert_array_equal(back.listeners().expected_reward_all(listener, 10.0),
                                  world.listeners().expected_reward_all(listener, 10.0))


def test_a_world_saved_before_listener_models_rebuilds_the_parametric_listeners(saved: Path, world: World,
                                                                                  tmp_path: Path) -> None:
    assert world.meta["listener_config"]["model"] == "parametric" and isinstance(world.listeners(), Population)
    old = _copy(saved, tmp_path / "old")
    meta = json.loads((old / "meta.json").read_text())
    del meta["listener_config"]["model"]  # run folders written before listeners.model
    (old / "meta.json").write_text(json.dumps(meta))
    back = World.load(old).listeners()
    assert type(back) is ParametricPopulation
    listener = world.meta["served_listener"]
    np.testing.assert_array_equal(back.expected_reward_all(listener, 10.0),
                                  world.listeners().expected_reward_all(listener, 10.0))


def _copy(saved: Path, dest: Path) -> Path:
    dest.mkdir()
    for p in saved.iterdir():
        (dest / p.name).write_bytes(p.read_bytes())
    return dest


@pytest.mark.parametrize("name", ["tracks.csv", "latents.npy", "reward_table.npy", "meta.json"])
def test_missing_file_is_named(saved: Path, tmp_path: Path, name: str) -> None:
    broken = _copy(saved, tmp_path / "w")
    (broken / name).unlink()
    with pytest.raises(RunFolderError, match=f"{name}: missing"):
        World.load(broken)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(RunFolderError, match="no world folder"):
        World.load(tmp_path / "nowhere")


def test_corrupt_and_truncated_arrays(saved: Path, tmp_path: Path) -> None:
    broken = _copy(saved, tmp_path / "w")
    (broken / "neighbours.npy").write_bytes(b"not an array")
    with pytest.raises(RunFolderError, match="neighbours.npy"):
        World.load(broken)
    data = (saved / "latents.npy").read_bytes()
    (broken / "neighbours.npy").write_bytes((saved / "neighbours.npy").read_bytes())
    (broken / "latents.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(RunFolderError, match="latents.npy"):
        World.load(broken)


def test_pickled_array_is_refused(saved: Path, tmp_path: Path) -> None:
    broken = _copy(saved, tmp_path / "w")
    with open(broken / "clusters.npy", "wb") as fh:
        np.save(fh, np.array([{"a": 1}] * N_TRACKS, dtype=object), allow_pickle=True)
    with pytest.raises(RunFolderError, match="clusters.npy"):
        World.load(broken)


@pytest.mark.parametrize(("name", "array", "message"), [
    ("latents", np.zeros((N_TRACKS - 1, 3), np.float32), r"shape \(1199, 3\), expected \(1200, 3\)"),
    ("centroids", np.zeros((8, 4), np.float32), r"shape \(8, 4\), expected \(8, 3\)"),
    ("features", np.zeros((N_TRACKS, 11), np.int64), "dtype int64, expected floats"),
    ("neighbours", np.full((N_TRACKS, 16), N_TRACKS, np.int32), "track indices outside"),
    ("clusters", np.full(N_TRACKS, 8, np.int32), "cluster labels outside"),
    ("reward_table", np.full(N_TRACKS, np.nan, np.float32), "holds NaN"),
])
def test_arrays_that_do_not_line_up(saved: Path, tmp_path: Path, name: str, array: np.ndarray,
                                    message: str) -> None:
    broken = _copy(saved, tmp_path / "w")
    with open(broken / f"{name}.npy", "wb") as fh:
        np.save(fh, array)
    with pytest.raises(RunFolderError, match=f"{name}.npy: {message}"):
        World.load(broken)


def test_tracks_rows_and_ids_checked(saved: Path, tmp_path: Path) -> None:
    broken = _copy(saved, tmp_path / "w")
    lines = (saved / "tracks.csv").read_text().splitlines()
    (broken / "tracks.csv").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(RunFolderError, match="features.npy: shape"):
        World.load(broken)
    (broken / "tracks.csv").write_text("\n".join([lines[0], lines[1], *lines[1:-1]]) + "\n")
    with pytest.raises(RunFolderError, match="tracks.csv: track_id 'NA' appears more than once"):
        World.load(broken)


def test_meta_version_checked(saved: Path, tmp_path: Path) -> None:
    broken = _copy(saved, tmp_path / "w")
    meta = json.loads((saved / "meta.json").read_text())
    (broken / "meta.json").write_text(json.dumps(dict(meta, format_version=99)))
    with pytest.raises(RunFolderError, match="format_version=99"):
        World.load(broken)
    (broken / "meta.json").write_text("{not json")
    with pytest.raises(RunFolderError, match="meta.json: unreadable JSON"):
        World.load(broken)
