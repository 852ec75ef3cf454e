"""A listening log brought by the user, in the project's feedback format or the Spotify Music Streaming Sessions
Dataset's (MSSD ``log_*.csv``), read and joined to the catalog by track id (config group ``feedback``).

Joining: rows whose track is not in the catalog are counted and reported in one line, and dropped
(``feedback.strict=true`` makes them fatal); a log that joins no row, or lacks a needed column, is one
:class:`FeedbackError` line. The result is a feedback frame (:mod:`music_rl.data.feedback`'s schema) and a
:class:`LogReport` of what was read. Every file is read by :func:`music_rl.data.feedback.read_log_table` and
validated by :func:`music_rl.data.feedback.validate_feedback`; an MSSD log is translated by
:mod:`music_rl.data.mssd`.

A submission (:func:`read_submission`: the file given to ``finetune`` or to ``recommend user= feedback=``) is
read by the same join, its rows landing once (:func:`music_rl.data.feedback.land_once`: exact duplicates counted and
dropped, one key with two answers refused); the command's ``strict`` key makes unknown tracks fatal.

MSSD logs have no user ids: their sessions are pooled as one listener (``user_id`` ``mssd``), the personal
protocol's single reward table; no likes (``liked`` is 0: the reward is the percentage listened); no candidate
sets or propensities (off-policy evaluation is then limited to a reward model). Rows with no skip flag true
are read by ``feedback.skip_map.none`` and counted in the report (fatal with ``feedback.strict=true``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd

from music_rl.core.errors import FeedbackError
from music_rl.data.feedback import COLUMNS, OPTIONAL, land_once, read_feedback, read_log_table, validate_feedback
from music_rl.data.mssd import DEFAULT_SKIP_MAP, NO_FLAG, import_streaming_sessions, is_mssd_header

MSSD_USER = "mssd"  # the one listener an MSSD log's pooled sessions are


class LogFormat(StrEnum):
    """How a log file is read."""

    auto = "auto"
    native = "native"
    mssd = "mssd"


@dataclass
class FeedbackConfig:
    """The feedback log the reward table is learnt from (config group ``feedback``)."""

    path: str | None = None
    """null: the probe log answered by the simulated listener | a CSV or Parquet listening log (the project's
    feedback format, or the MSSD's log_*.csv)"""
    format: LogFormat = LogFormat.auto
    """auto: from the header (the MSSD's session_position and skip flags) | native | mssd"""
    columns: dict[str, str] = field(default_factory=dict)
    """native logs: our name -> file column, one entry each given with a +: +feedback.columns.user_id=listener"""
    skip_map: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SKIP_MAP))
    """MSSD skip flags -> percentage_listened, the first true flag in this order wins (an entry changed as
    feedback.skip_map.skip_3=0.5); the reserved entry none (not a column): a row with every flag false, heard past
    skip_3's threshold but not in full (0.8: between skip_3's 0.6 and not_skipped's 1.0)"""
    strict: bool = False
    """true: a row whose track is not in the catalog, or an MSSD row with no skip flag true, is fatal (else
    counted, reported and dropped, or read by skip_map.none)"""
    holdout: float = 0.2
    """share of a user log's sessions kept out of training, for off-policy evaluation of the run's policies"""


@dataclass
class LogReport:
    """What reading and joining a log found."""

    format: str
    rows_read: int
    rows_joined: int
    sessions: int
    users: int
    unknown_rows: int
    unknown_examples: list[str]
    has_likes: bool
    has_propensities: bool
    no_flag_rows: int = 0
    """MSSD rows with every skip flag false, read as ``no_flag_pct`` (``feedback.skip_map.none``)"""
    no_flag_pct: float | None = None
    duplicate_rows: int = 0
    """a submission's exact duplicate rows, landed once"""

    def line(self, path: str | Path) -> str:
        """One line for the run's log."""
        unknown = (f"; {self.unknown_rows} rows whose track is not in the catalog dropped (e.g. "
                   f"{', '.join(map(repr, self.unknown_examples))})" if self.unknown_rows else "")
        no_flag = (f"; {self.no_flag_rows} rows with no skip flag true read as percentage_listened "
                   f"{self.no_flag_pct:g} (feedback.skip_map.{NO_FLAG})" if self.no_flag_rows else "")
        twice = f"; {self.duplicate_rows} exact duplicate rows landed once" if self.duplicate_rows else ""
        likes = "" if self.has_likes else "; no likes: the reward is the percentage listened (like_weight moot)"
        pooled = f"; sessions pooled as one listener ({MSSD_USER!r})" if self.format == "mssd" else ""
        return (f"{path}: {self.format} log, {self.rows_read} rows, {self.sessions} sessions, {self.users} "
                f"listener(s); {self.rows_joined} rows joined to the catalog{unknown}{no_flag}{twice}{likes}"
                f"{pooled}")

    @property
    def repaired(self) -> bool:
        """Whether rows were dropped or read by a rule (the line is then worth printing)."""
        return bool(self.unknown_rows or self.no_flag_rows or self.duplicate_rows)


def detect_format(path: Path) -> LogFormat:
    """``mssd`` when the header has the MSSD's session and skip columns, else ``native``."""
    header = read_log_table(path, "a log starts with its header", nrows=0).columns
    return LogFormat.mssd if is_mssd_header(header) else LogFormat.native


