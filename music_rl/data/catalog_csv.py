"""Spotify-features CSV catalogs read: the rows (UTF-8 with or without BOM; gzip, bz2, xz or zip compressed;
decimal commas read consistently), validated and repaired, each problem one line naming the file, column, lines
and value (:func:`load_csv`). The header's schema, column mapping and delimiter are
:mod:`music_rl.data.catalog_schema`'s.

The rules on parsed columns are the Parquet reader's too (:mod:`music_rl.data.catalog_parquet`), one
implementation each: :func:`check_features` (features in their allowed ranges, empty and non-numeric values,
rows dropped and counted), :func:`metadata` (empty ids), :func:`finish` (repeated ids, key -1, constant
columns, ``data.strict``, too few tracks); :class:`Faults` counts their problems part by part.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from io import BufferedIOBase
from pathlib import Path
from typing import Literal, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from music_rl.core.errors import CatalogError, ConfigError, not_a
from music_rl.data.catalog import FEATURES, Catalog, DataConfig
from music_rl.data.catalog_schema import (
    METADATA,
    choose_delimiter,
    excel_sep,
    header_fields,
    missing_columns_line,
    repeated_columns,
    resolve_columns,
    shown_delimiter,
)

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------- validation

_UNIT = {"danceability", "energy", "speechiness", "acousticness", "instrumentalness", "liveness", "valence"}
# What a valid raw value is, for the messages; :func:`_valid` checks it.
ALLOWED: dict[str, str] = {
    **{f: "0..1" for f in _UNIT},
    "loudness": "-60..3 dB",
    "tempo": "0 < tempo <= 300 BPM",
    "key": "a whole number -1..11 (-1: no key detected)",
    "mode": "0, 1, 'minor' or 'major'",
}
# The raw key given to Spotify's -1 ("no key detected"): the middle of 0..11, no pitch class favoured.
NO_KEY = 5.5
_NA_TOKENS = ("", "na", "n/a", "nan", "null", "none")


def _valid(feature: str, x: np.ndarray) -> np.ndarray:
    """Which values of a parsed feature column are physically possible (NaN: False)."""
    with np.errstate(invalid="ignore"):
        if feature == "loudness":
            return (x >= -60.0) & (x <= 3.0)
        if feature == "tempo":
            return (x > 0.0) & (x <= 300.0)
        if feature == "key":
            key: np.ndarray = (x >= -1.0) & (x <= 11.0) & (x == np.round(x))  # an array's == is typed Any
            return key
        if feature == "mode":
            mode: np.ndarray = (x == 0.0) | (x == 1.0)
            return mode
        return (x >= 0.0) & (x <= 1.0)


def _rows(n: int) -> str:
    """'1 row', '3 rows'."""
    return f"{n} row{'' if n == 1 else 's'}"


@dataclass(frozen=True)
class Numbering:
    """How problem lines point at a catalog's rows: ``word`` and the number of the first track."""

    word: str
    first: int


LINES = Numbering("line", 2)  # a CSV file's lines: the header is line 1
ROWS = Numbering("row", 1)  # a Parquet file's rows: the first track is row 1


def _where(numbers: Sequence[int] | np.ndarray, count: int, word: str = "line") -> str:
    """'line 7' or 'lines 7, 9, 12, ...' (``numbers``: the first three of ``count``)."""
    shown = ", ".join(str(int(v)) for v in numbers[:3])
    return f"{word}{'s' if count > 1 else ''} {shown}{', ...' if count > 3 else ''}"


def _at(numbers: Sequence[int] | np.ndarray, count: int, example: str, word: str = "line") -> str:
    """'line 7: <example>' or 'lines 7, 9, ...; e.g. <example> at line 7'."""
    if count == 1:
        return f"{word} {int(numbers[0])}: {example}"
    return f"{_where(numbers, count, word)}; e.g. {example} at {word} {int(numbers[0])}"


@dataclass
class _Fault:
    head: str  # "column 'tempo': " or ""
    what: str  # "with a non-numeric value dropped"
    count: int = 0
    first: list[int] = field(default_factory=list)  # the row numbers of the first three
    example: str | None = None  # the value shown, for the first row


