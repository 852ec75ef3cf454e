"""The door of a ``music-rl train`` run, and the Hydra callback that opens it before Hydra writes into the run
folder (``hydra.callbacks.run_folder`` in conf/train.yaml).

:func:`open_run` is the one door: the config converted and validated (``App.typed``), the machine's memory and the
input files checked, the run folder checked and claimed (:func:`music_rl.runs.run_folder.claim`: its lock, and a
folder holding a run refused unless ``resume=true`` or ``overwrite=true``), once per run:

- a single run: Hydra creates the run folder and writes ``.hydra/`` and the job's log before the job starts, so the
  callback opens the run first, in the launching process (a bad value is one line, exit 2, and no folder is
  created); the job then takes what it opened;
- a sweep: a sweep folder that holds jobs is refused unless ``resume=true`` (its saved sweep must match,
  :data:`music_rl.runs.run_folder.SAFE_ON_RESUME` aside) or ``overwrite=true`` (moved aside); every job then opens
  its own run; one that fails leaves ``<job>/failed.json`` (its overrides and the error's first line), which the
  sweep's summary reads (:func:`failed_jobs`).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from hydra import compose
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from music_rl.cli.errors import JobFailed, fail, one_line_errors
from music_rl.cli.hydra_lines import first_line
from music_rl.core.atomic import write_text_atomic
from music_rl.core.errors import ConfigError, MusicRLError, RunFolderError, not_a, os_error_line
from music_rl.runs.run_folder import SAFE_ON_RESUME, claim, flat_keys, held_run, hold, move_aside, run_folder_of

FAILED = "failed.json"
_sweep: Path | None = None  # the sweep this process launched, for its summary
_opened: dict[Path, tuple[Any, contextlib.ExitStack]] = {}  # runs the callback opened, for their job to take


def task_config(config: DictConfig) -> dict[str, Any]:
    """The job's part of a composed config (without ``hydra``), as plain data."""
    job = OmegaConf.masked_copy(config, [str(k) for k in config if k != "hydra"])
    return OmegaConf.to_container(job, resolve=True, enum_to_str=True)  # type: ignore[return-value]  # a dict


def open_run(raw: DictConfig, run_dir: Path) -> tuple[Any, contextlib.ExitStack]:
    """The run's config (a checked ``TrainConfig``) and the claim of its folder (closing it releases the lock).
    What :class:`RunFolderGuard` opened for ``run_dir`` in this process is taken as it is, not opened again.

    Raises:
        MusicRLError: a bad value, a missing input, a machine too small, a folder that cannot take the run.
    """
    if run_dir.resolve() in _opened:
        return _opened.pop(run_dir.resolve())
    from music_rl.cli.train import app
    from music_rl.config import check_inputs
    from music_rl.disk_budget import check_disk
    from music_rl.memory_budget import check_memory

    cfg = app.typed(raw)
    check_memory(cfg)
    check_inputs(cfg)
    check_disk(cfg, run_dir)
    shown = f"hydra.run.dir={str(run_dir)!r}"
    if not str(run_dir).strip() or run_dir.resolve() == Path.cwd().resolve():
        raise ConfigError(f"{shown}: a run needs a folder of its own, not the current one")
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{shown}: {not_a(run_dir, 'folder')}")
    outer = run_folder_of(run_dir)
    if outer is not None:
        raise ConfigError(f"{shown}: inside the run folder {outer}: a run needs a folder of its own, outside "
                          "other runs")
    plain: dict[str, Any] = OmegaConf.to_container(  # type: ignore[assignment]  # a dict
        OmegaConf.structured(cfg), enum_to_str=True)
    try:
        return cfg, claim(run_dir, plain, cfg.resume, cfg.overwrite)
    except OSError as err:
        raise RunFolderError(os_error_line(err) or f"{shown}: {err.strerror or err}") from None


