"""The VAE package: shapes and ranges, determinism, checkpoints, early stopping, learnt structure."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vae.config import VAEConfig
from vae.encoder import METRIC_KEYS, LatentEncoder
from vae.model import VAE


def uniform(n: int, seed: int = 0) -> np.ndarray:
    """Random features in [0, 1]."""
    return np.random.default_rng(seed).uniform(size=(n, 11)).astype(np.float32)


def small(**overrides) -> VAEConfig:
    """A small, fast config."""
    base = dict(latent_dim=2, hidden=[32, 16], epochs=3, batch_size=256, lr=3e-3)
    base.update(overrides)
    return VAEConfig(**base)


@pytest.fixture(scope="module")
def X() -> np.ndarray:
    return uniform(2000)


@pytest.fixture(scope="module")
def fitted(X: np.ndarray) -> LatentEncoder:
    return LatentEncoder(small(latent_dim=4, epochs=4), seed=0).fit(X)


@pytest.mark.parametrize("latent_dim", [2, 4, 5])
def test_latents_have_the_configured_width_and_lie_in_unit_box(X: np.ndarray, latent_dim: int) -> None:
    Z = LatentEncoder(small(latent_dim=latent_dim, epochs=2), seed=1).fit(X).transform(X)
    assert Z.shape == (len(X), latent_dim) and Z.dtype == np.float32
    assert Z.min() >= 0.0 and Z.max() <= 1.0
    # the scaler is fitted on the training rows: each dimension spans exactly [0, 1] there
    np.testing.assert_allclose(Z.min(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(Z.max(axis=0), 1.0, atol=1e-6)


def test_rows_outside_the_training_range_are_clipped(fitted: LatentEncoder) -> None:
    Z = fitted.transform(np.vstack([np.zeros((1, 11)), np.ones((1, 11))]).astype(np.float32))
    assert Z.min() >= 0.0 and Z.max() <= 1.0


def test_same_seed_same_latents_other_seed_other_latents(X: np.ndarray) -> None:
    a = LatentEncoder(small(), seed=7).fit(X)
    b = LatentEncoder(small(), seed=7).fit(X)
    c = LatentEncoder(small(), seed=8).fit(X)
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key])
    assert np.array_equal(a.transform(X), b.transform(X))
    assert a.history == b.history
    assert not np.allclose(a.transform(X), c.transform(X))


def test_fit_leaves_the_global_torch_state_alone(X: np.ndarray) -> None:
    before, threads = torch.random.get_rng_state(), torch.get_num_threads()
    LatentEncoder(small(epochs=1, num_threads=threads + 1), seed=0).fit(X)
    assert torch.equal(before, torch.random.get_rng_state())
    assert torch.get_num_threads() == threads


def test_checkpoint_round_trip_through_a_file_keeps_every_row(fitted: LatentEncoder, X: np.ndarray,
                                                              tmp_path) -> None:
    path = tmp_path / "vae.pt"
    torch.save(fitted.checkpoint(), path)
    loaded = LatentEncoder.from_checkpoint(torch.load(path, weights_only=True))
    Z = fitted.transform(X)
    assert np.array_equal(loaded.transform(X), Z)
    assert loaded.epochs_run == fitted.epochs_run and loaded.cfg == fitted.cfg
    # alignment: encoding row i on its own, or in any order, gives latents[i]
    order = np.random.default_rng(3).permutation(len(X))
    np.testing.assert_allclose(loaded.transform(X[order]), Z[order], atol=1e-6)
    for i in (0, 17, len(X) - 1):
        np.testing.assert_allclose(loaded.transform(X[i:i + 1])[0], Z[i], atol=1e-6)


def test_checkpoint_holds_only_tensors_and_plain_python(fitted: LatentEncoder) -> None:
    def plain(value) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return isinstance(value, torch.Tensor | int | float | str | bool) or value is None

    assert plain(fitted.checkpoint())


@pytest.mark.parametrize("bad", [{}, {"weights": 1}, [1, 2]])
def test_a_dict_that_is_not_a_checkpoint_raises_one_line(bad) -> None:
    with pytest.raises(ValueError, match="not a music-rl VAE checkpoint") as err:
        LatentEncoder.from_checkpoint(bad)
    assert "\n" not in str(err.value)


def test_a_checkpoint_whose_weights_do_not_fit_its_config_raises(fitted: LatentEncoder) -> None:
    ckpt = fitted.checkpoint()
    ckpt["config"]["latent_dim"] = 3
    with pytest.raises(ValueError, match="does not match its config"):
        LatentEncoder.from_checkpoint(ckpt)


def test_training_lowers_the_validation_loss() -> None:
    # features on a 2-D manifold: a 2-D latent can explain them
    rng = np.random.default_rng(0)
    X = (0.5 + 0.4 * np.sin(rng.uniform(size=(2000, 2)) @ rng.normal(size=(2, 11)) * 3)).astype(np.float32)
    enc = LatentEncoder(small(epochs=6), seed=0).fit(X)
    val = [m["val/loss"] for m in enc.history]
    assert all(b < a for a, b in zip(val, val[1:], strict=False))
    assert val[-1] < 0.8 * val[0]
    assert enc.best_epoch == len(val) - 1


def test_on_epoch_gets_every_metric_every_epoch(X: np.ndarray) -> None:
    seen: list[tuple[int, dict[str, float]]] = []
    enc = LatentEncoder(small(epochs=3), seed=0).fit(X, on_epoch=lambda e, m: seen.append((e, m)))
    assert [e for e, _ in seen] == list(range(enc.epochs_run)) == [0, 1, 2]
    for _, metrics in seen:
        assert set(metrics) == set(METRIC_KEYS)
        assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
        assert metrics["train/loss"] == pytest.approx(metrics["train/recon"] + metrics["train/kl"], rel=1e-5)
    assert [m for _, m in seen] == enc.history


def test_early_stopping_on_a_plateau_stops_after_patience() -> None:
    # a learning rate too small to move float32 weights: the validation loss is flat from epoch 0
    enc = LatentEncoder(small(epochs=20, patience=1, lr=1e-12), seed=0).fit(uniform(300))
    assert enc.epochs_run == 2 and enc.best_epoch == 0


def test_early_stopping_restores_the_best_weights() -> None:
    X = uniform(60, seed=0)
    cfg = dict(latent_dim=5, hidden=[128, 128], epochs=60, batch_size=8, lr=3e-2, beta=0.1, val_fraction=0.3,
               patience=3)
    enc = LatentEncoder(VAEConfig(**cfg), seed=0).fit(X)
    assert enc.best_epoch < enc.epochs_run - 1 and enc.epochs_run == enc.best_epoch + cfg["patience"] + 1
    # training for exactly best_epoch + 1 epochs reproduces the restored weights
    short = LatentEncoder(VAEConfig(**{**cfg, "epochs": enc.best_epoch + 1}), seed=0).fit(X)
    assert np.array_equal(short.transform(X), enc.transform(X))


@pytest.mark.parametrize("n, val_fraction", [(1, 0.1), (2, 0.1), (5, 0.0)])
def test_tiny_catalogs_fit(n: int, val_fraction: float) -> None:
    X = uniform(n)
    enc = LatentEncoder(small(epochs=2, val_fraction=val_fraction), seed=0).fit(X)
    Z = enc.transform(X)
    assert Z.shape == (n, 2) and np.all((Z >= 0) & (Z <= 1))
    assert all(math.isfinite(m["val/loss"]) for m in enc.history)


def test_three_blobs_stay_apart_in_latent_space() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0.15] * 11, [0.85] * 11, [0.15, 0.85] * 5 + [0.5]])
    labels = rng.integers(0, 3, size=1500)
    X = np.clip(centres[labels] + rng.normal(0, 0.04, size=(1500, 11)), 0, 1).astype(np.float32)
    Z = LatentEncoder(small(epochs=10), seed=0).fit(X).transform(X)
    d = np.linalg.norm(Z[:, None, :] - Z[None, :, :], axis=-1)
    same = labels[:, None] == labels[None, :]
    assert d[same].mean() < 0.25 * d[~same].mean()
    # every track's nearest neighbour in latent space is from its own blob
    np.fill_diagonal(d, np.inf)
    assert np.mean(labels[d.argmin(axis=1)] == labels) > 0.99


def test_reconstruction_error_is_a_mean_row_mse(fitted: LatentEncoder, X: np.ndarray) -> None:
    err = fitted.reconstruction_error(X)
    assert 0.0 <= err < float(((X - X.mean(axis=0)) ** 2).mean(axis=1).mean()) * 1.1


@pytest.mark.parametrize("bad, match", [
    (np.full((4, 11), 1.5, dtype=np.float32), r"row 0 column 0 = 1.5"),
    (np.full((4, 11), np.nan, dtype=np.float32), r"finite and in \[0, 1\]"),
    (np.zeros(11, dtype=np.float32), "2-D"),
])
def test_bad_features_raise_one_line(bad: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LatentEncoder(small(), seed=0).fit(bad)


def test_transform_checks_the_width(fitted: LatentEncoder) -> None:
    with pytest.raises(ValueError, match="10 columns: this VAE was fitted on 11"):
        fitted.transform(np.zeros((3, 10), dtype=np.float32))


@pytest.mark.parametrize("key, value", [("latent_dim", 0), ("hidden", []), ("val_fraction", 1.0),
                                        ("patience", 0), ("recon_sigma", 0.0)])
def test_bad_config_names_the_key(key: str, value) -> None:
    with pytest.raises(ValueError, match=f"vae.{key}="):
        LatentEncoder(small(**{key: value}), seed=0)


def test_vae_module_shapes_and_range() -> None:
    model = VAE(in_dim=11, latent_dim=5, hidden=[16])
    recon, mu, logvar = model(torch.rand(7, 11), torch.Generator().manual_seed(0))
    assert recon.shape == (7, 11) and mu.shape == logvar.shape == (7, 5)
    assert recon.min() >= 0 and recon.max() <= 1
    with pytest.raises(ValueError, match="latent_dim"):
        VAE(latent_dim=0, hidden=[8])
