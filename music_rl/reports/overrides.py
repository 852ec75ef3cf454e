"""The overrides of a run or sweep job as typed on its command line (``.hydra/overrides.yaml``), and those in which
it differs from the runs it is compared with: what ``music-rl compare`` groups jobs by, what TensorBoard's HParams
shows first, what ``music-rl tables collect`` records of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

# overrides that say how a job ran, not what it is: never a configuration's key
HOW_KEYS = ("resume", "overwrite")


def job_overrides(job_dir: Path) -> dict[str, str]:
    """The command-line overrides of a run or sweep job (``.hydra/overrides.yaml``), key → value as typed.

    Raises:
        ValueError: the file is missing or is not a YAML list of overrides (a broken job folder).
    """
    path = job_dir / ".hydra" / "overrides.yaml"
    try:
        items = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"{path.name}: missing or unreadable ({type(err).__name__})") from None
    if not isinstance(items, list | None):
        raise ValueError(f"{path.name}: not a list of overrides")
    return _by_key(items or [])


def _by_key(items: list[Any]) -> dict[str, str]:
    """Overrides (``key=value``, ``+group=choice``, ``~key``) as key → value as typed."""
    out = {}
    for item in items:
        key, _, value = str(item).partition("=")
        out[key.lstrip("+~")] = value
    return out


def swept_overrides(job_dir: Path) -> dict[str, str]:
    """The overrides in which a run or sweep job differs from the runs it is compared with, key → value as typed,
    in the command line's order: a sweep job's swept keys (those whose value is not its sweep's text in
    ``multirun.yaml``: ``seed=0`` of ``seed=0,1``, or a key the sweeper chose), a single run's whole command line;
    :data:`HOW_KEYS` aside. Empty for a folder that Hydra did not start (no readable ``.hydra/overrides.yaml``)."""
    try:
        job = job_overrides(job_dir)
    except ValueError:
        return {}
    sweep = _sweep_overrides(job_dir)
    return {key: value for key, value in job.items() if key not in HOW_KEYS and sweep.get(key) != value}


def _sweep_overrides(job_dir: Path) -> dict[str, str]:
    """The overrides as typed of the sweep a job belongs to (``hydra.overrides.task`` of the nearest
    ``multirun.yaml`` above it); empty for a single run or where they cannot be read."""
    try:
        hydra = yaml.safe_load((job_dir / ".hydra" / "hydra.yaml").read_text(encoding="utf-8"))["hydra"]
        if hydra["mode"] != "MULTIRUN":
            return {}
        saved = next(folder / "multirun.yaml" for folder in job_dir.resolve().parents
                     if (folder / "multirun.yaml").is_file())
        return _by_key(yaml.safe_load(saved.read_text(encoding="utf-8"))["hydra"]["overrides"]["task"] or [])
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError, StopIteration):
        return {}
