"""The one door of every command's config: a config composed by Hydra, merged onto the command's dataclass
schema and checked, once (:func:`to_config`). Light: no numpy, no torch (every command, ``music-rl tables``
too, takes it).

One validation style: each config dataclass checks its own keys in a ``validate()`` method
(:func:`music_rl.core.errors.require`); ``music_rl.config.TrainConfig.validate`` calls its groups' and checks
the rules across groups. What every command's schema shares is checked here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from music_rl.core.errors import ConfigError

SEED_LIMIT = 2**32  # numpy's and SB3's seeds: integers in 0..2**32-1


def check_seed(key: str, value: int | None) -> None:
    """Raise :class:`ConfigError` unless ``value`` is None or a seed in ``0 <= seed < 2**32``."""
    if value is not None and not 0 <= value < SEED_LIMIT:
        raise ConfigError(f"{key}={value}: must be an integer in 0..{SEED_LIMIT - 1} (a seed)")


def to_config(raw: DictConfig | dict[str, Any], schema: type, command: str = "train") -> Any:
    """``raw`` merged onto the dataclass ``schema`` and checked: the typed object. Checked here, for every
    command: its seeds (``seed``, ``*_seed``), ``lock_timeout`` >= 0, a required path not empty; then the
    schema's own ``validate()``.

    Raises:
        ConfigError: one line naming the key, its value and what is allowed (``command``: for its ``--help``).
    """
    raw = raw if isinstance(raw, DictConfig) else OmegaConf.create(raw)
    try:
        typed: Any = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), raw))
    except MissingMandatoryValue as err:
        raise ConfigError(f"{err.full_key}: required: give {err.full_key}=... (music-rl {command} --help)") from None
    except OmegaConfBaseException as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"{err.full_key}: {first}") from None
    for field in dataclasses.fields(schema):
        value = getattr(typed, field.name)
        if field.name == "seed" or field.name.endswith("_seed"):
            check_seed(field.name, value)
        elif field.name == "lock_timeout" and not 0 <= value < float("inf"):
            raise ConfigError(f"lock_timeout={value}: must be a number of seconds >= 0")
        elif field.default is MISSING and isinstance(value, str) and not value.strip():
            raise ConfigError(f"{field.name}: empty; give {field.name}=<a path> (music-rl {command} --help)")
    if hasattr(typed, "validate"):
        typed.validate()
    return typed
