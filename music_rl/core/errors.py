"""Errors a user can cause: bad files, bad columns, bad configs, unknown tracks, broken run folders.

Entry points catch :class:`MusicRLError`, print its message as one line and exit with status 2.
Everything else is a bug and keeps its traceback.
"""

import errno
import os
import re
import signal
import stat
from collections.abc import Iterable
from enum import Enum
from typing import Any


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


class Interrupted(BaseException):
    """SIGTERM or SIGINT stopped the command: it ends in ``error: <this message>``, exit 128 + signal (a
    BaseException, like KeyboardInterrupt: no ``except Exception`` eats it). ``detail`` says what was kept."""

    def __init__(self, signum: int, detail: str = "the files written so far are complete (atomic writes)") -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}; {detail}")
        self.signum = signum


def require(checks: Iterable[tuple[str, Any, bool, str]]) -> None:
    """Raise :class:`ConfigError` ``key=value: allowed`` for the first ``(key, value, ok, allowed)`` not ok (a
    choice shown as typed): how the config dataclasses' ``validate()`` methods check their keys."""
    for key, value, ok, allowed in checks:
        if not ok:
            raise ConfigError(f"{key}={value.value if isinstance(value, Enum) else value!r}: {allowed}")


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


_ELSEWHERE, _NOT_FOLDER = "free some space or write elsewhere", "a part of the path is a file, not a folder"
_WHY = {**dict.fromkeys((errno.EACCES, errno.EPERM), "choose a folder you can write to"),
        **dict.fromkeys((errno.ENOTDIR, errno.EEXIST), f"{_NOT_FOLDER}: choose another path"),
        errno.EROFS: "the file system is read-only: choose another folder", errno.ENOSPC: f"the disk is full: "
        f"{_ELSEWHERE}", errno.EDQUOT: f"the disk quota is exhausted: {_ELSEWHERE}", errno.EFBIG: "the file size "
        "limit was reached: raise it (ulimit -f) or write elsewhere", errno.ENAMETOOLONG: "the name is too long for "
        "the file system: shorten it (for a sweep with many overrides: hydra.sweep.subdir='${hydra.job.num}')",
        errno.EISDIR: "it is a folder: give a file's path", errno.ENOENT: "no such file or folder: check the path"}


def os_error_line(err: OSError) -> str | None:
    """One line for an OSError the user must fix (unwritable folder, full disk), or None for any other."""
    where = err.filename if err.filename is not None else "writing the output"
    message = str(err.args[0]) if err.errno is None and err.args else ""  # str(err) shows the filename once set
    if err.errno is None and (short := re.fullmatch(r"(\d+) requested and (\d+) written", message)):  # numpy
        return (f"{where}: a write was cut short ({short[2]} of {short[1]} items written); the disk is probably "
                f"full: {_ELSEWHERE}")
    if not isinstance(err.errno, int) or (hint := _WHY.get(err.errno)) is None:
        return None
    return f"{where}: {err.strerror or os.strerror(err.errno)}; {hint}"