class RunFolderGuard(Callback):
    """See the module docstring. Hydra turns an exception of a callback into a warning and goes on: every user
    error here ends the process in one line (:func:`one_line_errors`)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Open the run (:func:`open_run`; its lock is held until the job ends or the process does). With
        ``resume=true`` the run goes on with its saved config (:func:`continue_saved`)."""
        run_dir = Path(str(config.hydra.run.dir))
        with one_line_errors():
            if config.get("resume") and not config.get("overwrite"):
                continue_saved(config, run_dir / ".hydra" / "config.yaml")
            raw = OmegaConf.masked_copy(config, [str(k) for k in config if k != "hydra"])
            opened = open_run(raw, run_dir)
        atexit.register(opened[1].close)
        _opened[run_dir.resolve()] = opened

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Refuse a sweep folder that holds jobs, unless resumed (the same sweep) or overwritten."""
        global _sweep
        with one_line_errors():
            _sweep = Path(config.hydra.sweep.dir)
            _check_sweep(_sweep, config)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """A failed job leaves ``failed.json`` in its folder, for the sweep's summary."""
        if job_return.status != JobStatus.FAILED:
            return
        try:
            _ = job_return.return_value  # a failed job's property raises its exception
            return
        except Exception as error:  # noqa: BLE001  (any failure is recorded, bugs too)
            record = {"overrides": list(job_return.overrides or []), "error": first_line(str(error)),
                      "user_error": isinstance(error, MusicRLError | JobFailed)}
        write_text_atomic(Path(config.hydra.runtime.output_dir) / FAILED, json.dumps(record) + "\n")


def _check_sweep(sweep: Path, config: DictConfig) -> None:
    """Hold the sweep folder (one sweep at a time in it, until the process ends); refuse it when it holds a run,
    or jobs of an earlier sweep that this one neither resumes (the same sweep) nor overwrites (moved aside)."""
    if held_run(sweep):
        raise RunFolderError(f"{sweep}: holds a single run; a sweep needs a folder of its own (hydra.sweep.dir)")
    plain = task_config(config)
    if plain.get("resume") and plain.get("overwrite"):
        raise ConfigError("resume=true and overwrite=true: choose one (continue the sweep, or move it aside)")
    held = _hold_sweep(sweep)
    jobs = [p for p in sweep.iterdir() if p.is_dir() and (p / ".hydra").is_dir()]
    if jobs and plain.get("overwrite"):
        held.close()
        (sweep / ".lock.json").unlink(missing_ok=True)
        print(f"overwrite=true: {sweep} moved aside to {move_aside(sweep)} (nothing deleted)", flush=True)
        held = _hold_sweep(sweep)
    atexit.register(held.close)
    if jobs and not plain.get("overwrite") and not plain.get("resume"):
        raise RunFolderError(f"{sweep}: holds {len(jobs)} job folder(s) of an earlier sweep; give another "
                             "hydra.sweep.dir, resume=true to continue it, or overwrite=true to move it aside")
    differ = _sweep_differences(sweep / "multirun.yaml", config) if jobs and plain.get("resume") else []
    if differ:
        raise RunFolderError(f"{sweep}: resume=true with another sweep: {'; '.join(differ[:5])} (only "
                             f"{', '.join(SAFE_ON_RESUME[2:])} may change on resume)")


def _by_key(overrides: Any) -> dict[str, str]:
    """Command-line overrides (``key=value``, ``+group=choice``, ``~key``) by the key they set."""
    return {str(o).lstrip("+~").split("=")[0]: str(o) for o in overrides}


