"""Errors a user can cause: bad files, bad columns, bad configs, unknown tracks, broken run folders.

Entry points catch :class:`MusicRLError`, print its message as one line and exit with status 2.
Everything else is a bug and keeps its traceback.
"""

import os
import stat


class MusicRLError(Exception):
    """Base class of every error a user can cause."""


class CatalogError(MusicRLError):
    """A track catalog cannot be read or fails validation."""


class FeedbackError(MusicRLError):
    """A feedback log cannot be read or fails validation."""


class ConfigError(MusicRLError):
    """A configuration value is invalid; the message names the key, the value and what is allowed."""


class RunFolderError(MusicRLError):
    """A run folder is missing files, holds corrupt artifacts or comes from another project version."""


class UnknownTrackError(MusicRLError):
    """A track id or query matches no track of the catalog."""


class OutputError(MusicRLError):
    """An output path cannot take a file: it is a directory, a FIFO, a device or a socket."""


class ResultsError(MusicRLError):
    """A results file (``results/<table>.json``) or a generated block of a document is missing, malformed or
    out of date."""


def path_kind(path: str | os.PathLike[str]) -> str:
    """What ``path`` is, for an error line about a path that should be a regular file or a folder: ``a
    directory``, ``a FIFO``, ``a character device``, ``a block device``, ``a socket``, ``a regular file``,
    ``another kind of file`` or ``missing`` (symbolic links followed)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "missing"
    kinds = ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "another kind of file")


def not_a(path: str | os.PathLike[str], wanted: str) -> str:
    """Why ``path`` is not the ``wanted`` kind (``regular file``, ``folder``, ``run folder``), for an error line:
    ``no such file``, ``no such folder``, ``a FIFO, not a regular file``, ``a directory, not a regular file``..."""
    kind = path_kind(path)
    return f"no such {wanted.removeprefix('regular ')}" if kind == "missing" else f"{kind}, not a {wanted}"
