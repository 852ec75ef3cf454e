"""The durable feedback log of a run folder (``feedback.csv``): crash-safe appends, tolerant reads.

The file is a CSV with the header :data:`COLUMNS`: the feedback schema of :mod:`music_rl.data.feedback`, then
``action_prob``, ``served_at`` (ISO-8601 UTC) and ``policy_version`` (empty for rows of the original
training log). At inference every recommendation served, with its answer, is appended as one CSV record.
Records are encoded by the logs' one writer (:func:`music_rl.data.feedback.csv_text`, whole files by
:func:`music_rl.data.feedback.write_csv`) and read back through the format's one validation
(:func:`music_rl.data.feedback.validate_feedback`); what this module adds is durability: the lock, appends
that are all or nothing, and reads that skip the torn record a crash leaves (a log brought from outside is
read strictly, by :func:`music_rl.data.feedback.read_feedback`).

Durability and concurrency:
- a batch is written by ONE ``os.write`` on a descriptor opened with ``O_APPEND``, then ``os.fsync``-ed;
- writers (and readers) serialise on an exclusive :class:`filelock.FileLock` on ``<path>.lock``, a
  separate file rather than ``flock`` on the log itself, because :meth:`FeedbackStore.create` and the
  header upgrade replace the log by an atomic rename, which a lock held on the old inode would not see;
  the kernel drops the lock when a holder dies, even by SIGKILL. A reader that cannot create or open the
  lock file (a read-only folder: someone else's run) reads without it; at worst it sees the torn last
  record of an append in progress, which it skips as below. A writer there fails with the ``OSError``
  naming the lock file, which the entry points print as one line;
- an append that fails (a full disk, the file size limit: ``OSError``) cuts the file back to its size
  before the append (``ftruncate``) and raises the error naming the log: the log is left byte-identical.
  Cutting back rather than rewriting the whole log to a temporary and renaming it keeps an append
  O(batch) (cold start and serving append one answer at a time to a log that only grows), and needs no
  room for a second copy of the log on a disk that is already full; a log whose header must first be
  upgraded is rewritten once, with the new rows, by an atomic rename;
- a crash (SIGKILL, power loss) can leave only the last record torn. The next append closes it first: a
  closing quote when the file holds an odd number of quotes, then ``len(COLUMNS)`` empty fields and a
  newline, so the torn record can never parse as a row of the right width, and the new rows start on a line
  of their own;
- :meth:`FeedbackStore.read` skips torn records (a wrong number of fields, a ``position``,
  ``percentage_listened``, ``action_prob`` or ``served_at`` that does not parse, a last record without its
  newline) with one warning naming the file and their line numbers; the other rows are validated by
  :func:`music_rl.data.feedback.validate_feedback` (``action_prob`` may be empty row by row).
"""

from __future__ import annotations

import csv
import errno
import io
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock

from music_rl.core.atomic import atomic_path
from music_rl.core.errors import FeedbackError
from music_rl.data.feedback import (
    ANSWER,
    KEY,
    OPTIONAL,
    csv_text,
    describe_key,
    land_once,
    validate_feedback,
    write_csv,
)
from music_rl.data.feedback import COLUMNS as FEEDBACK_COLUMNS

log = logging.getLogger(__name__)

SERVING: tuple[str, ...] = ("served_at", "policy_version")  # when a row was served, by which model (text)
COLUMNS: tuple[str, ...] = (*FEEDBACK_COLUMNS, *OPTIONAL, *SERVING)
_HEADER = ",".join(COLUMNS) + "\n"
_TORN_CLOSE = "," * len(COLUMNS) + "\n"
_UNWRITABLE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})  # the lock file cannot be made or opened


