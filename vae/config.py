"""Hyperparameters of the VAE (config group ``vae``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class VAEConfig:
    """VAE size and training schedule.

    ``recon_sigma`` is the decoder's fixed noise: the reconstruction term is the Gaussian negative
    log-likelihood ``sum_features (x - x_hat)^2 / (2 recon_sigma^2)``. With plain MSE (sigma^2 = 0.5) and
    ``beta = 1`` the KL term dominates features in [0, 1] and the posterior collapses (every latent
    dimension carries no information); sigma = 0.1 (features reconstructed to about a tenth of their range)
    keeps the latents informative.

    ``num_threads`` is torch's intra-op thread count while :meth:`LatentEncoder.fit` runs (restored
    after; 0 leaves torch's setting alone). One thread is the default: the network is tiny, and two threads
    on a busy 2-core machine spin-wait and run 5-30x slower; one thread also makes results independent of
    the machine's core count.
    """

    latent_dim: int = 5
    """latent width d: 2 | 4 | 5 (the design's); any integer in 1..11"""
    hidden: list[int] = field(default_factory=lambda: [64, 32])
    """encoder hidden widths; the decoder mirrors them"""
    epochs: int = 30
    """maximum epochs (early stopping may end sooner)"""
    batch_size: int = 512
    """tracks per gradient step"""
    lr: float = 1e-3
    """Adam learning rate"""
    beta: float = 1.0
    """weight of the KL term (1: the ELBO)"""
    val_fraction: float = 0.1
    """seeded hold-out for early stopping (0: monitor the training rows)"""
    patience: int = 5
    """epochs without a lower validation loss before stopping (best weights restored)"""
    recon_sigma: float = 0.1
    """decoder noise: recon = sum (x - x_hat)^2 / (2 recon_sigma^2); plain MSE (0.707) collapses the latents"""
    num_threads: int = 1
    """torch threads during fit (restored after); 0: torch's default. 1 is fastest for this tiny network"""

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad key, its value and what is allowed."""
        checks: list[tuple[str, Any, bool, str]] = [
            ("latent_dim", self.latent_dim, _is_int(self.latent_dim) and self.latent_dim >= 1,
             "must be an integer >= 1"),
            ("hidden", list(self.hidden),
             len(self.hidden) > 0 and all(_is_int(h) and h >= 1 for h in self.hidden),
             "must be a non-empty list of integers >= 1"),
            ("epochs", self.epochs, _is_int(self.epochs) and self.epochs >= 1, "must be an integer >= 1"),
            ("batch_size", self.batch_size, _is_int(self.batch_size) and self.batch_size >= 1,
             "must be an integer >= 1"),
            ("lr", self.lr, 0 < self.lr <= 1, "must be in (0, 1]"),
            ("beta", self.beta, 0 <= self.beta <= 1e6, "must be in [0, 1e6]"),
            ("val_fraction", self.val_fraction, 0 <= self.val_fraction < 1, "must be in [0, 1)"),
            ("patience", self.patience, _is_int(self.patience) and self.patience >= 1,
             "must be an integer >= 1"),
            ("recon_sigma", self.recon_sigma, 0 < self.recon_sigma <= 1e3, "must be in (0, 1000]"),
            ("num_threads", self.num_threads, _is_int(self.num_threads) and self.num_threads >= 0,
             "must be an integer >= 0 (0: torch's default)"),
        ]
        for key, value, ok, allowed in checks:
            if not ok:
                raise ValueError(f"vae.{key}={value!r}: {allowed}")

    def to_dict(self) -> dict[str, Any]:
        """Plain Python copy (ints, floats, a list), safe for ``torch.load(weights_only=True)``."""
        return {"latent_dim": int(self.latent_dim), "hidden": [int(h) for h in self.hidden],
                "epochs": int(self.epochs), "batch_size": int(self.batch_size), "lr": float(self.lr),
                "beta": float(self.beta), "val_fraction": float(self.val_fraction),
                "patience": int(self.patience), "recon_sigma": float(self.recon_sigma),
                "num_threads": int(self.num_threads)}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
