"""A run folder's safety: one writer at a time, and never silently overwritten.

**One writer at a time.** Every command that writes into a run folder holds its lock, ``<run>/.lock`` (an
exclusive ``flock`` through :mod:`filelock`; the holder's pid, command and start time are in
``<run>/.lock.json`` while it holds it). Training takes it at once or fails in one line; fine-tunes, cold
starts, online simulations and evaluation outputs wait their turn up to a timeout. The lock is re-entrant
within a process (one lock object per folder), so a command may take it in several places.

**Never overwritten.** A run starts only in a folder that holds no run. A folder holding one (finished:
``metrics.json``; interrupted: a VAE, world, checkpoints or model without it) is refused unless
``resume=true`` (and then the saved config may differ only in :data:`SAFE_ON_RESUME`) or ``overwrite=true``,
which moves the old folder aside to ``<name>.replaced-<UTC time>`` and deletes nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock, Timeout
from omegaconf import OmegaConf

from music_rl.core.atomic import write_text_atomic
from music_rl.core.errors import RunFolderError, not_a, path_kind
from music_rl.learners.algos import ALGOS
from music_rl.learners.models import MODEL_FILES

LOCK_NAME = ".lock"
# Keys that may differ between a run and its resume: budgets and how progress is shown, not what is learnt.
SAFE_ON_RESUME: tuple[str, ...] = ("resume", "overwrite", *(f"{algo}.{key}" for algo in ALGOS
                                                             for key in ("total_timesteps", "checkpoint_freq",
                                                                         "progress_bar")),
                                   "eval.n_episodes", "eval.eval_freq", "eval.periodic_episodes",
                                   "eval.stop_on_plateau", "eval.plateau_patience", "eval.plateau_delta")
# What makes a folder hold a run (Hydra's .hydra/ and the job's log alone do not).
RUN_ARTIFACTS: tuple[str, ...] = ("metrics.json", *MODEL_FILES, "vae.pt", "world", "checkpoints", "feedback.csv")


def _lock(run_dir: Path) -> FileLock:
    """The folder's lock object (the same one for every caller in this process: re-entrant)."""
    return FileLock(run_dir / LOCK_NAME, is_singleton=True, thread_local=False)


def _holder(run_dir: Path) -> str:
    """Who holds the lock, as ``<pid>.lock.json`` says (or that it is unknown)."""
    try:
        info = json.loads((run_dir / f"{LOCK_NAME}.json").read_text(encoding="utf-8"))
        return f"pid {info['pid']}, {info['command']}, since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def active_holder(run_dir: Path) -> str | None:
    """Who holds ``run_dir``'s lock now, as its ``.lock.json`` says, when that process is alive; None when nobody
    does (no ``.lock.json``, or one left by a process killed before it could remove it)."""
    try:
        info = json.loads((run_dir / f"{LOCK_NAME}.json").read_text(encoding="utf-8"))
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return _holder(run_dir)


@contextlib.contextmanager
def hold(run_dir: Path, wait: float = 0.0, command: str | None = None, create: bool = False) -> Iterator[None]:
    """Hold ``run_dir``'s lock: at once (``wait`` 0) or waiting up to ``wait`` seconds; ``create`` makes the
    folder (a new run), else it must exist.

    Raises:
        RunFolderError: the folder does not exist (``create`` False), or another process holds the lock (one
            line naming the holder and what to do).
    """
    if create:
        run_dir.mkdir(parents=True, exist_ok=True)
    elif not run_dir.is_dir():
        raise RunFolderError(f"{run_dir}: {not_a(run_dir, 'run folder')}")
    lock = _lock(run_dir)
    first = not lock.is_locked
    try:
        lock.acquire(timeout=max(wait, 0.0))  # 0: one try; a lock this process holds is taken again at once
    except Timeout:
        waited = f"; waited {wait:g} s (lock_timeout=...)" if wait > 0 else ""
        raise RunFolderError(f"{run_dir}: in use by {_holder(run_dir)}{waited}; one writer at a time: "
                             "wait for it to finish or use another folder") from None
    try:
        if first:
            info = {"pid": os.getpid(), "command": command or " ".join(sys.argv[:3]),
                    "since": datetime.now(UTC).isoformat(timespec="seconds")}
            write_text_atomic(run_dir / f"{LOCK_NAME}.json", json.dumps(info) + "\n")
        yield
    finally:
        if first:
            (run_dir / f"{LOCK_NAME}.json").unlink(missing_ok=True)
        lock.release()


