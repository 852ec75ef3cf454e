"""The variational autoencoder: an MLP encoder to (mu, logvar), an MLP decoder with a sigmoid output.

Loss (per batch, averaged over rows) = reconstruction + beta * KL, where

- reconstruction is the squared error summed over the input features, scaled by ``recon_weight``; with
  ``recon_weight = 1 / (2 sigma^2)`` this is the Gaussian negative log-likelihood (up to a constant) of a
  decoder with fixed noise ``sigma``. MSE rather than BCE because the features are continuous values in
  [0, 1], not probabilities, and BCE's loss floor (the entropy of the target) would hide progress in the logs.
- KL is the closed-form KL(q(z|x) || N(0, I)) summed over the latent dimensions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers of the given sizes with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class VAE(nn.Module):
    """A fully connected VAE for inputs in [0, 1].

    Args:
        in_dim: number of input features (11 Spotify features).
        latent_dim: size of the latent, >= 1.
        hidden: widths of the encoder's hidden layers; the decoder mirrors them in reverse.
    """

    def __init__(self, in_dim: int = 11, latent_dim: int = 5, hidden: Sequence[int] = (64, 32)) -> None:
        super().__init__()
        if in_dim < 1:
            raise ValueError(f"VAE in_dim={in_dim}: must be an integer >= 1")
        if latent_dim < 1:
            raise ValueError(f"vae.latent_dim={latent_dim}: must be an integer >= 1")
        if len(hidden) == 0 or any(int(h) < 1 for h in hidden):
            raise ValueError(f"vae.hidden={list(hidden)}: must be a non-empty list of integers >= 1")
        hidden = [int(h) for h in hidden]
        self.in_dim, self.latent_dim, self.hidden = in_dim, latent_dim, hidden
        self.encoder = nn.Sequential(_mlp([in_dim, *hidden]), nn.ReLU())
        self.head = nn.Linear(hidden[-1], 2 * latent_dim)
        self.decoder = _mlp([latent_dim, *reversed(hidden), in_dim])

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters ``(mu, logvar)``, each (B, latent_dim)."""
        mu, logvar = self.head(self.encoder(x)).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstruction in [0, 1], (B, in_dim)."""
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode, sample ``z = mu + sigma * eps`` (eps drawn from ``generator``), decode.

        Returns ``(reconstruction, mu, logvar)``.
        """
        mu, logvar = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        z = mu + torch.exp(0.5 * logvar) * eps
        return self.decode(z), mu, logvar


def vae_loss(x: torch.Tensor, recon: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, beta: float,
             recon_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loss, recon, kl)``, each a scalar averaged over the batch (see the module docstring)."""
    rec = recon_weight * (recon - x).square().sum(dim=1).mean()
    kl = 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(dim=1).mean()
    return rec + beta * kl, rec, kl
