"""The Spotify Music Streaming Sessions Dataset's logs (``log_*.csv``) translated to the project's feedback
format (:mod:`music_rl.data.feedback`): skip flags to ``percentage_listened``, sessions to listeners.

The dataset records skips, not percentages, has no user ids and no likes. Its header is recognised by
:func:`is_mssd_header`; a log is translated by :func:`import_streaming_sessions`, read by the same reader as
every log (:func:`music_rl.data.feedback.read_log_table`) and validated as every log.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from music_rl.core.errors import ConfigError, FeedbackError
from music_rl.data.feedback import parse_flags, read_log_table, refuse_rows, validate_feedback

NO_FLAG = "none"
"""The reserved :data:`DEFAULT_SKIP_MAP` entry for an MSSD row whose skip flags are all false (never a column)."""
DEFAULT_SKIP_MAP: dict[str, float] = {"skip_1": 0.05, "skip_2": 0.2, "skip_3": 0.6, "not_skipped": 1.0,
                                      NO_FLAG: 0.8}
"""MSSD skip flag → ``percentage_listened``, checked in this order: the first true flag wins; ``none``: no flag.

The dataset's wording: ``skip_1`` "only played very briefly", ``skip_2`` "only played briefly", ``skip_3``
"most of the track was played" (then skipped), ``not_skipped`` "played in its entirety". The flags are
nested in the data (``skip_1`` true implies ``skip_2`` and ``skip_3`` true), hence first-true-wins. The values
are the typical share heard at each level; pass another mapping to change them.

``none`` (:data:`NO_FLAG`) is a row with every flag false, a few percent of a real log: the track was left
after ``skip_3``'s threshold (it was not skipped early enough to set even ``skip_3``) but before its end (it
was not played in full), or the playback ended there. It was heard past ``skip_3``'s 0.6 and short of
``not_skipped``'s 1.0: 0.8, the middle of that interval. A mapping without ``none`` refuses such rows.
"""
MSSD_COLUMNS: tuple[str, ...] = ("session_id", "session_position", "track_id_clean")


def is_mssd_header(columns: Iterable[str]) -> bool:
    """Whether a log's header has the MSSD's session and skip columns (``session_position``, ``skip_1``...)."""
    names = set(columns)
    return all(c in names for c in (*MSSD_COLUMNS, "skip_1"))


def import_streaming_sessions(path: str | os.PathLike[str], skip_map: Mapping[str, float] = DEFAULT_SKIP_MAP
                              ) -> tuple[pd.DataFrame, np.ndarray]:
    """A Spotify Music Streaming Sessions Dataset log (``log_*.csv``) as a feedback log.

    The dataset records skips, not percentages: the first true flag of ``skip_map`` (in its order; default
    :data:`DEFAULT_SKIP_MAP`) gives ``percentage_listened``, its entry ``none`` (:data:`NO_FLAG`, never a column)
    that of a row with every flag false. Flags may be written true/false or 1/0. The dataset has no user ids, so
    ``user_id`` is the session id; it has no likes, so ``liked`` is 0. ``position`` is ``session_position``,
    ``track_id`` is ``track_id_clean``; other columns are dropped.

    Returns:
        The feedback log, and which of its rows had no true flag (bool, one per row).

    Raises:
        ConfigError: a ``skip_map`` value is not a number in [0, 1].
        FeedbackError: the file is unreadable or empty, misses a column, a flag is not a boolean, or a
            row has no true flag while ``skip_map`` has no ``none`` entry (named with their 1-based data rows).
    """
    flags = _checked_flags(skip_map)
    src = Path(path)
    df = read_log_table(src, f"an MSSD log has a header: {', '.join(MSSD_COLUMNS)}, ...").astype(str)
    missing = [c for c in (*MSSD_COLUMNS, *flags) if c not in df.columns]
    if missing:
        raise FeedbackError(f"{src}: missing MSSD column(s) {', '.join(missing)}")
    if len(df) == 0:
        raise FeedbackError(f"{src}: no data rows (empty MSSD log)")
    pct = np.full(len(df), np.nan)
    for flag in flags:
        on = parse_flags(df[flag])
        refuse_rows(str(src), flag, np.isnan(on), df[flag], "must be true/false or 1/0")
        pct[np.isnan(pct) & (on == 1.0)] = float(skip_map[flag])
    no_flag = np.isnan(pct)
    if NO_FLAG not in skip_map:
        refuse_rows(str(src), "/".join(flags), no_flag, df[flags[-1]],
                    f"at least one flag must be true (or give skip_map.{NO_FLAG}: the percentage of such rows)")
    pct[no_flag] = float(skip_map.get(NO_FLAG, np.nan))
    log = pd.DataFrame({"user_id": df["session_id"], "session_id": df["session_id"],
                        "position": df["session_position"], "track_id": df["track_id_clean"],
                        "percentage_listened": pct, "liked": 0})
    return validate_feedback(log, source=str(src)), no_flag


def _checked_flags(skip_map: Mapping[str, float]) -> list[str]:
    """The skip flag columns of ``skip_map`` in its order (``none`` is not one); a :class:`ConfigError` for a value
    that is not a number in [0, 1] or a map without a flag."""
    for flag, value in skip_map.items():
        if not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
            raise ConfigError(f"skip_map[{flag!r}]={value!r}: must be a number in [0, 1]")
    flags = [flag for flag in skip_map if flag != NO_FLAG]
    if not flags:
        raise ConfigError(f"skip_map={dict(skip_map)!r}: must map at least one skip flag column")
    return flags
