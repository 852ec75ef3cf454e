"""Features in, latents out: fit a VAE on a feature matrix and encode tracks, scikit-learn style.

The latent of a row is the encoder mean mu, rescaled per dimension to [0, 1] by a min/max scaler fitted on
the training matrix at the end of :meth:`LatentEncoder.fit` (clipped for rows outside that range). Row i of
the output is row i of the input, always.

Randomness (the validation split, weight initialisation, shuffles, reparameterisation noise) comes only
from streams derived from ``seed``; the global torch RNG is left untouched. Same seed and same X on CPU
give identical weights and latents.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from typing import Any

import numpy as np
import torch

from vae.config import VAEConfig
from vae.model import VAE, vae_loss

FORMAT = "music-rl-vae"
FORMAT_VERSION = 1
METRIC_KEYS = ("train/recon", "train/kl", "train/loss", "val/recon", "val/kl", "val/loss")
_EVAL_BATCH = 65536  # rows per forward pass when encoding or evaluating (bounded memory at 1M rows)
_CKPT_KEYS = ("format_version", "config", "in_dim", "state_dict", "latent_min", "latent_span")

EpochCallback = Callable[[int, dict[str, float]], None]


class LatentEncoder:
    """A VAE fitted on features X (N, F) in [0, 1]; encodes rows to latents (N, d) in [0, 1].

    Attributes after :meth:`fit`: ``model`` (the VAE, best validation weights, eval mode), ``history`` (one
    metrics dict per epoch, keys :data:`METRIC_KEYS`), ``epochs_run``, ``best_epoch`` (0-based),
    ``latent_min`` / ``latent_span`` (the latent scaler, tensors of shape (d,)).
    """

    def __init__(self, cfg: VAEConfig, seed: int) -> None:
        cfg.validate()
        self.cfg = cfg
        self.seed = int(seed)
        self.model: VAE | None = None
        self.history: list[dict[str, float]] = []
        self.epochs_run = 0
        self.best_epoch = -1
        self.latent_min: torch.Tensor | None = None
        self.latent_span: torch.Tensor | None = None

    # ------------------------------------------------------------------ training
    def fit(self, X: np.ndarray, on_epoch: EpochCallback | None = None) -> LatentEncoder:
        """Train on X (N, F) float in [0, 1] with Adam and early stopping; fit the latent scaler.

        A seeded ``val_fraction`` of the rows (at least one, leaving at least one for training) is held out;
        training stops after ``patience`` epochs without a lower validation loss and the best weights are
        restored. With ``val_fraction = 0`` or a single row there is no hold-out: the "val/" metrics are then
        measured on the training rows. Validation uses the same noise draw every epoch, so its losses are
        comparable across epochs. ``on_epoch(epoch, metrics)`` is called after every epoch (0-based) with
        the keys of :data:`METRIC_KEYS`. Runs with ``cfg.num_threads`` torch threads (restored after).
        """
        x = _as_features(X)
        with _torch_threads(self.cfg.num_threads):
            self._fit(x, on_epoch)
        return self

    def _fit(self, x: torch.Tensor, on_epoch: EpochCallback | None) -> None:
        """The training loop of :meth:`fit` on validated features."""
        cfg = self.cfg
        rng = np.random.default_rng(self.seed)
        train_idx, val_idx = _split(len(x), cfg.val_fraction, rng)
        init_seed, shuffle_seed, val_seed = (int(s) for s in rng.integers(0, 2**62, size=3))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            model = VAE(x.shape[1], cfg.latent_dim, cfg.hidden)
        optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        generator = torch.Generator().manual_seed(shuffle_seed)
        x_train = x[torch.from_numpy(train_idx)]
        x_val = x[torch.from_numpy(val_idx)] if len(val_idx) else x_train

        self.history, best_loss, best_state, stale = [], math.inf, _copy_state(model), 0
        for epoch in range(cfg.epochs):
            train = self._train_epoch(model, optimiser, x_train, generator)
            if not math.isfinite(train["loss"]):
                raise ValueError(f"vae.lr={cfg.lr!r}: training diverged at epoch {epoch} "
                                 f"(loss {train['loss']}); use a smaller learning rate")
            val = self._evaluate(model, x_val, torch.Generator().manual_seed(val_seed))
            metrics = {f"{split}/{name}": value for split, part in (("train", train), ("val", val))
                       for name, value in part.items()}
            self.history.append(metrics)
            if on_epoch is not None:
                on_epoch(epoch, metrics)
            if val["loss"] < best_loss:
                best_loss, best_state, stale, self.best_epoch = val["loss"], _copy_state(model), 0, epoch
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
        self.epochs_run = len(self.history)
        model.load_state_dict(best_state)
        model.eval()
        self.model = model
        mu = self._encode_mean(x)
        self.latent_min = mu.min(dim=0).values
        span = mu.max(dim=0).values - self.latent_min
        self.latent_span = torch.where(span > 1e-12, span, torch.ones_like(span))

    def _train_epoch(self, model: VAE, optimiser: torch.optim.Optimizer, x: torch.Tensor,
                     generator: torch.Generator) -> dict[str, float]:
        """One pass over x in shuffled mini-batches; returns row-weighted mean recon, kl, loss."""
        model.train()
        totals = torch.zeros(3, dtype=torch.float64)
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), self.cfg.batch_size):
            batch = x[order[start:start + self.cfg.batch_size]]
            recon, mu, logvar = model(batch, generator)
            loss, rec, kl = vae_loss(batch, recon, mu, logvar, self.cfg.beta, self._recon_weight)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]  # torch declares Tensor.backward without annotations
            optimiser.step()
            totals += torch.stack([rec.detach(), kl.detach(), loss.detach()]).double() * len(batch)
        return dict(zip(("recon", "kl", "loss"), (totals / len(x)).tolist(), strict=True))

    @torch.inference_mode()
    def _evaluate(self, model: VAE, x: torch.Tensor, generator: torch.Generator) -> dict[str, float]:
        """Row-weighted mean recon, kl and loss of x (batched), noise drawn from ``generator``."""
        model.eval()
        totals = torch.zeros(3, dtype=torch.float64)
        for start in range(0, len(x), _EVAL_BATCH):
            batch = x[start:start + _EVAL_BATCH]
            recon, mu, logvar = model(batch, generator)
            loss, rec, kl = vae_loss(batch, recon, mu, logvar, self.cfg.beta, self._recon_weight)
            totals += torch.stack([rec, kl, loss]).double() * len(batch)
        return dict(zip(("recon", "kl", "loss"), (totals / len(x)).tolist(), strict=True))

    @property
    def _recon_weight(self) -> float:
        return 1.0 / (2.0 * self.cfg.recon_sigma ** 2)

    # ------------------------------------------------------------------ encoding
    @torch.inference_mode()
    def _encode_mean(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder mean mu (N, d), computed in batches."""
        model = self._fitted_model()
        return torch.cat([model.encode(x[s:s + _EVAL_BATCH])[0] for s in range(0, len(x), _EVAL_BATCH)]) \
            if len(x) else torch.empty(0, model.latent_dim)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Latents (N, d) float32 in [0, 1]: encoder mean, rescaled per dimension, clipped; row i is X[i]."""
        model = self._fitted_model()
        x = _as_features(X, in_dim=model.in_dim, allow_empty=True)
        assert self.latent_min is not None and self.latent_span is not None
        with torch.inference_mode():
            z = ((self._encode_mean(x) - self.latent_min) / self.latent_span).clamp_(0.0, 1.0)
        return z.numpy().astype(np.float32, copy=False)

    def reconstruction_error(self, X: np.ndarray) -> float:
        """Mean over rows of the per-row MSE between X and the decoding of its encoder mean."""
        model = self._fitted_model()
        x = _as_features(X, in_dim=model.in_dim)
        total = 0.0
        with torch.inference_mode():
            for start in range(0, len(x), _EVAL_BATCH):
                batch = x[start:start + _EVAL_BATCH]
                error = (model.decode(model.encode(batch)[0]) - batch).square().mean(dim=1)
                total += float(error.double().sum())
        return total / len(x)

    # ------------------------------------------------------------------ persistence
    def checkpoint(self) -> dict[str, Any]:
        """Everything needed to encode, as tensors and plain Python (``torch.load(weights_only=True)``)."""
        model = self._fitted_model()
        assert self.latent_min is not None and self.latent_span is not None
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "config": self.cfg.to_dict(),
            "seed": self.seed,
            "in_dim": int(model.in_dim),
            "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "latent_min": self.latent_min.clone(),
            "latent_span": self.latent_span.clone(),
            "epochs_run": int(self.epochs_run),
            "best_epoch": int(self.best_epoch),
            "history": [dict(m) for m in self.history],
        }

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> LatentEncoder:
        """Rebuild a fitted encoder from :meth:`checkpoint` output (extra keys are ignored)."""
        if not isinstance(ckpt, dict):
            raise ValueError(f"not a music-rl VAE checkpoint: expected a dict, got {type(ckpt).__name__}")
        missing = [k for k in _CKPT_KEYS if k not in ckpt]
        if missing:
            raise ValueError(f"not a music-rl VAE checkpoint: missing {', '.join(repr(k) for k in missing)}")
        if ckpt["format_version"] != FORMAT_VERSION:
            raise ValueError(f"VAE checkpoint format_version={ckpt['format_version']!r}: "
                             f"this version reads only {FORMAT_VERSION}")
        known = {f.name for f in fields(VAEConfig)}
        cfg = VAEConfig(**{k: v for k, v in ckpt["config"].items() if k in known})
        encoder = cls(cfg, seed=int(ckpt.get("seed", 0)))
        model = VAE(int(ckpt["in_dim"]), cfg.latent_dim, cfg.hidden)
        try:
            model.load_state_dict(ckpt["state_dict"])
        except RuntimeError:
            raise ValueError(f"VAE checkpoint state_dict does not match its config (in_dim={ckpt['in_dim']}, "
                             f"latent_dim={cfg.latent_dim}, hidden={cfg.hidden})") from None
        model.eval()
        encoder.model = model
        encoder.latent_min = ckpt["latent_min"].to(torch.float32)
        encoder.latent_span = ckpt["latent_span"].to(torch.float32)
        if encoder.latent_min.shape != (cfg.latent_dim,) or encoder.latent_span.shape != (cfg.latent_dim,):
            raise ValueError(f"VAE checkpoint latent scaler has shape {tuple(encoder.latent_min.shape)}: "
                             f"expected ({cfg.latent_dim},)")
        encoder.epochs_run = int(ckpt.get("epochs_run", 0))
        encoder.best_epoch = int(ckpt.get("best_epoch", -1))
        encoder.history = [dict(m) for m in ckpt.get("history", [])]
        return encoder

    def _fitted_model(self) -> VAE:
        if self.model is None:
            raise ValueError("LatentEncoder is not fitted: call fit(X) or use from_checkpoint(ckpt)")
        return self.model


def _as_features(X: np.ndarray, in_dim: int | None = None, allow_empty: bool = False) -> torch.Tensor:
    """Validate X (2-D, finite, in [0, 1], ``in_dim`` columns) and return it as a float32 tensor (no copy
    when X is already C-contiguous float32)."""
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"X has shape {arr.shape}: expected a 2-D array (rows, features)")
    if in_dim is not None and arr.shape[1] != in_dim:
        raise ValueError(f"X has {arr.shape[1]} columns: this VAE was fitted on {in_dim}")
    if len(arr) == 0 and not allow_empty:
        raise ValueError("X has 0 rows: at least 1 is needed")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not arr.flags.writeable:  # a read-only memory map (a world's features): torch wants a writable buffer
        arr = arr.copy()
    if len(arr):
        bad = ~np.isfinite(arr) | (arr < 0.0) | (arr > 1.0)
        if bad.any():
            row, col = (int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"X row {row} column {col} = {float(arr[row, col])}: "
                             "features must be finite and in [0, 1]")
    return torch.from_numpy(arr)


def _split(n: int, val_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, val) row indices: at least one val row and one train row when validation is on."""
    if val_fraction <= 0 or n < 2:
        return np.arange(n), np.arange(0)
    n_val = min(n - 1, max(1, round(n * val_fraction)))
    perm = rng.permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (0: unchanged), restoring the previous count."""
    previous = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _copy_state(model: VAE) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
