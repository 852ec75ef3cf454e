"""Feedback logs: their format, its validation, and the one reader and writer of a log file (the MSSD's
logs are translated by :mod:`music_rl.data.mssd`; a run's append-only log is :mod:`music_rl.data.feedback_store`;
logs played by simulated listeners are :mod:`envs.simulated_logs`).

A feedback log has one row per track played::

    user_id, session_id, position, track_id, percentage_listened, liked [, from_track_id, candidates, action_prob]

``position`` is the 1-based place of the track in its session, ``percentage_listened`` a number in
[0, 1], ``liked`` 0 or 1. The optional columns make a logged step replayable (off-policy evaluation):
``from_track_id`` the track the recommendation was made from (the session's start track for its first
step; empty for a probe, which is played in a fresh session), ``candidates`` the track ids shown, in order,
space-separated (the chosen track among them), ``action_prob`` the logging policy's probability of the chosen
one (1 for a deterministic choice: a probe, an argmax). After :func:`read_feedback` the id columns are
``str``, ``position`` and ``liked`` int64, the numbers float64 (``action_prob`` NaN where not logged); columns
beyond the schema are kept after it.

A row answers one served track, its key :data:`KEY` (user, session, position, track). Within one submission
(:func:`land_once`) an exact duplicate lands once and a key with two different answers is refused.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from music_rl.core.atomic import atomic_path
from music_rl.core.errors import FeedbackError, path_kind

COLUMNS: tuple[str, ...] = ("user_id", "session_id", "position", "track_id", "percentage_listened", "liked")
OPTIONAL: tuple[str, ...] = ("from_track_id", "candidates", "action_prob")
SUFFIXES: tuple[str, ...] = (".csv", ".parquet", ".pq")
KEY: tuple[str, ...] = ("user_id", "session_id", "position", "track_id")  # one served track of one session
ANSWER: tuple[str, ...] = ("percentage_listened", "liked")  # what the listener answered to it
MAX_POSITION = 2**31 - 1  # the largest ``position`` (an int64 holds it exactly, whatever the file wrote)

_TRUE = frozenset({"true", "1", "1.0", "t", "yes"})
_FALSE = frozenset({"false", "0", "0.0", "f", "no"})
_SHOWN_ROWS = 5  # row numbers quoted in an error message before "+n more"


def write_feedback(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Validate ``df`` and write it atomically as CSV (:func:`write_csv`) or Parquet, chosen by the suffix of
    ``path``.

    Raises:
        FeedbackError: the suffix is not one of :data:`SUFFIXES` or the frame fails validation.
    """
    target = Path(path)
    _check_suffix(target)
    frame = validate_feedback(df, source=f"{target} (frame being written)")
    if target.suffix.lower() == ".csv":
        write_csv(frame, target)
        return
    with atomic_path(target) as tmp:
        frame.to_parquet(tmp, index=False)


