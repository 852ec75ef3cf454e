"""Shared plumbing of the entry points: one clear line and exit status 2 for errors a user can cause."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import TypeVar

from envs.errors import MusicRLError

T = TypeVar("T")
EXIT_USER_ERROR = 2


def user_errors_exit(func: Callable[..., T]) -> Callable[..., T]:
    """Run ``func``; a :class:`MusicRLError` prints ``error: <message>`` to stderr and exits with status 2."""

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> T:
        try:
            return func(*args, **kwargs)
        except MusicRLError as err:
            logging.getLogger("music-rl").debug("user error", exc_info=True)
            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(EXIT_USER_ERROR)
    return wrapper


D = TypeVar("D")


def parse_args(schema: type[D], argv: list[str]) -> D:
    """Parse ``key=value`` arguments onto the dataclass ``schema`` (typed; unknown keys are errors)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from envs.errors import ConfigError

    bad = [a for a in argv if "=" not in a]
    if bad:
        raise ConfigError(f"argument {bad[0]!r}: expected key=value")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_dotlist(argv))
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        raise ConfigError(f"{err.full_key}: {str(err).splitlines()[0]}") from None
