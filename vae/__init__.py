"""Representation: a feature matrix in [0, 1] in, latents in [0, 1] out (torch + numpy only)."""

from vae.config import VAEConfig
from vae.encoder import LatentEncoder
from vae.model import VAE

__all__ = ["VAE", "LatentEncoder", "VAEConfig"]
