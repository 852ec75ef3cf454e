"""The world built out of core: arrays written in parts (music_rl/core/arrays.py), the synthetic catalog drawn in
parts, the encoding and the neighbour table shard by shard (music_rl/training/world_arrays.py), K-Means on a
sample, the track ids (envs/track_table.py) and the disk check (music_rl/disk_budget.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from envs.candidates import build_neighbour_table
from envs.rewards import fit_clusters
from envs.track_table import TrackIds, read_tracks, write_tracks
from envs.world_config import RayConfig, WorldConfig
from music_rl.config import TrainConfig
from music_rl.core.arrays import build_npy, map_npy, scan_npy
from music_rl.core.errors import ConfigError
from music_rl.data import catalog as catalog_module
from music_rl.data.catalog import DataConfig, Normaliser, synthetic_catalog, synthetic_chunks
from music_rl.disk_budget import check_disk, world_bytes
from music_rl.training.world_arrays import encode_latents, neighbour_table, synthetic_features, training_rows
from vae.config import VAEConfig
from vae.encoder import LatentEncoder


def test_an_array_built_in_parts_is_whole_only_once_built(tmp_path: Path) -> None:
    values = np.random.default_rng(0).random((1000, 3)).astype(np.float32)
    path = tmp_path / "a.npy"
    with pytest.raises(RuntimeError), build_npy(path, values.shape, np.float32) as out:
        out[0:500] = values[:500]
        raise RuntimeError("interrupted")
    assert not path.exists() and not list(tmp_path.iterdir())  # nothing half-written left behind
    rows = np.random.default_rng(1).permutation(1000)
    with build_npy(path, values.shape, np.float32) as out:
        out[0:400] = values[:400]
        out[rows[rows >= 400]] = values[rows[rows >= 400]]  # scattered rows, in any order
    assert np.array_equal(np.load(path), values)
    assert np.array_equal(map_npy(path), values) and not map_npy(path).flags.writeable
    assert np.array_equal(np.concatenate(list(scan_npy(path, 300))), values)
    with pytest.raises(ValueError), build_npy(tmp_path / "b.npy", (10, 3), np.float32) as out:
        out.write(8, values[:5])  # rows beyond the end


def test_the_synthetic_catalog_in_parts_is_the_whole_and_its_first_part_unchanged(monkeypatch: pytest.MonkeyPatch,
                                                                                  tmp_path: Path) -> None:
    whole = synthetic_catalog(5000, seed=3)
    monkeypatch.setattr(catalog_module, "SYNTHETIC_CHUNK", 5000)
    assert np.array_equal(next(synthetic_chunks(5000, 3)).raw, whole.raw)
    monkeypatch.setattr(catalog_module, "SYNTHETIC_CHUNK", 1500)
    parts = list(synthetic_chunks(5000, 3))
    assert [len(p.raw) for p in parts] == [1500, 1500, 1500, 500]
    assert np.array_equal(parts[0].raw, synthetic_catalog(1500, seed=3).raw)  # part 0: the seed's own stream
    assert not np.array_equal(parts[1].raw, parts[0].raw)  # part i: a stream of its own
    joined = synthetic_catalog(5000, seed=3)
    assert joined.tracks["track_id"].is_unique and joined.tracks["track_id"].iat[4999] == "syn00004999"
    for mode in ("physical", "minmax"):
        data = DataConfig(n_tracks=5000, seed=3, normalisation=mode)  # type: ignore[arg-type]
        tracks, normaliser, features = synthetic_features(data, tmp_path / f"{mode}.npy")
        expected = Normaliser(mode).fit(joined.raw).transform(joined.raw)
        assert np.array_equal(np.asarray(features), expected)
        assert (tracks.astype(str).to_numpy() == joined.tracks.astype(str).to_numpy()).all()


def test_latents_and_neighbours_do_not_depend_on_the_chunk(tmp_path: Path) -> None:
    X = np.random.default_rng(0).random((3000, 11)).astype(np.float32)
    encoder = LatentEncoder(VAEConfig(epochs=1, latent_dim=3), seed=0).fit(X)
    whole = encode_latents(WorldConfig(chunk_rows=10_000), encoder, X, tmp_path / "z1.npy")
    parts = encode_latents(WorldConfig(chunk_rows=1000), encoder, X, tmp_path / "z2.npy")
    assert np.array_equal(whole, parts) and whole.tobytes() == parts.tobytes()
    table = neighbour_table(WorldConfig(chunk_rows=1000), parts, 12, tmp_path / "n.npy", seed=0)
    assert isinstance(table, np.memmap)
    assert np.array_equal(table, build_neighbour_table(np.asarray(parts), 12))


def test_k_means_on_a_sample_labels_every_track_with_its_nearest_centroid() -> None:
    Z = np.random.default_rng(0).random((6000, 4)).astype(np.float32)
    assert np.array_equal(fit_clusters(Z, 5, seed=1)[0], fit_clusters(Z, 5, seed=1, sample_rows=6000)[0])
    labels, centroids = fit_clusters(Z, 5, seed=1, sample_rows=2000)
    nearest = ((Z[:, None, :] - centroids[None]) ** 2).sum(axis=2).argmin(axis=1)
    assert labels.shape == (6000,) and (labels == nearest).mean() > 0.999  # float32 ties aside
    assert training_rows(6000, 6000, 0) is None
    rows = training_rows(6000, 2000, 0)
    assert rows is not None and len(np.unique(rows)) == 2000 and np.all(np.diff(rows) > 0)


def test_track_ids_are_a_compact_sequence(tmp_path: Path) -> None:
    frame = pd.DataFrame({"track_id": ["a", "NA", "c,\"d"], "name": pd.Categorical(["x", "y", "x"])})
    ids = TrackIds(frame["track_id"])
    assert len(ids) == 3 and ids[1] == "NA" and ids[-1] == 'c,"d' and list(ids) == ["a", "NA", 'c,"d']
    assert ids.index("NA") == 1 and "c,\"d" in ids and "b" not in ids
    with pytest.raises(ValueError):
        ids.index("b")
    with pytest.raises(IndexError):
        ids[3]
    assert list(ids.to_index().get_indexer(["c,\"d", "zz"])) == [2, -1]
    write_tracks(frame, tmp_path / "tracks.csv")
    back = read_tracks(tmp_path / "tracks.csv")
    assert back.astype(str).values.tolist() == frame.astype(str).values.tolist()


def test_a_world_larger_than_the_free_disk_is_refused_before_the_work(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    cfg = TrainConfig()
    cfg.data.n_tracks = 100_000_000
    need = world_bytes(cfg, cfg.data.n_tracks, 56)
    assert need > 100_000_000 * 4 * (11 + 5 + 32)
    monkeypatch.setattr("shutil.disk_usage", lambda path: type("U", (), {"free": need - 1})())
    with pytest.raises(ConfigError, match=r"needs about .* of disk and .* free: data.n_tracks=100000000"):
        check_disk(cfg, tmp_path / "not" / "yet")
    monkeypatch.setattr("shutil.disk_usage", lambda path: type("U", (), {"free": need})())
    check_disk(cfg, tmp_path)


def test_rows_arriving_in_another_order_are_put_in_place(tmp_path: Path) -> None:
    values = np.random.default_rng(0).integers(0, 99, size=(5000, 4)).astype(np.int32)
    order = np.random.default_rng(1).permutation(5000)
    with build_npy(tmp_path / "p.npy", values.shape, np.int32, order=order) as out:
        for start, size in ((2000, 3000), (0, 1000), (1000, 1000)):  # blocks of the arrival order, in any order
            out[order[start:start + size]] = values[order[start:start + size]]
        with pytest.raises(ValueError, match="not a block"):
            out[np.array([order[5], order[7]])] = values[:2]
    assert np.array_equal(np.load(tmp_path / "p.npy"), values)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npy"]  # the staging file removed


@pytest.mark.parametrize("address", ["nonsense", "http://127.0.0.1:8265", "127.0.0.1:port", " :1", "h st:1"])
def test_a_ray_address_of_no_known_form_is_refused_before_any_work(address: str) -> None:
    with pytest.raises(ConfigError, match="world.ray.address=.*auto .*host:port"):
        WorldConfig(ray=RayConfig(address=address)).validate()
    for good in ("auto", "10.0.0.9:6379", "ray://head:10001", "localhost:1"):
        WorldConfig(ray=RayConfig(address=good)).validate()