def write_csv(frame: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write a validated frame atomically as a CSV log (:func:`csv_text` with its header)."""
    with atomic_path(path) as tmp:
        tmp.write_text(csv_text(frame), encoding="utf-8")


def csv_text(frame: pd.DataFrame, header: bool = True) -> str:
    """A validated frame as CSV text: the header (unless not ``header``), then one record per row, fields quoted
    where needed, every record ended by LF; an empty value (NaN) is an empty field. The one CSV encoding of a
    log: whole files and a run's appended records alike."""
    return frame.to_csv(header=header, index=False, lineterminator="\n")


def read_feedback(path: str | os.PathLike[str], known_track_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Read and validate a feedback log (CSV or Parquet by suffix).

    Args:
        path: the log.
        known_track_ids: when given, every ``track_id`` must be one of these (the catalog's ids).

    Raises:
        FeedbackError: one line naming the file, the column, the first few (1-based data) rows and what
            is allowed: unreadable or empty file, missing columns, a percentage that is not a number in
            [0, 1], ``liked`` not 0/1, a position that is not an integer in [0, :data:`MAX_POSITION`], an
            id that is empty or holds a carriage return, unknown track ids.
    """
    src = Path(path)
    return validate_feedback(read_log_table(src, f"a feedback log starts with {','.join(COLUMNS)}"),
                             source=str(src), known_track_ids=known_track_ids)


def read_log_table(src: Path, empty_hint: str, nrows: int | None = None) -> pd.DataFrame:
    """A log file's table (CSV: every cell as text, the delimiter sniffed from the header among , ; tab;
    Parquet: as stored), refused in one :class:`FeedbackError` line when it cannot be read as one: a missing
    file, a folder, a FIFO or a device (named as such: never opened), another suffix, a compressed file, lines
    ending in CR only, an empty one (``empty_hint`` says what is expected), a column name written twice. Only LF
    ends a CSV record: a CR elsewhere than before it stays in its field (:func:`_without_line_end_cr`)."""
    kind = path_kind(src)
    if kind != "a regular file":
        raise FeedbackError(f"{src}: {'no such file' if kind == 'missing' else f'{kind}, not a log'}")
    _check_suffix(src)
    with open(src, "rb") as fh:
        head = fh.read(4096)
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"PK\x03\x04")) and src.suffix.lower() == ".csv":
        raise FeedbackError(f"{src}: a compressed file; logs are read uncompressed (.csv) or as Parquet")
    if src.suffix.lower() == ".csv" and b"\r" in head and b"\n" not in head:
        raise FeedbackError(f"{src}: its lines end in CR only (a classic Mac OS file): convert them to LF or CRLF")
    try:
        if src.suffix.lower() != ".csv":
            frame = pd.read_parquet(src)
            return frame.head(nrows) if nrows is not None else frame
        header = head.decode("utf-8", errors="replace").lstrip("\ufeff").splitlines()[:1] or [""]
        delimiter = max((",", ";", "\t"), key=header[0].count)
        names = next(csv.reader(header, delimiter=delimiter), [])
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise FeedbackError(f"{src}: column(s) {', '.join(map(repr, repeated))} written more than once: which "
                                "one to read is ambiguous")
        frame = pd.read_csv(src, sep=delimiter, dtype=str, keep_default_na=False, na_filter=False,
                            index_col=False, nrows=nrows, encoding="utf-8-sig", lineterminator="\n")
        return _without_line_end_cr(frame)
    except pd.errors.EmptyDataError:
        raise FeedbackError(f"{src}: empty file ({empty_hint})") from None
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise FeedbackError(f"{src}: unreadable ({_first_line(err)})") from None


def _without_line_end_cr(frame: pd.DataFrame) -> pd.DataFrame:
    """A CSV table read with only ``\\n`` ending a record, its line ends' CRs (CRLF, or CRCRLF converted twice)
    removed from the last column and its name; a CR anywhere else stays in its field, named by validation."""
    if frame.columns.empty:
        return frame
    last = frame.columns[-1]
    frame = frame.rename(columns={last: last.rstrip("\r")})
    last = frame.columns[-1]
    frame[last] = frame[last].str.rstrip("\r")
    return frame


def land_once(df: pd.DataFrame, source: str) -> tuple[pd.DataFrame, int]:
    """The rows of one submission with each :data:`KEY` once: exact duplicates (the same key and
    :data:`ANSWER`) land once; returns the rows kept (in order, indexed by their 0-based row in ``df``) and how
    many duplicates were dropped.

    Raises:
        FeedbackError: one key with two different answers, naming the key, both rows and both answers.
    """
    typed = df.reset_index(drop=True)
    exact = typed.duplicated(subset=[*KEY, *ANSWER]).to_numpy()
    kept = typed.loc[~exact]
    clash = kept.duplicated(subset=list(KEY), keep=False).to_numpy()
    if clash.any():
        first = kept.loc[clash].iloc[0]
        same = (typed[list(KEY)] == first[list(KEY)]).all(axis=1).to_numpy() & ~exact
        rows = np.flatnonzero(same)[:2]
        answers = " vs ".join(_answer(typed.iloc[r]) for r in rows)
        raise FeedbackError(f"{source}: rows {rows[0] + 1} and {rows[1] + 1} answer one served track twice, "
                            f"differently ({describe_key(first)}): {answers}; keep the right one")
    return kept, int(exact.sum())


def describe_key(row: pd.Series) -> str:
    """``user_id='u', session_id='s', position=3, track_id='t'``: the :data:`KEY` of a row, for messages."""
    return ", ".join(f"{col}={row[col]!r}" if col != "position" else f"position={row[col]}" for col in KEY)


def _answer(row: pd.Series) -> str:
    """``percentage_listened 0.5, liked 1``: a row's :data:`ANSWER`, for messages."""
    return f"percentage_listened {row['percentage_listened']:g}, liked {row['liked']}"


def validate_feedback(df: pd.DataFrame, source: str = "feedback", known_track_ids: Sequence[str] | None = None,
                      allow_empty: bool = False) -> pd.DataFrame:
    """Check a feedback frame and return it typed (schema columns first, then ``action_prob``, then extras).

    Args:
        df: the frame, with values of any type (strings as read from CSV included).
        source: what to name in error messages (a file name).
        known_track_ids: when given, the allowed track ids.
        allow_empty: a frame without rows is valid (a run's log before its first answer), typed all the same.

    Raises:
        FeedbackError: see :func:`read_feedback`.
    """
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise FeedbackError(f"{source}: missing column(s) {', '.join(missing)} "
                            f"(a feedback log has {', '.join(COLUMNS)}, optionally {', '.join(OPTIONAL)})")
    if len(df) == 0 and not allow_empty:
        raise FeedbackError(f"{source}: no data rows (empty feedback log)")
    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    for col in ("user_id", "session_id", "track_id"):
        values = df[col].reset_index(drop=True)
        text = values.astype(str)
        refuse_rows(source, col, values.isna().to_numpy() | (text.str.strip() == "").to_numpy(), values,
                    "must not be empty")
        refuse_rows(source, col, text.str.contains("\r", regex=False).to_numpy(), values,
                    "must not hold a carriage return (a stray CR, e.g. line ends converted twice: remove it)")
        out[col] = text
    position = _numbers(df["position"])
    refuse_rows(source, "position", ~((position >= 0) & (position <= MAX_POSITION) & (position == np.round(position))),
                df["position"], f"must be an integer in [0, {MAX_POSITION}]")
    out.insert(2, "position", position.astype(np.int64))
    pct = _numbers(df["percentage_listened"])
    refuse_rows(source, "percentage_listened", ~((pct >= 0) & (pct <= 1)), df["percentage_listened"],
                "must be a number in [0, 1]")
    out["percentage_listened"] = pct
    liked = parse_flags(df["liked"])
    refuse_rows(source, "liked", np.isnan(liked), df["liked"], "must be 0 or 1")
    out["liked"] = liked.astype(np.int64)
    for col in ("from_track_id", "candidates"):
        if col in df.columns:
            out[col] = df[col].fillna("").astype(str).str.strip().to_numpy()
    if "candidates" in df.columns:
        shown = out["candidates"] != ""
        chosen = [t in c.split() for t, c in zip(out["track_id"], out["candidates"], strict=True)]
        refuse_rows(source, "candidates", (shown & ~np.array(chosen, dtype=bool)).to_numpy(), df["candidates"],
                    "must hold the chosen track_id among the space-separated ids shown")
    if "action_prob" in df.columns:
        prob = _numbers(df["action_prob"])
        given = ~df["action_prob"].astype(str).str.strip().isin(["", "nan", "NaN", "None"]).to_numpy()
        refuse_rows(source, "action_prob", given & ~((prob > 0) & (prob <= 1)), df["action_prob"],
                    "must be empty or a number in (0, 1]")
        out["action_prob"] = prob
    for col in df.columns:
        if col not in out.columns:
            out[col] = df[col].to_numpy()
    if known_track_ids is not None:
        known = {str(t) for t in known_track_ids}
        refuse_rows(source, "track_id", ~out["track_id"].isin(known).to_numpy(), out["track_id"],
                    f"unknown track id (not one of the catalog's {len(known)} tracks)")
    return out


def _check_suffix(path: Path) -> None:
    """FeedbackError unless ``path`` ends in one of :data:`SUFFIXES`."""
    if path.suffix.lower() not in SUFFIXES:
        raise FeedbackError(f"{path}: suffix {path.suffix!r} not supported (one of {', '.join(SUFFIXES)})")


def _first_line(err: Exception) -> str:
    """The first line of an exception's message, or its type when it has none."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _numbers(values: pd.Series) -> np.ndarray:
    """float64 values; NaN where a value is missing or not a number."""
    return pd.to_numeric(values.reset_index(drop=True), errors="coerce").to_numpy(dtype=np.float64,
                                                                                    na_value=np.nan)


def parse_flags(values: pd.Series) -> np.ndarray:
    """1.0 / 0.0 for true/false written as booleans, 1/0 or true/false text; NaN for anything else."""
    text = values.reset_index(drop=True).astype(str).str.strip().str.lower().to_numpy()
    out = np.full(len(text), np.nan)
    out[np.isin(text, list(_TRUE))] = 1.0
    out[np.isin(text, list(_FALSE))] = 0.0
    return out


def refuse_rows(source: str, column: str, bad: np.ndarray, values: pd.Series, allowed: str) -> None:
    """FeedbackError naming the first few bad (1-based data) rows of ``column``, when there are any."""
    rows = np.flatnonzero(bad)
    if rows.size == 0:
        return
    shown = ", ".join(str(r + 1) for r in rows[:_SHOWN_ROWS])
    more = f" (+{rows.size - _SHOWN_ROWS} more, {rows.size} in all)" if rows.size > _SHOWN_ROWS else ""
    example = values.iloc[int(rows[0])]
    raise FeedbackError(f"{source}: column {column}, row{'s' if rows.size > 1 else ''} {shown}{more}: "
                        f"{allowed} (got {example!r})")