def utc_now() -> str:
    """The current time as an ISO-8601 UTC string with milliseconds (the ``served_at`` format)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class FeedbackStore:
    """An append-only feedback log at ``path`` that survives crashes and concurrent writers."""

    def __init__(self, path: str | os.PathLike[str], must_exist: bool = False) -> None:
        """Open the log at ``path``. The file need not exist yet (the first append creates it) unless
        ``must_exist``: the log of a run whose training wrote one, which an append must never start anew.

        Raises:
            FeedbackError: ``must_exist`` and the file is missing (deleted or moved).
        """
        self.path = Path(path)
        self.must_exist = must_exist
        self._lock = FileLock(f"{self.path}.lock")
        if must_exist and not self.path.is_file():
            raise self._missing()

    @classmethod
    def create(cls, path: str | os.PathLike[str], df: pd.DataFrame) -> FeedbackStore:
        """Write ``df`` as the whole initial log at ``path``, atomically, replacing any file there.

        Missing optional columns (``action_prob``, ``served_at``, ``policy_version``) are written empty.
        Raises :class:`FeedbackError` for unknown, missing or duplicate columns and invalid values.
        """
        store = cls(path)
        frame = _conform(df, store.path, stamp=False)
        store.path.parent.mkdir(parents=True, exist_ok=True)
        with store._lock:
            write_csv(frame, store.path)
        return store

    def append(self, rows: pd.DataFrame | Iterable[Mapping[str, object]]) -> None:
        """Append ``rows`` durably: one CSV record per row, the whole batch in one ``os.write``.

        Rows need the feedback columns; ``served_at`` defaults to now and the other optional columns to
        empty. A file written by another tool with fewer columns is first rewritten with the full header.
        Raises :class:`FeedbackError`, writing nothing of the batch, for unknown, missing or duplicate
        columns and invalid values (a ``served_at`` must be an ISO-8601 time with a timezone), and the
        ``OSError`` of a write that failed, naming the log, which is left as it was (module docstring).
        """
        df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
        if df.empty:
            return
        frame = _conform(df, self.path, stamp=True)
        with self._lock:
            self._write(frame)

    def append_new(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Append one submission's rows, each served track (:data:`music_rl.data.feedback.KEY`) once: exact duplicates
        within it land once (:func:`music_rl.data.feedback.land_once`) and rows the log already holds with the same
        answer are not appended again, reading and appending under one hold of the lock, so a file submitted
        twice, or by concurrent writers, lands once. Returns the rows appended (conformed to :data:`COLUMNS`).

        Raises:
            FeedbackError: one served track answered twice differently, within ``rows`` or against the log
                (nothing is appended), or as :meth:`append`.
        """
        if rows.empty:
            return rows
        frame = land_once(_conform(rows, self.path, stamp=True), f"{self.path} (rows being written)")[0]
        frame = frame.reset_index(drop=True)
        with self._lock:
            if self.path.exists():
                frame = self._not_logged(frame)
            self._write(frame)
        return frame.reset_index(drop=True)

    def _not_logged(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``frame`` the log does not hold yet (lock held); a :class:`FeedbackError` when it holds
        one of their served tracks with another answer."""
        logged = self.read()[[*KEY, *ANSWER]].drop_duplicates()
        new = frame[[*KEY, *ANSWER]].reset_index(names="row")
        both = new.merge(logged, on=list(KEY), suffixes=("", "_logged"))
        same = np.ones(len(both), dtype=bool)
        for col in ANSWER:
            same &= (both[col] == both[f"{col}_logged"]).to_numpy()
        landed = set(both.loc[same, "row"])
        clash = both.loc[~both["row"].isin(landed)]
        if len(clash):
            first = clash.iloc[0]
            raise FeedbackError(
                f"{self.path}: already logs another answer to a served track ({describe_key(first)}): "
                f"percentage_listened {first['percentage_listened_logged']:g}, liked {first['liked_logged']} "
                f"logged vs {first['percentage_listened']:g}, {first['liked']} now; a served track is answered "
                "once: give the new answer another session_id (nothing appended)")
        return frame.loc[~frame.index.isin(list(landed))]

    def read(self, known_track_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """Read the whole log as a DataFrame with :data:`COLUMNS`, skipping torn records with a warning.

        ``position`` and ``liked`` are int64, ``percentage_listened`` and ``action_prob`` float64 (NaN
        when empty), the others strings (empty when unset). It takes the writers' lock, so an append in
        progress is never mistaken for a torn line; where the lock file cannot be created or opened (a
        read-only folder) it reads without the lock. It creates nothing when the file is missing. Raises
        :class:`FeedbackError` when the file is missing, its header is not a valid one (a duplicate,
        unknown or missing column) or a whole record holds an invalid value (the message names the column
        and the data row, counted without skipped torn lines), and when ``known_track_ids`` is given and a
        track id is not among them.
        """
        if not self.path.exists():  # checked first: taking the lock would create <path>.lock (and folders)
            raise FeedbackError(f"{self.path}: no such feedback log")
        with self._lock_for_reading():
            try:
                data = self.path.read_bytes()
            except FileNotFoundError:
                raise FeedbackError(f"{self.path}: no such feedback log") from None
        return _parse(data.decode("utf-8", errors="replace"), self.path, known_track_ids)

    @contextmanager
    def _lock_for_reading(self) -> Iterator[None]:
        """Hold the writers' lock, or no lock where its file cannot be created or opened (read-only folder)."""
        try:
            self._lock.acquire()
            locked = True
        except OSError as err:
            if err.errno not in _UNWRITABLE:
                raise
            log.debug("%s: reading without the lock (%s)", self.path, err.strerror)
            locked = False
        try:
            yield
        finally:
            if locked:
                self._lock.release()

    def _missing(self) -> FeedbackError:
        """The error of a log that must exist but does not."""
        return FeedbackError(f"{self.path}: missing: this run's feedback log (written by its training) was deleted "
                             "or moved; restore it (appending now would start a new log holding only the new rows)")

    def _write(self, frame: pd.DataFrame) -> None:
        """Append the conformed ``frame`` (lock held): in place, or with the header upgrade in one rewrite."""
        if frame.empty:
            return
        body = csv_text(frame, header=False)
        try:
            with open(self.path, encoding="utf-8", errors="replace", newline="") as fh:
                first = fh.readline()
        except FileNotFoundError:
            first = ""
        if first and first != _HEADER:
            self._rewrite(body, len(frame))
        else:
            self._append_bytes(body, len(frame))

    def _append_bytes(self, body: str, n_rows: int) -> None:
        """Write ``body`` at the end of the log in one ``os.write`` and fsync; on failure cut the file back
        to its size before (or remove the file this append created) and raise the error naming the log."""
        existed = self.path.exists()
        try:  # a log that must exist is never created here, even if deleted since it was opened
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | (0 if self.must_exist else os.O_CREAT), 0o644)
        except FileNotFoundError:
            if self.must_exist:
                raise self._missing() from None
            raise
        try:
            size = os.fstat(fd).st_size
            data = (_prefix(fd) + body).encode("utf-8")
            try:
                while data:  # one write; a short write (only under signals or a full disk) is completed
                    data = data[os.write(fd, data):]
                os.fsync(fd)
            except OSError as err:
                os.ftruncate(fd, size)
                if not existed:
                    self.path.unlink(missing_ok=True)
                raise self._unappended(err, n_rows) from None
        finally:
            os.close(fd)

    def _rewrite(self, body: str, n_rows: int) -> None:
        """Rewrite a log whose header is not :data:`COLUMNS` with the full header and ``body`` after its
        records, by an atomic rename (lock held); every record is kept, none lost to a torn-line skip."""
        frame = _parse(self.path.read_text(encoding="utf-8", errors="replace"), self.path, None,
                       refuse_skipped=True)
        try:
            with atomic_path(self.path) as tmp:
                tmp.write_text(csv_text(frame) + body, encoding="utf-8")
        except OSError as err:
            raise self._unappended(err, n_rows) from None

    def _unappended(self, err: OSError, n_rows: int) -> OSError:
        """``err`` naming the log and saying that none of the ``n_rows`` rows was appended."""
        why = err.strerror or os.strerror(err.errno or 0)
        return OSError(err.errno, f"{why} ({n_rows} row(s) not appended; the log is as it was)", str(self.path))