def _native(path: Path, columns: dict[str, str]) -> pd.DataFrame:
    """A log in the project's format, its columns renamed by ``columns`` (our name -> file column)."""
    if not columns:
        return read_feedback(path)
    allowed = (*COLUMNS, *OPTIONAL)
    for ours, theirs in columns.items():
        if ours not in allowed:
            raise FeedbackError(f"feedback.columns.{ours}={theirs!r}: unknown name; allowed: {', '.join(allowed)}")
    raw = read_log_table(path, "a log starts with its header")
    missing = [f"{ours}={theirs!r}" for ours, theirs in columns.items() if theirs not in raw.columns]
    if missing:
        raise FeedbackError(f"{path}: feedback.columns maps to missing column(s) {', '.join(missing)}; the file "
                            f"has {', '.join(list(raw.columns)[:20])}")
    return validate_feedback(raw.rename(columns={theirs: ours for ours, theirs in columns.items()}),
                             source=str(path))


def read_log(cfg: FeedbackConfig, known_track_ids: Sequence[str]) -> tuple[pd.DataFrame, LogReport]:
    """The log of ``cfg.path`` as a feedback frame joined to the catalog (``known_track_ids``), and a report.

    Raises:
        FeedbackError: an unreadable file, a missing column, unknown tracks or MSSD rows with no skip flag with
            ``cfg.strict``, or a log that joins no row of the catalog.
    """
    if not cfg.path:
        raise FeedbackError("feedback.path=None: no log to read")
    path = Path(cfg.path)
    fmt = detect_format(path) if cfg.format == LogFormat.auto else LogFormat(cfg.format)
    if fmt != LogFormat.mssd:
        return join(_native(path, dict(cfg.columns)), path, fmt, known_track_ids, cfg.strict, "feedback.strict")
    log, no_flag = import_streaming_sessions(path, skip_map=dict(cfg.skip_map))
    if no_flag.any() and cfg.strict:
        raise FeedbackError(f"{path}: {int(no_flag.sum())} rows with no skip flag true (first: row "
                            f"{int(np.flatnonzero(no_flag)[0]) + 1}) [feedback.strict=true: fatal; else read as "
                            f"percentage_listened {cfg.skip_map[NO_FLAG]:g}, feedback.skip_map.{NO_FLAG}]")
    kept, report = join(log.assign(user_id=MSSD_USER), path, fmt, known_track_ids, cfg.strict, "feedback.strict")
    if not no_flag.any():
        return kept, report
    return kept, dataclasses.replace(report, no_flag_rows=int(no_flag.sum()),
                                     no_flag_pct=float(cfg.skip_map[NO_FLAG]))


def read_submission(path: str | Path, known_track_ids: Sequence[str], strict: bool = False,
                    strict_key: str = "strict") -> tuple[pd.DataFrame, LogReport]:
    """A submitted feedback file (the project's format) landed once (:func:`music_rl.data.feedback.land_once`) and
    joined to the catalog (:func:`join`): the one rule of ``finetune`` and ``recommend user= feedback=``.

    Raises:
        FeedbackError: an unreadable or invalid file, one key answered twice differently, unknown tracks with
            ``strict`` (``strict_key`` names it), or a file that joins no row of the catalog.
    """
    src = Path(path)
    rows, duplicates = land_once(read_feedback(src), str(src))
    kept, report = join(rows, src, LogFormat.native, known_track_ids, strict, strict_key)
    return kept, dataclasses.replace(report, rows_read=report.rows_read + duplicates, duplicate_rows=duplicates)


def join(log: pd.DataFrame, path: Path, fmt: LogFormat, known_track_ids: Sequence[str], strict: bool,
         strict_key: str) -> tuple[pd.DataFrame, LogReport]:
    """The rows of ``log`` whose track is in the catalog, and the report; unknown tracks are counted and
    dropped, or with ``strict`` a :class:`FeedbackError` naming ``strict_key`` and the first one's row (``log``'s
    index: its 0-based data row in the file); a log joining no row is one."""
    known = pd.Index([str(t) for t in known_track_ids])
    joined = known.get_indexer(pd.Index(log["track_id"].astype(str))) >= 0
    unknown = log.loc[~joined, "track_id"].astype(str)
    if unknown.size and strict:
        raise FeedbackError(f"{path}: {unknown.size} rows whose track is not in the catalog (e.g. "
                            f"{unknown.iloc[0]!r}) from row {int(unknown.index[0]) + 1} "
                            f"[{strict_key}=true: fatal]")
    if not joined.any():
        raise FeedbackError(f"{path}: joins no row of the catalog: its track ids (e.g. {unknown.iloc[0]!r}) are "
                            f"not the catalog's (e.g. {known[0]!r}); is it the log of this catalog?")
    kept = log.loc[joined].reset_index(drop=True)
    has_prob = "action_prob" in kept and kept["action_prob"].notna().any()
    report = LogReport(format=str(fmt), rows_read=len(log), rows_joined=len(kept),
                       sessions=kept["session_id"].nunique(), users=kept["user_id"].nunique(),
                       unknown_rows=int(unknown.size), unknown_examples=list(dict.fromkeys(unknown))[:3],
                       has_likes=bool(kept["liked"].any()) if fmt == LogFormat.native else False,
                       has_propensities=bool(has_prob))
    return kept, report


def split_sessions(log: pd.DataFrame, holdout: float, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The log's sessions split into (training, held-out) rows, ``holdout`` of the sessions held out (at least
    one session stays in training)."""
    sessions = log["user_id"].astype(str) + "\x1f" + log["session_id"].astype(str)
    unique = sessions.unique()
    n_out = min(int(round(holdout * len(unique))), len(unique) - 1)
    out = set(rng.permutation(unique)[:n_out].tolist())
    held = sessions.isin(out).to_numpy()
    return log.loc[~held].reset_index(drop=True), log.loc[held].reset_index(drop=True)