class Faults:
    """A catalog's problems counted over the parts it is read in (a CSV file at once, a Parquet file batch by
    batch): each kind (a key) keeps its count, its first three row numbers and its first value, and is written
    as one line at the end (:meth:`lines`), in the order of the keys, whatever part it first occurred in."""

    def __init__(self, path: Path, numbering: Numbering) -> None:
        self.path, self.numbering = path, numbering
        self._faults: dict[tuple[int, ...], _Fault] = {}

    def add(self, key: tuple[int, ...], head: str, what: str, mask: np.ndarray, numbers: np.ndarray,
            example: Callable[[int], str] | None = None) -> None:
        """Count the rows of ``mask`` (``numbers``: the part's row numbers); ``example(i)``: the value its line
        shows for the part's row ``i`` (the first faulty row read), none for a fault without a value."""
        hit = np.flatnonzero(mask)
        if not len(hit):
            return
        fault = self._faults.get(key)
        if fault is None:
            fault = self._faults[key] = _Fault(head, what, example=None if example is None else example(int(hit[0])))
        fault.first += [int(v) for v in numbers[hit[:3 - len(fault.first)]]]
        fault.count += len(hit)

    def lines(self) -> list[str]:
        """One line per fault found: ``<path>: <head><n> rows <what> (<where>)``."""
        word = self.numbering.word
        return [f"{self.path}: {f.head}{_rows(f.count)} {f.what} ("
                f"{_where(f.first, f.count, word) if f.example is None else _at(f.first, f.count, f.example, word)})"
                for _, f in sorted(self._faults.items())]


# --------------------------------------------------------------------------------------------- reading

Compression = Literal["gzip", "bz2", "xz", "zip"]  # pandas' names of the compressions a catalog may have

