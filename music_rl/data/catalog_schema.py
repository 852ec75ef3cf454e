"""The header of a Spotify-features CSV catalog: which schema it is (TidyTuesday, Kaggle exports, the MSSD's
``tf_mini.csv``, or a ``data.columns`` mapping), which file column holds each of our names, and the delimiter
that splits it (``data.delimiter``, Excel's ``sep=`` line, or sniffed). Reading the rows is
:mod:`music_rl.data.catalog_csv`'s job.
"""

from __future__ import annotations

import csv
import difflib
import re
from pathlib import Path

from music_rl.core.errors import CatalogError, ConfigError
from music_rl.data.catalog import FEATURES

METADATA: tuple[str, ...] = ("track_id", "name", "artist", "genre")  # our names of the metadata columns
_TIDYTUESDAY = {"track_id": "track_id", "name": "track_name", "artist": "track_artist",
                "genre": "playlist_genre"}
_MSSD_MARKERS = ("beat_strength", "bounciness", "dyn_range_mean", "flatness", "mechanism", "organism",
                 "us_popularity_estimate", "acoustic_vector_0")
# Metadata columns looked for, in this order, when the schema does not fix them.
_CANDIDATES: dict[str, tuple[str, ...]] = {
    "track_id": ("track_id", "id", "spotify_id", "uri"),
    "name": ("track_name", "name", "title", "song_name", "song"),
    "artist": ("track_artist", "artists", "artist", "artist_name"),
    "genre": ("playlist_genre", "track_genre", "genre", "genres"),
}


def _lookup(columns: list[str], name: str) -> str | None:
    """The file column called ``name``: exact, else ignoring case and surrounding spaces."""
    if name in columns:
        return name
    folded = {c.strip().lower(): c for c in reversed(columns)}
    return folded.get(name.strip().lower())


def _detect(columns: list[str]) -> str:
    """The schema of a header: tidytuesday, mssd or kaggle (Spotify feature names, metadata optional)."""
    if all(_lookup(columns, c) for c in _TIDYTUESDAY.values()):
        return "tidytuesday"
    if sum(_lookup(columns, c) is not None for c in _MSSD_MARKERS) >= 2:
        return "mssd"
    return "kaggle"


def resolve_columns(columns: list[str], overrides: dict[str, str]) -> tuple[str, dict[str, str], list[str]]:
    """The schema, the map our name → file column, and what is missing from ``columns`` (one phrase each,
    with the closest column name): the features, and the metadata ``overrides`` name."""
    allowed = METADATA + FEATURES
    for ours, theirs in overrides.items():
        if ours not in allowed:
            raise ConfigError(f"data.columns.{ours}={theirs!r}: unknown name; allowed: {', '.join(allowed)}")
    schema = _detect(columns)
    mapping: dict[str, str] = {}
    for ours in METADATA:
        names = (_TIDYTUESDAY[ours],) if schema == "tidytuesday" else _CANDIDATES[ours]
        found = next((c for c in (_lookup(columns, n) for n in names) if c is not None), None)
        if found is not None:
            mapping[ours] = found
    if overrides:
        schema = "custom"
    missing = []
    for ours in FEATURES + tuple(o for o in METADATA if o in overrides):
        wanted = overrides.get(ours, ours)
        found = _lookup(columns, wanted)
        if found is None:
            close = difflib.get_close_matches(wanted, columns, n=1, cutoff=0.6)
            if ours in overrides:
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                missing.append(f"data.columns.{ours}={wanted!r}{hint}")
            else:
                hint = (f" (did you mean {close[0]!r}? rename it or set data.columns.{ours}={close[0]})"
                        if close else "")
                missing.append(f"column {wanted!r}{hint}")
        else:
            mapping[ours] = found
    return schema, mapping, missing


def missing_columns_line(path: Path, columns: list[str], missing: list[str], schema: str, head: str,
                         delimiter: tuple[str, str], overrides: dict[str, str]) -> str:
    """The error line of a header that lacks required columns: what is missing, the columns there are, the
    delimiter they were split with (``delimiter``: the character and where it came from) and, when another
    delimiter splits the header into every required column, that one."""
    used, source = delimiter
    line = (f"{path}: schema {schema}: missing required {'; '.join(missing)}; split with the delimiter "
            f"{shown_delimiter(used)} ({source}), the header has {len(columns)} "
            f"column{'' if len(columns) == 1 else 's'}: {', '.join(columns[:30])}")
    works = next((d for d in DELIMITERS
                  if d != used and not resolve_columns(header_fields(head, d), overrides)[2]), None)
    if works is None:
        return line
    if source == "data.delimiter" and _sniff_delimiter(head) == works:
        advice = "leave data.delimiter null (it is sniffed from the header)"
    elif works == "\t":
        advice = "give data.delimiter a tab character between quotes (\"data.delimiter='<tab>'\")"
    else:
        advice = f"give \"data.delimiter='{works}'\""
    return f"{line}; the delimiter {shown_delimiter(works)} gives every required column: {advice}"


def shown_delimiter(delimiter: str) -> str:
    """A delimiter as an error line names it: ``','``, ``';'``, ``a tab``."""
    return "a tab" if delimiter == "\t" else repr(delimiter)


DELIMITERS: tuple[str, ...] = (",", ";", "\t", "|")  # the delimiters sniffed, and tried when columns are missing
# Excel's first line naming the delimiter of the lines after it ("sep=;"), which the header then follows
_EXCEL_SEP = re.compile(r"sep=(.)[ \t]*", re.IGNORECASE)


def excel_sep(head: str) -> str | None:
    """The delimiter that Excel's first line ``sep=<character>`` declares, or None when there is no such line."""
    first = head.split("\n", 1)[0].removesuffix("\r")
    match = _EXCEL_SEP.fullmatch(first)
    return match.group(1) if match else None


def _sniff_delimiter(head: str) -> str:
    """The delimiter of the header line among :data:`DELIMITERS` (quoted text ignored); ',' when none occurs."""
    header = next((line for line in head.splitlines() if line.strip()), "")
    bare = re.sub(r'"[^"]*"', "", header)
    counts = {d: bare.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def header_fields(head: str, delimiter: str) -> list[str]:
    """The header line's column names, as written (stripped)."""
    first = next((line for line in head.splitlines() if line.strip()), "")
    return [name.strip() for name in next(csv.reader([first], delimiter=delimiter), [])]


def repeated_columns(path: Path, header: list[str], mapping: dict[str, str]) -> list[str]:
    """A column name written more than once: refused when the catalog reads it (which one is meant?), one
    problem line when it does not."""
    folded = [name.lower() for name in header]
    problems = []
    for name in dict.fromkeys(n for n in folded if folded.count(n) > 1):
        where = ", ".join(str(i + 1) for i, n in enumerate(folded) if n == name)
        shown = header[folded.index(name)]
        if name in {used.lower() for used in mapping.values()}:
            raise CatalogError(f"{path}: column {shown!r} appears {folded.count(name)} times (columns {where}): "
                               "which one to read is ambiguous; rename or remove the others")
        problems.append(f"{path}: column {shown!r} appears {folded.count(name)} times (columns {where}); "
                        "unused, the first kept")
    return problems


def choose_delimiter(given: str | None, excel: str | None, head: str) -> tuple[str, str]:
    """The delimiter to split the file with, and where it comes from: ``data.delimiter``, else the file's
    Excel line ``sep=<character>``, else sniffed from the header line."""
    if given is not None:
        return given, "data.delimiter"
    if excel is not None:
        return excel, "Excel's line sep="
    return _sniff_delimiter(head), "sniffed from the header"
