"""Hyperparameters of the VAE (config group ``vae``)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class VAEConfig:
    """VAE size and training schedule."""

    latent_dim: int = 5
    hidden: list[int] = field(default_factory=lambda: [64, 32])
    epochs: int = 30
    batch_size: int = 512
    lr: float = 1e-3
    beta: float = 1.0
    val_fraction: float = 0.1
    patience: int = 5
