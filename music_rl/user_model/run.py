"""The learnt listener in a run folder: read the fit log before any work, fit and measure it, save it under
``listener/`` (``model.pt``, ``fidelity.json``), and give a loaded world its fitted model again.

``listener/model.pt`` is :meth:`music_rl.user_model.simulator.LearntListener.checkpoint` (tensors and plain Python,
read with ``torch.load(..., weights_only=True)``); it holds the fingerprint of the catalog and latents it was
fitted on, and a world over another refuses it in one line.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from envs.listeners import ListenerConfig, ListenerModel
from envs.world import World
from music_rl.core.atomic import atomic_path, write_json_atomic
from music_rl.core.errors import RunFolderError
from music_rl.user_model.answers import ShareTable
from music_rl.user_model.features import TasteBasis, listener_table, user_width
from music_rl.user_model.fidelity import Predictor, measure
from music_rl.user_model.fit import Steps, fit_net
from music_rl.user_model.sessions import LogSessions, Split, read_fit_log, split_log
from music_rl.user_model.simulator import LearntListener, catalog_fingerprint

log = logging.getLogger(__name__)

MODEL_FILE = Path("listener") / "model.pt"
FIDELITY_FILE = Path("listener") / "fidelity.json"


def read_listener_log(cfg: ListenerConfig, track_ids: Sequence[str]) -> LogSessions | None:
    """The sessions of ``listeners.fit_log`` (None with ``listeners.model=parametric``), read and checked before a
    run writes anything (:func:`music_rl.user_model.sessions.read_fit_log`)."""
    if cfg.model != ListenerModel.learnt:
        return None
    assert cfg.fit_log  # ListenerConfig.validate: learnt has a fit log
    sessions, report = read_fit_log(cfg.fit_log, track_ids)
    log.info("listener fit log %s; %d sessions, %s", report.line(cfg.fit_log), sessions.n_sessions,
             f"{sessions.n_users} listeners" if sessions.has_users else "no user ids")
    return sessions


def fit_run_listener(cfg: ListenerConfig, run_dir: Path, sessions: LogSessions, track_ids: Sequence[str],
                     features: np.ndarray, latents: np.ndarray, seed: int) -> LearntListener:
    """:func:`fit_listener`, saved under ``run_dir`` (:func:`save_listener`), its fidelity in the log."""
    model, fidelity = fit_listener(sessions, track_ids, features, latents, cfg, seed)
    save_listener(run_dir, model, fidelity)
    log.info("listener/fidelity.json: log-likelihood per answer %s; skip accuracy %s", ", ".join(
        f"{name} {m['log_likelihood']:.4f}" for name, m in fidelity.items() if name != "fit"), ", ".join(
        f"{name} {m['skip_accuracy']}" for name, m in fidelity.items() if name != "fit"))
    return model


def fit_listener(sessions: LogSessions, track_ids: Sequence[str], features: np.ndarray, latents: np.ndarray,
                 cfg: ListenerConfig, seed: int, reference: Predictor | None = None, split: Split | None = None
                 ) -> tuple[LearntListener, dict[str, Any]]:
    """Fit the learnt listener of ``cfg.learnt`` on ``sessions`` and measure it on the held-out ones.

    Args:
        sessions: the fit log's sessions (rows of the catalog).
        track_ids, features, latents: the catalog (its fingerprint is saved with the model).
        cfg: the listener config (``learnt.*``).
        seed: the split, the initial weights and the batch order.
        reference: the listener that generated the log, as a predictor (measured as ``reference``); None: not
            measured.
        split: which sessions fit, stop the fitting early and measure; None: drawn by
            :func:`~music_rl.user_model.sessions.split_log` (``cfg.learnt.holdout``).

    Returns:
        The model and ``fidelity.json``'s content.
    """
    latents = np.asarray(latents, dtype=np.float64)
    features = np.asarray(features, dtype=np.float64)
    if split is None:
        split = split_log(sessions, cfg.learnt.holdout, np.random.default_rng(seed))
    fit, stop, held_out = (sessions.subset(part) for part in (split.fit, split.stop, split.measure))
    n_track, n_user = latents.shape[1] + features.shape[1], user_width(latents.shape[1])
    basis = TasteBasis.fit(latents, features, seed)
    result = fit_net(Steps.of(fit, latents, features, basis), Steps.of(stop, latents, features, basis), n_track,
                     n_user, cfg.learnt, seed)
    about = {"kind": str(cfg.learnt.kind), "epochs": result.epochs, "best_epoch": result.best_epoch,
             "stop_log_likelihood": result.stop_log_likelihood, "split_by": split.by,
             "sessions": {"fit": fit.n_sessions, "stop": stop.n_sessions, "held_out": held_out.n_sessions},
             "answers": {"fit": len(fit.tracks), "stop": len(stop.tracks), "held_out": len(held_out.tracks)}}
    model = LearntListener.of(str(cfg.learnt.kind), result.net, ShareTable.fit(fit.pct),
                              listener_table(fit, latents, features, basis), latents, features, basis,
                              catalog_fingerprint(track_ids, features, latents), about)
    fidelity = {**measure(model, fit, held_out, reference), "fit": about}
    return model, fidelity


def save_listener(run_dir: Path, model: LearntListener, fidelity: dict[str, Any]) -> None:
    """``listener/model.pt`` and ``listener/fidelity.json``, each atomically."""
    buffer = io.BytesIO()  # serialised in memory: a full disk raises OSError, not a RuntimeError
    torch.save(model.checkpoint(), buffer)
    with atomic_path(run_dir / MODEL_FILE) as tmp:
        tmp.write_bytes(buffer.getvalue())
    write_json_atomic(run_dir / FIDELITY_FILE, fidelity)


def load_listener(path: Path, world: World) -> LearntListener:
    """The fitted listener saved at ``path`` over ``world``'s catalog.

    Raises:
        RunFolderError: missing, unreadable, or fitted on another catalog (one line naming the file).
    """
    if not path.is_file():
        raise RunFolderError(f"{path}: missing (a run with listeners.model=learnt keeps its fitted listener here)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged or foreign file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunFolderError(f"{path}: not a listener model torch can read ({first})") from None
    fingerprint = catalog_fingerprint(world.track_ids(), world.features, world.latents)
    try:
        return LearntListener.from_checkpoint(ckpt, np.asarray(world.latents, dtype=np.float64),
                                              np.asarray(world.features, dtype=np.float64), fingerprint)
    except ValueError as err:
        raise RunFolderError(f"{path}: {err}") from None


def attach_run_listener(world: World, run_dir: Path) -> World:
    """A loaded world of ``run_dir`` with its fitted listener (``listener/model.pt``) when its listeners are
    learnt; ``world`` itself."""
    if world.learnt():
        world.attach_listener(load_listener(run_dir / MODEL_FILE, world))
    return world
