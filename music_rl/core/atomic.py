"""Atomic file writes: write to a temporary name in the same folder, fsync, then rename.

A reader never sees a half-written artifact; a crash leaves either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from music_rl.core.errors import OutputError, not_a, path_kind

# The longest file name most file systems take (bytes); a temporary name adds 14 to its target's (".", ".",
# 8 random characters, ".tmp"), so a long target name is shortened in its temporary's name.
NAME_MAX = 255


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success, fsync it and rename it onto ``path``.

    The caller writes the whole artifact to the yielded path (with any writer: ``np.save``,
    ``torch.save``, ``DataFrame.to_csv``...). On an exception the temporary file is removed and
    ``path`` is left untouched. An ``OSError`` about the temporary file names ``path`` instead (the user's
    path, not a hidden name).

    Raises:
        OutputError: ``path`` cannot be written as a file (:func:`output_problem`).
    """
    problem = output_problem(path)
    if problem is not None:
        raise OutputError(f"{path}: {problem}; give the path of a file to write")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        tmp = _temporary(target)
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as err:
        if err.filename is not None and tmp is not None and Path(err.filename) != tmp:
            raise  # about another file
        if err.errno is None:  # a short write (numpy's tofile) names no file
            err.filename = str(target)
            raise
        raise type(err)(err.errno, err.strerror, str(target)) from err
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()


def output_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be written as a file, or None: it exists and is not a regular file (a directory, a
    FIFO, ``/dev/null``...: renaming onto it would replace a pipe or a device with a file), or it ends with ``/``
    (a folder's path, which ``Path`` would silently read as a file's)."""
    if str(path).endswith(("/", os.sep)):
        return f"ends with {os.sep!r}: a folder's path, not a file's"
    if path_kind(path) not in ("missing", "a regular file"):
        return not_a(path, "regular file")
    return None


def _temporary(target: Path) -> Path:
    """A new empty file ``.<target name>.<random>.tmp`` beside ``target`` (the name shortened to fit
    :data:`NAME_MAX`), with the usual permissions of a new file."""
    name = target.name.encode("utf-8", "surrogateescape")[: NAME_MAX - 14].decode("utf-8", "ignore")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_name, 0o666 & ~umask)  # mkstemp makes 0600; artifacts get the usual permissions
    return Path(tmp_name)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as strict JSON (indented, keys sorted: byte-identical for identical data), atomically.

    A NaN or an infinity is a bug of the caller, which writes an undefined value as ``null`` with its reason
    beside it: ``ValueError`` here, rather than a bare ``NaN`` that JSON readers refuse.
    """
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")