def _acquire_new(run_dir: Path) -> contextlib.ExitStack:
    """:func:`hold` of a run's folder (created), at once, entered on an ExitStack that ``.close()`` releases."""
    stack = contextlib.ExitStack()
    stack.enter_context(hold(run_dir, create=True))
    return stack


def held_run(run_dir: Path) -> str | None:
    """What run ``run_dir`` holds: ``a finished run (...)``, ``an interrupted run (...)``, or None."""
    if not run_dir.is_dir():
        return None
    present = [name for name in RUN_ARTIFACTS if (run_dir / name).exists()]
    if not present:
        return None
    versions = sorted(p.name for p in run_dir.glob("*-v*.zip"))
    extra = f", fine-tuned versions {', '.join(versions)}" if versions else ""
    kind = "a finished run" if "metrics.json" in present else "an interrupted run"
    return f"{kind} ({', '.join(present)}{extra})"


def latest_steps(run_dir: Path, algo: str = "ppo") -> int | None:
    """The most timesteps a checkpoint of the run folder holds (``checkpoints/<algo>_<n>_steps.zip``), or None."""
    from music_rl.learners.models import latest_checkpoint

    newest = latest_checkpoint(run_dir / "checkpoints", algo)
    return int(newest.name.split("_")[1]) if newest is not None else None


def can_continue(run_dir: Path, algo: str = "ppo") -> bool:
    """Whether ``resume=true`` can continue the run in ``run_dir``: it holds a world and a checkpoint of ``algo``."""
    return (run_dir / "world").is_dir() and latest_steps(run_dir, algo) is not None


def move_aside(run_dir: Path) -> Path:
    """Rename ``run_dir`` to a sibling ``<name>.replaced-<UTC time>`` (deleting nothing); the new path."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    target = run_dir.with_name(f"{run_dir.name}.replaced-{stamp}")
    os.rename(run_dir, target)
    return target


def flat_keys(node: Any, prefix: str = "") -> dict[str, Any]:
    """Leaf values of a nested dict by dotted key."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flat_keys(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def resume_differences(run_dir: Path, config: dict[str, Any]) -> list[str]:
    """The keys (outside :data:`SAFE_ON_RESUME`) whose value in ``config`` differs from the run's saved
    ``.hydra/config.yaml``, as ``key: saved -> new``. A key the saved config lacks was added since the run
    started: it takes today's value (as :func:`music_rl.cli.folder_guard.continue_saved` gives it), no difference."""
    saved_path = run_dir / ".hydra" / "config.yaml"
    try:
        saved = flat_keys(OmegaConf.to_container(OmegaConf.load(saved_path)))
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise RunFolderError(f"{saved_path}: {'missing' if not saved_path.is_file() else 'unreadable'}: the run's "
                             f"config cannot be checked against this one ({type(err).__name__}); resume needs it"
                             ) from None
    new = flat_keys(config)
    keys = sorted(set(saved) - set(SAFE_ON_RESUME))
    return [f"{key}: {saved[key]!r} -> {new.get(key)!r}" for key in keys if saved[key] != new.get(key)]


