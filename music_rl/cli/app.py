"""What every command shares: its config schema in Hydra's ConfigStore, its ``--help``, typed config, and the
error policy around ``@hydra.main`` (:mod:`music_rl.cli.errors`).

A command is a module of :mod:`cli` with a config dataclass (each key documented by the string after its
field), an :class:`App` and a ``@hydra.main`` function::

    app = App("evaluate", EvaluateConfig)    # its summary: music_rl.cli.main.COMMANDS

    @hydra.main(version_base="1.3", config_path=app.config_path, config_name=app.name)
    @user_errors_exit
    def main(raw: DictConfig) -> None:
        args = app.typed(raw)   # the config, converted and checked once
        ...

``app.run(main)`` is what ``music-rl <command>`` and ``scripts/<command>.py`` call.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from music_rl.cli.errors import fail, run_hydra
from music_rl.cli.help import dotted_keys, help_text
from music_rl.cli.main import COMMANDS
from music_rl.core.schema import to_config

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")
MULTIRUN_FLAGS = ("-m", "--multirun")
# Hydra's flags that take the next argument as their value (never a positional argument of a command)
VALUE_FLAGS = ("--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir",
               "-cd", "--info", "-i", "--experimental-rerun")


STDERR_LOGGING = {  # the log records of a command with no output folder: to stderr, no log file
    "version": 1, "formatters": {"simple": {"format": "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "simple", "stream": "ext://sys.stderr"}},
    "root": {"level": "INFO", "handlers": ["console"]}, "disable_existing_loggers": False}


class App:
    """One command: registers ``<name>_schema`` and ``hydra/help/<name>`` in Hydra's ConfigStore.

    The main job (``output_folder``) composes ``conf/<name>.yaml`` with the config groups of ``conf/`` and
    writes a Hydra run folder. Every other command reads or writes an existing run folder, never a new one:
    its whole primary config is registered here (its schema, log records to stderr, no output folder) and its
    keys are its own (``music-rl finetune feedback=<file>`` is a key, not the main job's ``feedback`` group).

    Args:
        name: the command (``music-rl <name>``, ``scripts/<name>.py``); its one-line summary is
            :data:`music_rl.cli.main.COMMANDS`'s.
        schema: the config dataclass.
        multirun: whether ``-m`` sweeps make sense for it (others refuse ``-m`` in one line).
        positional: a key that one bare argument stands for (``compare DIR`` is ``compare sweep_dir=DIR``).
        script: the name of its ``scripts/<script>.py`` wrapper, when it is not ``name``.
        output_folder: the main job: ``conf/<name>.yaml`` and Hydra's run folders.
    """

    def __init__(self, name: str, schema: type, multirun: bool = False, positional: str | None = None,
                 script: str | None = None, output_folder: bool = False) -> None:
        self.name, self.schema, self.summary, self.multirun = name, schema, COMMANDS[name][1], multirun
        self.positional = positional
        self.config_path = CONF_DIR if output_folder else None
        store = ConfigStore.instance()
        store.store(name=f"{name}_schema", node=schema)
        store.store(group="hydra/help", name=name,
                    node={"app_name": f"music-rl {name}", "header": "", "footer": "",
                          "template": help_text(name, script or name, self.summary, schema, multirun,
                                                groups=output_folder)})
        if not output_folder:
            store.store(group="hydra/job_logging", name="stderr", node=STDERR_LOGGING)
            store.store(name=name, node={
                "defaults": [f"{name}_schema", {"override hydra/job_logging": "stderr"},
                             {"override hydra/help": name}, "_self_"],
                "hydra": {"output_subdir": None, "run": {"dir": "."}}})

    def typed(self, raw: DictConfig) -> Any:
        """The composed config as the schema's dataclass, checked (:func:`music_rl.core.schema.to_config`, the
        one door); strings typed on the command line stay verbatim (``track_id=00123``, ``track_id=1e5``)."""
        for key, text in verbatim_strings(self.schema).items():
            OmegaConf.update(raw, key, text, merge=False)
        return to_config(raw, self.schema, self.name)

    def run(self, main: Callable[[], Any]) -> None:
        """Run the ``@hydra.main`` function ``main`` with the error policy (the console entry)."""
        if not self.multirun and any(arg in MULTIRUN_FLAGS for arg in sys.argv[1:]):
            fail(f"music-rl {self.name}: -m/--multirun is not supported (it does not sweep)")
        bare = [i for i, arg in enumerate(sys.argv[1:], 1) if "=" not in arg and not arg.startswith("-")
                and sys.argv[i - 1] not in VALUE_FLAGS]
        if self.positional and len(bare) > 1:
            fail(f"music-rl {self.name}: one bare argument at most (it stands for {self.positional}=...), got "
                 f"{len(bare)}: {', '.join(sys.argv[i] for i in bare)}")
        if self.positional and len(bare) == 1:
            sys.argv[bare[0]] = f"{self.positional}={hydra_quote(sys.argv[bare[0]])}"
        twice = repeated_key(sys.argv[1:])
        if twice is not None:
            fail(twice)
        try:
            run_hydra(main, lambda: dotted_keys(self.schema))
        except Exception as err:  # a sweep with failed jobs: one line each, then the summary
            if self.multirun:
                from music_rl.cli.folder_guard import report_failed_sweep

                report_failed_sweep(err)
            raise


def repeated_key(args: list[str]) -> str | None:
    """The error line of a key that the command-line overrides ``args`` set twice to different values (``seed=1
    seed=2``: Hydra takes the last without a word), or None. ``key=``, ``+key=`` and ``++key=`` all set ``key``
    (a config group too); ``~key`` deletes it and is left to Hydra; a sweep's ``key=a,b`` is one override."""
    first: dict[str, str] = {}
    for i, arg in enumerate(args):
        if arg.startswith(("-", "~")) or "=" not in arg or (i and args[i - 1] in VALUE_FLAGS):
            continue
        key = arg.split("=", 1)[0].lstrip("+").strip()
        if key in first and first[key] != arg:  # the same override twice says one thing
            return f"command line: {key} is given twice ({first[key]}, then {arg}): give it once"
        first[key] = arg
    return None


def hydra_quote(text: str) -> str:
    """``text`` as a quoted value of Hydra's override grammar (any characters kept as they are): a quote and
    the backslashes before it, or at the end, are escaped; other backslashes stay as they are."""
    escaped = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", text)
    return "'" + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped) + "'"


def _string_keys(cls: type, prefix: str = "") -> set[str]:
    """The dotted keys of dataclass ``cls`` whose type is ``str`` (or ``str | None``)."""
    keys: set[str] = set()
    for name, hint in typing.get_type_hints(cls).items():
        args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            keys |= _string_keys(hint, f"{prefix}{name}.")
        elif str in args and not {int, float, bool} & set(args):
            keys.add(f"{prefix}{name}")
    return keys


def verbatim_strings(schema: type) -> dict[str, str]:
    """The text as typed of every command-line override of a string key that Hydra read as a number or a
    boolean (``track_id=1e5`` is the string ``"1e5"``, not ``100000.0``)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not HydraConfig.initialized():
        return {}
    strings = _string_keys(schema)
    out = {}
    for override in OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task)):
        value = override.value()
        if override.key_or_group in strings and isinstance(value, int | float | bool) and override.input_line:
            out[override.key_or_group] = override.input_line.split("=", 1)[1].strip()
    return out