def continue_saved(config: DictConfig, saved_path: Path) -> None:
    """``resume=true``: the run goes on with its saved config. A key takes this command line's value only where
    the command line sets it (``key=value``, or through a group such as ``+experiment=``: it differs from the
    defaults); every other key keeps its saved value, so a default changed since the run started neither
    changes the run nor blocks its resume. Keys the saved config lacks (added since) take today's value.
    ``config`` is updated in place (the job and its ``.hydra/config.yaml`` get the result); nothing happens
    without a readable saved config (the claim then says why)."""
    try:
        saved = flat_keys(OmegaConf.to_container(OmegaConf.load(saved_path)))
    except (OSError, ValueError, yaml.YAMLError):
        return
    now = flat_keys(task_config(config))
    fresh = flat_keys(task_config(compose(config_name=config.hydra.job.config_name, overrides=[])))
    named = set(_by_key(config.hydra.overrides.task))
    kept = {key: saved[key] for key in now
            if key in saved and key not in named and now[key] == fresh.get(key) and saved[key] != now[key]}
    with read_write(config), open_dict(config):
        for key, value in kept.items():
            OmegaConf.update(config, key, value, merge=False)


def _hold_sweep(sweep: Path) -> contextlib.ExitStack:
    """The sweep folder's lock (the folder created), held until the returned stack is closed."""
    held = contextlib.ExitStack()
    try:
        held.enter_context(hold(sweep, command="music-rl train -m", create=True))
    except OSError as err:
        raise RunFolderError(os_error_line(err) or f"hydra.sweep.dir={str(sweep)!r}: {err.strerror or err}") from None
    return held


def _sweep_differences(saved_path: Path, config: DictConfig) -> list[str]:
    """How the sweep about to run differs from the one saved in ``multirun.yaml`` (base config and sweep
    overrides), the keys of :data:`SAFE_ON_RESUME` aside."""
    if not saved_path.is_file():
        return []
    saved = OmegaConf.load(saved_path)
    before, after = _by_key(saved.hydra.overrides.task), _by_key(config.hydra.overrides.task)
    assert isinstance(saved, DictConfig)  # a mapping: it has a hydra key
    keys = sorted((set(before) | set(after)) - set(SAFE_ON_RESUME))
    differ = [f"{key}: {before.get(key)} -> {after.get(key)}" for key in keys if before.get(key) != after.get(key)]
    # a default changed since the sweep started: its remaining jobs would run another config than its first
    base_before, base_now = flat_keys(task_config(saved)), flat_keys(task_config(config))
    changed = sorted(k for k in set(base_before) & set(base_now)
                     if base_before[k] != base_now[k] and k not in SAFE_ON_RESUME and k not in before | after)
    return differ + [f"{key}: {base_before[key]!r} -> {base_now[key]!r} (a default changed since the sweep "
                     "started: start a new sweep folder)" for key in changed]


def report_failed_sweep(err: Exception) -> None:
    """After a sweep in which jobs failed: one line per failed job (overrides and cause), then exit 2 when
    every failure was a user error; a bug's exception is raised again (its traceback). Returns without a
    word (the caller raises ``err``) when this process launched no sweep."""
    if _sweep is None:
        return
    records = failed_jobs(_sweep)
    n_jobs = sum(1 for p in _sweep.iterdir() if (p / ".hydra").is_dir())
    for record in records:
        print(f"failed: {record['job']} ({' '.join(record['overrides'])}): {record['error']}", file=sys.stderr)
    if records and all(r["user_error"] for r in records):
        fail(f"{len(records)} of {n_jobs} jobs of the sweep failed (above); the {n_jobs - len(records)} others "
             f"finished and are kept in {_sweep}")


def failed_jobs(sweep: Path) -> list[dict[str, Any]]:
    """The ``failed.json`` records of a sweep folder's jobs, in job order."""
    records = []
    for path in sorted(sweep.glob(f"*/{FAILED}"), key=lambda p: p.parent.name):
        try:
            records.append(dict(json.loads(path.read_text(encoding="utf-8")), job=path.parent.name))
        except (OSError, ValueError):
            records.append({"job": path.parent.name, "overrides": [], "error": "unreadable failed.json",
                            "user_error": False})
    return records