def _resume_refusals(run_dir: Path, config: dict[str, Any]) -> list[str]:
    """Why ``run_dir``'s run cannot go on with ``config``, one phrase each (none: it can): another config (the
    keys that differ), fewer steps than already trained, a fine-tuned run, or a finished run with nothing to
    continue from (a fresh run would replace it)."""
    refusals = []
    differ = resume_differences(run_dir, config)
    if differ:
        refusals.append(f"with another config: {'; '.join(differ[:5])}{' ...' if len(differ) > 5 else ''} (only "
                        f"{', '.join(SAFE_ON_RESUME[2:])} may change on resume)")
    algo = str(config.get("algo", "ppo"))
    trained = latest_steps(run_dir, algo)
    asked = int(config.get(algo, {}).get("total_timesteps", 0))
    if trained is not None and asked < trained:
        refusals.append(f"with {algo}.total_timesteps={asked}, below the {trained} steps already trained: ask for "
                        "more steps, or start a new run")
    if (run_dir / "metrics.json").exists() and not can_continue(run_dir, algo):
        refusals.append(f"on a finished run with no world/ or no {algo} checkpoint to continue from: a fresh run "
                        "would replace it; overwrite=true moves it aside first")
    tuned = [p.name for p in sorted(run_dir.glob(f"{algo}-v*.zip"))]
    if tuned:
        refusals.append(f"on a fine-tuned run ({', '.join(tuned)}): it would retrain {algo}.zip under the fine-tunes "
                        "made from it; fine-tune further (music-rl finetune) or start a new run")
    return refusals


def claim(run_dir: Path, config: dict[str, Any], resume: bool, overwrite: bool) -> contextlib.ExitStack:
    """Take ``run_dir`` for a run (``config``: the run's config as plain data): its lock, held until the
    returned stack is closed. A folder holding a run is continued (``resume``, config compatible) or moved
    aside (``overwrite``), else refused.

    Raises:
        RunFolderError: the folder is in use, or holds a run and neither ``resume`` (with a compatible
            config) nor ``overwrite`` was given.
    """
    stack = _acquire_new(run_dir)
    try:
        what = held_run(run_dir)
        if what is None:
            return stack
        if resume and overwrite:
            raise RunFolderError("resume=true and overwrite=true: choose one (continue the run, or move it aside)")
        if resume:
            refusals = _resume_refusals(run_dir, config)
            if refusals:
                raise RunFolderError(f"{run_dir}: resume=true {'; and '.join(refusals)}")
            return stack
        if not overwrite:
            raise RunFolderError(f"{run_dir}: holds {what}; give another hydra.run.dir, resume=true to "
                                 "continue it, or overwrite=true to move it aside")
        (run_dir / f"{LOCK_NAME}.json").unlink(missing_ok=True)
        moved = move_aside(run_dir)  # under the lock: nobody else is writing into it
    except BaseException:
        stack.close()
        raise
    stack.close()
    logging.getLogger(__name__).warning("overwrite=true: %s moved aside to %s (nothing deleted)", run_dir, moved)
    return _acquire_new(run_dir)


def run_folder_of(path: Path) -> Path | None:
    """The run folder ``path`` is in (the nearest folder above it with ``.hydra/config.yaml``), or None."""
    for folder in Path(path).resolve().parents:
        if (folder / ".hydra" / "config.yaml").is_file():
            return folder
    return None


def check_output(path: Path, own: tuple[str, ...] = ()) -> Path | None:
    """Refuse an output ``path`` that cannot be written (a file on the way to it) or that would replace a run
    folder's artifact: a file of its ``.hydra``, ``world``, ``checkpoints``, ``tb`` or ``online`` folders, or
    any existing file of it but the command's ``own`` outputs. Returns the run folder the output is in (to
    write it under that folder's lock), or None.

    Raises:
        RunFolderError: naming the path and what to do.
    """
    for above in Path(path).resolve().parents:
        if above.exists() and not above.is_dir():
            raise RunFolderError(f"{path}: {above} is {path_kind(above)}, not a folder; choose another path")
    folder = run_folder_of(path)
    if folder is None:
        return None
    inside = Path(path).resolve().relative_to(folder)
    if inside.parts[0] in (".hydra", "world", "checkpoints", "tb", "online"):
        raise RunFolderError(f"{path}: inside {inside.parts[0]}/ of the run folder {folder}, which holds the run's "
                             "own files; choose another path")
    if Path(path).exists() and inside.name not in own:
        raise RunFolderError(f"{path}: would replace a file of the run folder {folder}; choose another path")
    return folder