# the first bytes of the compressed files pandas reads, and their pandas name
_MAGIC: tuple[tuple[bytes, Compression], ...] = (
    (b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"),
    (b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip"))  # the last: an empty zip


PARQUET_MAGIC = b"PAR1"  # the first (and last) bytes of a Parquet file


def _compression(path: Path) -> Compression | None:
    """The file's compression (gzip, bz2, xz, zip) by its first bytes, whatever its name; None for text. A
    Parquet file is refused (:class:`CatalogError`): data=parquet reads it."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(PARQUET_MAGIC):
        raise CatalogError(f"{path}: a Parquet file (it begins with the bytes PAR1), not a CSV: read it with "
                           "data=parquet")
    return next((name for magic, name in _MAGIC if head.startswith(magic)), None)


def _head_text(path: Path, compression: Compression | None) -> str:
    """The first 64 KiB of the file's text (decompressed), for the header and the delimiter."""
    import bz2
    import gzip
    import lzma
    import zipfile

    opener: dict[str, Callable[[Path, Literal["rb"]], BufferedIOBase]] = {"gzip": gzip.open, "bz2": bz2.open,
                                                                          "xz": lzma.open}
    try:
        if compression == "zip":
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if not n.endswith("/")]
                if len(names) != 1:
                    raise CatalogError(f"{path}: a zip archive holding {len(names)} files; a catalog archive "
                                       "holds one CSV")
                data = archive.open(names[0]).read(65536)
        elif compression:
            with opener[compression](path, "rb") as fh:
                data = fh.read(65536)
        else:
            with open(path, "rb") as fh:
                data = fh.read(65536)
    except (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile) as err:
        raise CatalogError(f"{path}: a damaged {compression} file ({err})") from None
    return data.removeprefix(b"\xef\xbb\xbf").decode("utf-8", errors="replace")


def _unique(columns: list[str]) -> list[str]:
    """The column names, each once (the first occurrence)."""
    return list(dict.fromkeys(columns))


def _read_table(path: Path, delimiter: str, head: str, compression: Compression | None,
                skip: int) -> tuple[pd.DataFrame, np.ndarray, int, list[str]]:
    """Every cell as a string (``NA`` stays ``NA``), the file line of each row, the number of rows skipped
    for a wrong number of fields, and the problem line about them; the header is the line after the first
    ``skip`` lines (``head``: the text from it)."""
    if not head.strip():
        raise CatalogError(f"{path}: empty file (expected a header line and one row per track)")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            df = pd.read_csv(path, sep=delimiter, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                             index_col=False, on_bad_lines="warn", compression=compression,
                             skiprows=skip)
    except pd.errors.EmptyDataError:
        raise CatalogError(f"{path}: empty file (expected a header line and one row per track)") from None
    except UnicodeDecodeError as err:
        raise CatalogError(f"{path}: not UTF-8 text (byte {err.start}); re-save it as UTF-8") from None
    except (pd.errors.ParserError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CatalogError(f"{path}: cannot parse as CSV with delimiter {delimiter!r}: {first}") from None
    df.columns = [str(c).strip() for c in df.columns]
    if len(df) == 0:
        raise CatalogError(f"{path}: header only, no track rows (columns: {', '.join(df.columns[:30])})")
    skipped = [(int(line), why) for w in caught for line, why in re.findall(r"Skipping line (\d+): ([^\n]*)",
                                                                            str(w.message))]
    bad = np.array(sorted(line for line, _ in skipped), dtype=np.int64)
    good = np.ones(len(df) + len(bad), dtype=bool)
    good[bad - 2 - skip] = False
    lines = np.flatnonzero(good)[: len(df)] + 2 + skip
    problems = []
    if skipped:
        problems.append(f"{path}: {_rows(len(skipped))} with the wrong number of fields skipped "
                        f"({_at(bad, len(bad), skipped[0][1])})")
    return df, lines, len(bad), problems


_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"")


def _clean_artists(artists: pd.Series) -> pd.Series:
    """Python-list syntax ``['A', "B's"]`` (Kaggle 1.2M exports) → ``A, B's``; other values unchanged."""
    listed = (artists.str.startswith(("['", '["')) & artists.str.endswith(("']", '"]'))).to_numpy(
        dtype=bool, na_value=False)
    if not listed.any():
        return artists
    out = artists.copy()
    quoted = listed & artists.str.contains('"', regex=False).to_numpy(dtype=bool, na_value=False)
    simple = listed & ~quoted  # ['A', 'B']
    out[simple] = artists[simple].str.slice(2, -2).str.replace("', '", ", ", regex=False)
    # names with an apostrophe are double-quoted: ["Guns N' Roses", 'Slash']
    out[quoted] = artists[quoted].map(lambda s: ", ".join(a or b for a, b in _QUOTED.findall(s)))
    return out


_DECIMAL_COMMA = re.compile(r"^[+-]?\d*,\d+(?:[eE][+-]?\d+)?$")
_DECIMAL_POINT = re.compile(r"^[+-]?\d*\.\d+(?:[eE][+-]?\d+)?$")


def _parse_column(cells: pd.Series, feature: str, decimal_comma: bool) -> tuple[np.ndarray, np.ndarray]:
    """A feature column's values (NaN where not a number) and which cells are empty (``""``, ``NA``...);
    ``decimal_comma``: numbers are written ``0,52`` / ``1,5e-3`` (the file's separator, see
    :func:`_decimal_comma`)."""
    text = cells.fillna("").astype(str).str.strip()
    if decimal_comma:
        text = text.str.replace(",", ".", regex=False)
    try:  # fast path: every cell a plain number
        values = text.astype(np.float64).to_numpy()
        return values, np.isnan(values)
    except (ValueError, TypeError):
        pass
    lower = text.str.lower()
    empty = lower.isin(_NA_TOKENS).to_numpy(dtype=bool)
    if feature == "mode":
        text = text.mask(lower == "major", "1").mask(lower == "minor", "0")
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return values, empty


def _decimal_comma(df: pd.DataFrame, columns: list[str], lines: np.ndarray, path: Path) -> bool:
    """Whether the file writes its numbers with decimal commas (European ;-separated exports); a file that
    writes some with commas and others with points is refused (:class:`CatalogError`), not half read."""
    def matches(pattern: re.Pattern[str]) -> tuple[int, str, int] | None:
        for col in columns:
            hit = df[col].astype(str).str.strip().str.match(pattern).to_numpy(dtype=bool)
            if hit.any():
                first = int(np.flatnonzero(hit)[0])
                return int(hit.sum()), f"column {col!r} line {lines[first]}: {df[col].iloc[first]!r}", first
        return None

    plain = [col for col in columns if pd.to_numeric(df[col], errors="coerce").notna().all()]
    comma = matches(_DECIMAL_COMMA) if len(plain) < len(columns) else None
    if comma is None:
        return False
    point = matches(_DECIMAL_POINT)
    if point is not None:
        raise CatalogError(f"{path}: mixes decimal commas ({comma[1]}) and decimal points ({point[1]}) in its "
                           "feature columns: re-save it with one decimal separator")
    return True


def _parse_features(df: pd.DataFrame, mapping: dict[str, str], lines: np.ndarray,
                    path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Raw features (N, 11) (NaN where a cell is not a number) and which cells are empty."""
    n = len(df)
    raw = np.full((n, len(FEATURES)), np.nan)
    empty = np.zeros((n, len(FEATURES)), dtype=bool)
    decimal_comma = _decimal_comma(df, [mapping[f] for f in FEATURES], lines, path)
    if decimal_comma:
        log.info("%s: numbers written with decimal commas (0,52): read as such in every feature column", path)
    for j, feature in enumerate(FEATURES):
        raw[:, j], empty[:, j] = _parse_column(df[mapping[feature]], feature, decimal_comma)
    return raw, empty


def parse_text_column(cells: pd.Series, feature: str) -> tuple[np.ndarray, np.ndarray]:
    """A feature column written as text (decimal points), parsed as a CSV file's: its values (NaN where not a
    number) and which cells are empty (``""``, ``NA``, ``null``...)."""
    return _parse_column(cells, feature, decimal_comma=False)


def check_features(raw: np.ndarray, empty: np.ndarray, numbers: np.ndarray, mapping: dict[str, str],
                   example: Callable[[int, int], str], faults: Faults) -> np.ndarray:
    """The rows to drop among parsed features ``raw`` (N, 11) (NaN: not a number) and ``empty`` (N, 11)
    (the cell was empty), each fault counted in ``faults``: rows whose features are all empty, then per
    column empty, non-numeric and impossible values (:data:`ALLOWED`); ``example(i, j)``: the cell's text,
    as its line shows it."""
    all_empty = cast(np.ndarray, empty.all(axis=1))  # a matrix's rows reduced: an array (the stubs add np.bool)
    faults.add((0,), "", "with every feature empty dropped", all_empty, numbers)
    drop = all_empty.copy()
    for j, feature in enumerate(FEATURES):
        col = f"column '{mapping[feature]}'" + ("" if mapping[feature] == feature else f" ({feature})")
        x = raw[:, j]
        blank = empty[:, j] & ~all_empty
        text_bad = np.isnan(x) & ~empty[:, j]
        outside = ~np.isnan(x) & ~_valid(feature, x)
        for k, (mask, what) in enumerate(((blank, "a missing value (empty, NA, NaN or null)"),
                                          (text_bad, "a non-numeric value"),
                                          (outside, f"a value outside {ALLOWED[feature]}"))):
            shown = None if k == 0 else (lambda i, j=j: repr(example(i, j).strip()))
            faults.add((1, j, k), f"{col}: ", f"with {what} dropped", mask, numbers, shown)
            drop |= mask
    return drop


def metadata(df: pd.DataFrame, mapping: dict[str, str], numbers: np.ndarray, faults: Faults) -> pd.DataFrame:
    """The tracks' metadata as text: track_id (a missing one is ``row<number>``, counted in ``faults``), name,
    artist, genre as found, then the other columns of ``df``; ``numbers``: the rows' numbers."""
    used = set(mapping.values())
    out: dict[str, pd.Series] = {}
    if "track_id" in mapping:
        ids = df[mapping["track_id"]].fillna("").astype(str).str.strip()
        missing = (ids == "").to_numpy(dtype=bool)
        faults.add((2,), f"column '{mapping['track_id']}': ",
                   f"without a track id given the id row<{faults.numbering.word}>", missing, numbers)
        if missing.any():
            ids[missing] = np.array([f"row{v}" for v in numbers[missing]])
    else:
        ids = pd.Series([f"row{v}" for v in numbers], index=df.index, dtype=str)
    out["track_id"] = ids
    for ours in METADATA[1:]:
        if ours in mapping:
            out[ours] = df[mapping[ours]].fillna("").astype(str).str.strip()
    if "artist" in out:
        out["artist"] = _clean_artists(out["artist"])
    for col in df.columns:
        if col not in used and col not in out:
            out[col] = df[col].fillna("")
    return pd.DataFrame(out).reset_index(drop=True)


def _repeated(ids: pd.Series) -> np.ndarray:
    """Which rows repeat an id of an earlier row (the first row of each id is not): Arrow's dictionary encoding
    numbers the ids in the order they first occur (checked; pandas' ``duplicated`` when not), about twice as fast
    as pandas' ``duplicated``, which makes a Python string of each id (10M ids: 3 s and 0.9 GiB against 6 s and
    1.2 GiB)."""
    if len(ids) == 0:
        return np.zeros(0, dtype=bool)
    arrow = pa.array(ids.array)
    encoded = pc.dictionary_encode(arrow if isinstance(arrow, pa.ChunkedArray) else pa.chunked_array([arrow]))
    index = np.concatenate([chunk.indices.to_numpy(zero_copy_only=False) for chunk in encoded.chunks])
    seen = np.maximum.accumulate(index)
    repeated = np.zeros(len(index), dtype=bool)
    repeated[1:] = index[1:] <= seen[:-1]
    first = index[~repeated]  # the id of each row not repeated: 0, 1, 2... each once when the order is as said
    if len(first) == len(encoded.chunks[0].dictionary) and (first == np.arange(len(first))).all():
        return repeated
    return ids.duplicated(keep="first").to_numpy(dtype=bool)


def finish(path: Path, cfg: DataConfig, min_tracks: int, schema: str, mapping: dict[str, str],
           tracks: pd.DataFrame, raw: np.ndarray, numbers: np.ndarray, problems: list[str], n_read: int,
           numbering: Numbering) -> Catalog:
    """The catalog of the rows kept so far (``tracks``, ``raw``, their row ``numbers``; ``n_read`` rows read):
    a repeated track id dropped (the first row kept), key -1 given :data:`NO_KEY`, constant columns named;
    every problem logged; ``data.strict`` makes one fatal, fewer than ``min_tracks`` rows left too."""
    if "track_id" not in mapping:
        log.info("%s: no track id column; ids are row<%s> (row%d is the first track)", path, numbering.word,
                 numbering.first)
    last = Faults(path, numbering)
    dup = _repeated(tracks["track_id"])
    if dup.any():
        last.add((0,), f"column '{mapping.get('track_id', 'track_id')}': ", "with an already seen track id "
                 "dropped, the first row of each id kept", dup, numbers, lambda i: repr(tracks["track_id"].iloc[i]))
        tracks, raw, numbers = tracks[~dup].reset_index(drop=True), raw[~dup], numbers[~dup]

    key = FEATURES.index("key")
    no_key = raw[:, key] == -1.0
    last.add((1,), f"column '{mapping['key']}': ", f"with key -1 (no key detected) given key {NO_KEY}", no_key,
             numbers)
    raw[no_key, key] = NO_KEY
    problems = problems + last.lines()

    if len(raw) > 1:
        for j in np.flatnonzero(np.ptp(raw, axis=0) == 0):
            problems.append(f"{path}: column '{mapping[FEATURES[j]]}' is constant ({raw[0, j]:g}) in all "
                            f"{len(raw)} kept rows: it carries no information")
    for line in problems:
        log.warning("%s", line)
    log.info("%s: kept %d of %d rows (%d dropped)", path, len(raw), n_read, n_read - len(raw))
    if cfg.strict and problems:
        raise CatalogError(f"{problems[0]} [data.strict=true: any problem is fatal]")
    if len(raw) < min_tracks:
        raise CatalogError(f"{path}: {len(raw)} usable tracks (kept {len(raw)} of {n_read} rows); at least "
                           f"{min_tracks} needed (env.k + 1)")
    return Catalog(tracks=tracks, raw=raw, schema=schema, problems=problems)


def load_csv(cfg: DataConfig, min_tracks: int) -> Catalog:
    """Read, repair and validate a CSV catalog (see :func:`music_rl.data.catalog.load_catalog`)."""
    if not cfg.path:
        raise ConfigError("data.path=None: a CSV path is required when data.source=csv")
    path = Path(cfg.path)
    if not path.is_file():
        raise CatalogError(f"{path}: {not_a(path, 'regular file')} (data.path={cfg.path!r})")
    compression = _compression(path)
    head = _head_text(path, compression)
    excel = excel_sep(head)
    if excel is not None:
        head = head.partition("\n")[2]
    delimiter = choose_delimiter(cfg.delimiter, excel, head)
    df, lines, n_skipped, problems = _read_table(path, delimiter[0], head, compression, skip=int(excel is not None))
    if excel is not None:
        problems.insert(0, f"{path}: line 1 'sep={excel}' (Excel's delimiter line) skipped; the header is line 2, "
                           f"split with the delimiter {shown_delimiter(delimiter[0])} ({delimiter[1]})")
    header = header_fields(head, delimiter[0])
    df.columns = header if len(header) == len(df.columns) else list(df.columns)  # pandas renames repeats
    columns = _unique(list(df.columns))
    schema, mapping, missing = resolve_columns(columns, dict(cfg.columns))
    if missing:
        raise CatalogError(missing_columns_line(path, columns, missing, schema, head, delimiter, dict(cfg.columns)))
    problems += repeated_columns(path, header, mapping)
    df = df.loc[:, ~df.columns.duplicated()]
    n_read = len(df) + n_skipped
    log.info("%s: schema %s, delimiter %r (%s), %d rows; columns used: %s", path, schema, *delimiter, n_read,
             ", ".join(f"{ours}={theirs}" if ours != theirs else ours for ours, theirs in mapping.items()))
    raw, empty = _parse_features(df, mapping, lines, path)
    faults = Faults(path, LINES)
    cells = [df[mapping[f]] for f in FEATURES]
    drop = check_features(raw, empty, lines, mapping, lambda i, j: str(cells[j].iloc[i]), faults)
    keep = ~drop
    tracks = metadata(df[keep], mapping, lines[keep], faults)
    return finish(path, cfg, min_tracks, schema, mapping, tracks, raw[keep], lines[keep], problems + faults.lines(),
                  n_read, LINES)