def _prefix(fd: int) -> str:
    """What must precede new records in the open log: its header when empty, or the close of a torn tail."""
    size = os.fstat(fd).st_size
    if size == 0:
        return _HEADER
    if os.pread(fd, 1, size - 1) == b"\n":
        return ""
    open_quote = os.pread(fd, size, 0).count(b'"') % 2 == 1
    return ('"' if open_quote else "") + _TORN_CLOSE


def _conform(df: pd.DataFrame, path: Path, stamp: bool) -> pd.DataFrame:
    """``df`` with exactly :data:`COLUMNS`, optional ones filled, validated; ``stamp`` fills served_at."""
    _check_columns(list(df.columns), path, where="")
    frame = df.reindex(columns=list(COLUMNS)).reset_index(drop=True)
    for col in SERVING:
        values = frame[col].to_numpy(dtype=object)
        frame[col] = np.where(pd.isna(values), "", values).astype(str)
    source = f"{path} (rows being written)"
    check_served_at(frame["served_at"], source)
    if stamp:
        frame.loc[frame["served_at"] == "", "served_at"] = utc_now()
    return _validated(frame, source)


def check_served_at(served: pd.Series, source: str) -> None:
    """Raise :class:`FeedbackError` naming ``source`` and the first bad row unless every non-empty
    ``served_at`` (strings) is an ISO-8601 time with a timezone.

    A value must parse by :meth:`datetime.fromisoformat` with a timezone AND by :func:`_garbled_times`,
    the test :meth:`FeedbackStore.read` applies, which would otherwise skip the row as torn.
    """
    naive = np.array([value != "" and not _has_timezone(value) for value in served], dtype=bool)
    rows = np.flatnonzero(naive | _garbled_times(served))
    if rows.size:
        raise FeedbackError(f"{source}: column served_at, row {rows[0] + 1} ({rows.size} bad in all): must be "
                            "empty (now) or an ISO-8601 time with a timezone, e.g. 2024-05-01T12:00:00.000+00:00 "
                            f"(got {served.iloc[rows[0]]!r})")


