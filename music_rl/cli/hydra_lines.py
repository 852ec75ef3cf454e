"""Hydra's errors before the job, and a sweep plugin not installed, each as one line built from the exception's
own fields (the error layer, :mod:`music_rl.cli.errors`, prints it)."""

from __future__ import annotations

import difflib
import sys

_PLUGINS = {  # pyproject.toml's extra "sweeps": the configs each plugin provides, the modules it imports
    "hydra-ray-launcher": (("hydra/launcher/ray",), ("ray", "hydra_plugins.hydra_ray_launcher")),
    "hydra-submitit-launcher": (("hydra/launcher/submitit_local", "hydra/launcher/submitit_slurm"),
                                ("submitit", "hydra_plugins.hydra_submitit_launcher")),
    "hydra-optuna-sweeper": (("hydra/sweeper/optuna",), ("optuna", "hydra_plugins.hydra_optuna_sweeper"))}
_INSTALL = 'pip install -e ".[sweeps]" (the launcher and sweeper plugins)'


def first_line(text: str) -> str:
    """The first informative line of a message (no link to Hydra's docs, no OmegaConf key dump)."""
    skip = ("See https://", "full_key:", "object_type=", "reference_type=")
    return next((ln.rstrip(".") for ln in map(str.strip, text.splitlines()) if ln and not ln.startswith(skip)), "")


def plugin_line(err: BaseException | None) -> str | None:
    """One line for a launcher or sweeper plugin that is not installed (its config, or a module it imports)."""
    from hydra.errors import MissingConfigException

    missing, name = getattr(err, "missing_cfg_file", None), getattr(err, "name", None)
    for plugin, (configs, modules) in _PLUGINS.items() if err is not None else ():
        if isinstance(err, MissingConfigException) and missing in configs:
            return f"{missing}: the Hydra plugin {plugin} is not installed; {_INSTALL}"
        if isinstance(err, ImportError) and name and any(name == m or name.startswith(f"{m}.") for m in modules):
            return f"{plugin}: cannot import {name}, not installed; {_INSTALL}"
    return None if err is None else plugin_line(err.__cause__ or err.__context__)


def hydra_line(err: BaseException, keys: list[str]) -> str:
    """One line for Hydra's error before the job, from the exception's own fields (``keys``: the app's keys)."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

    cause, key = err.__cause__, getattr(err.__cause__, "full_key", None)
    if isinstance(err, OverrideParseException):
        name, _, value = err.override.partition("=")
        why = "a character that must be quoted" if "LexerNoViableAlt" in err.message else first_line(err.message)
        return (f"override {err.override!r}: {why} (Hydra's override grammar: key=value; quote a value holding , ; "
                f"= [ ] {{ }} or spaces: \"{name.lstrip('+~')}='{value}'\"; key=a,b sweeps with -m)")
    if isinstance(err, MissingConfigException) and err.missing_cfg_file:
        return f"no config {err.missing_cfg_file!r}" + (f"; available: {', '.join(err.options)}" if err.options else "")
    if isinstance(cause, ConfigAttributeError | ConfigKeyError) and key:
        return unknown_key_line(key, keys)
    if isinstance(cause, OmegaConfBaseException) and key:
        return f"{key}: {first_line(str(cause))}"
    return "; ".join(filter(None, map(first_line, str(err).split("\n")))) or type(err).__name__


def unknown_key_line(key: str, keys: list[str]) -> str:
    """A key not in the config: deleted before (``~key``), a new entry of a mapping (``+``), or a typo."""
    mapping = next((k for k in keys if key.startswith(f"{k}.")), None)
    if f"~{key}" in sys.argv:
        return f"{key}: deleted by ~{key} on the command line, then set: give {key}=<value> alone"
    if mapping:
        return f"{key}: a new entry of the mapping {mapping}: add it with a +: +{key}=<value> (one per entry)"
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    return f"{key}: no such config key" + (f" (did you mean {close[0]}?)" if close else "")