def _has_timezone(value: str) -> bool:
    """Whether ``value`` parses by :meth:`datetime.fromisoformat` to a time with a timezone."""
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


def _garbled_times(served: pd.Series) -> np.ndarray:
    """Which ``served_at`` values are given but do not parse as ISO-8601 (as read() skips them)."""
    parsed = pd.to_datetime(served.where(served != ""), format="ISO8601", utc=True, errors="coerce")
    return (parsed.isna() & (served != "")).to_numpy()


def _check_columns(columns: list[str], path: Path, where: str) -> None:
    """Raise :class:`FeedbackError` unless ``columns`` hold every feedback column, only known ones, once."""
    duplicated = sorted({c for c in columns if columns.count(c) > 1}, key=columns.index)
    if duplicated:
        raise FeedbackError(f"{path}:{where} duplicate column{'s' if len(duplicated) > 1 else ''} "
                            f"{', '.join(map(repr, duplicated))}; each column may appear only once")
    unknown = [c for c in columns if c not in COLUMNS]
    missing = [c for c in FEEDBACK_COLUMNS if c not in columns]
    if unknown or missing:
        bad = f"unknown column {unknown[0]!r}" if unknown else f"missing column {missing[0]!r}"
        raise FeedbackError(f"{path}:{where} {bad}; the columns are {', '.join(COLUMNS)} "
                            f"(the last {len(COLUMNS) - len(FEEDBACK_COLUMNS)} optional)")


def _parse(text: str, path: Path, known_track_ids: Iterable[str] | None,
           refuse_skipped: bool = False) -> pd.DataFrame:
    """Parse the text of a log: drop torn records (one warning), validate and type the rest; with
    ``refuse_skipped`` a record that would be dropped is a :class:`FeedbackError` instead (before a rewrite)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, list(COLUMNS))
        _check_columns(header, path, where=" line 1:")
        records: list[list[str]] = []
        lines: list[int] = []
        torn: list[int] = []
        start = last = 2
        for record in reader:
            if len(record) == len(header):
                records.append(record)
                lines.append(start)
            elif record:
                torn.append(start)
            last, start = (start if record else last), reader.line_num + 1
    except csv.Error as err:  # e.g. a field over csv.field_size_limit(): not a log this module wrote
        raise FeedbackError(f"{path}: line {reader.line_num}: not readable as CSV ({err})") from None
    if records and (not text.endswith("\n") or text.count('"') % 2 == 1) and lines[-1] == last:
        records.pop()
        torn.append(lines.pop())
    frame = pd.DataFrame(records, columns=header, dtype=object).reindex(columns=list(COLUMNS), fill_value="")
    garbled = np.zeros(len(frame), dtype=bool)
    for col in ("position", "percentage_listened", "action_prob"):
        given = frame[col].str.strip() != ""
        garbled |= (given & pd.to_numeric(frame[col], errors="coerce").isna()).to_numpy()
    garbled |= _garbled_times(frame["served_at"])
    skipped = sorted([*torn, *np.asarray(lines, dtype=np.int64)[garbled].tolist()])
    if skipped and refuse_skipped:
        raise FeedbackError(f"{path}: line(s) {', '.join(map(str, skipped[:5]))} cannot be read (torn or garbled); "
                            "the log must be rewritten with the full header before appending, which would drop "
                            "them: fix or remove them first")
    if skipped:
        log.warning("%s: skipped %d torn line(s) at line(s) %s (an append cut short by a crash)",
                    path, len(skipped), ", ".join(map(str, skipped)))
    source = f"{path} (data rows counted without the skipped torn lines)" if skipped else str(path)
    return _validated(frame.loc[~garbled], source, known_track_ids)


def _validated(frame: pd.DataFrame, source: str,
               known_track_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """Validate a frame holding :data:`COLUMNS` by :func:`music_rl.data.feedback.validate_feedback`; type it.

    ``action_prob`` may be empty (NaN or "") row by row; given, it must be in (0, 1] as in the schema.
    """
    frame = frame.reset_index(drop=True)
    raw = frame["action_prob"]
    prob = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    given = ~(raw.isna() | (raw.astype(str).str.strip() == "")).to_numpy()
    bad = np.flatnonzero(given & ~((prob > 0) & (prob <= 1)))
    if bad.size:
        raise FeedbackError(f"{source}: column action_prob, row {bad[0] + 1} ({bad.size} bad in all): "
                            f"must be empty or a number in (0, 1] (got {raw.iloc[bad[0]]!r})")
    known = None if known_track_ids is None else list(known_track_ids)
    typed = validate_feedback(frame.drop(columns="action_prob"), source, known, allow_empty=True)
    return typed.assign(action_prob=prob).astype(dict.fromkeys(SERVING, str))[list(COLUMNS)]
