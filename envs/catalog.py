"""Track catalogs: the embedded synthetic default and real Spotify CSV exports, validated and normalised.

A :class:`Catalog` holds the metadata (``tracks``) and the raw audio features (``raw``, in the units of
Spotify's API: dB, BPM, key 0..11, mode 0/1, the rest in [0, 1]); row i of both is track i.
:class:`Normaliser` maps the raw features to [0, 1].
"""

from __future__ import annotations

import difflib
import logging
import re
import warnings
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from envs.errors import CatalogError, ConfigError

log = logging.getLogger(__name__)

FEATURES: tuple[str, ...] = (
    "danceability", "energy", "key", "loudness", "mode", "speechiness",
    "acousticness", "instrumentalness", "liveness", "valence", "tempo",
)


class DataSource(StrEnum):
    """Where the catalog comes from."""

    synthetic = "synthetic"
    csv = "csv"


class Normalisation(StrEnum):
    """How raw features map to [0, 1] (:class:`Normaliser`)."""

    physical = "physical"
    minmax = "minmax"


@dataclass
class DataConfig:
    """Where the catalog comes from and how it is read (config group ``data``)."""

    source: DataSource = DataSource.synthetic
    """synthetic: the embedded catalog (12 genre-like groups) | csv: a Spotify-features CSV at data.path"""
    path: str | None = None
    """the CSV file (data.source=csv): TidyTuesday 30000 songs, Kaggle exports, MSSD tf_mini.csv, or any file
    mapped with data.columns"""
    n_tracks: int = 20000
    """size of the synthetic catalog (unused by CSV catalogs)"""
    columns: dict[str, str] = field(default_factory=dict)
    """our name -> file column: track_id, name, artist, genre or a feature, e.g. {tempo: BPM} (schema custom)"""
    strict: bool = False
    """true: any catalog problem (dropped row, repaired value, constant column) is fatal"""
    normalisation: Normalisation = Normalisation.physical
    """physical: fixed ranges (dB, BPM, key/11) | minmax: fitted on the catalog"""
    delimiter: str | None = None
    """the CSV delimiter; null: sniffed from the header ("," ";" tab "|")"""
    seed: int = 0
    """seed of the synthetic catalog, apart from the run seed so the data stays put across runs"""


@dataclass
class Catalog:
    """Tracks and their raw features; row i of ``tracks`` and ``raw`` is track i.

    Attributes:
        tracks: metadata as text: ``track_id`` (unique) first, then ``name``, ``artist``, ``genre`` when
            the source has them, then the source's other columns.
        raw: (N, 11) float64 features in :data:`FEATURES` order, in Spotify's units.
        schema: ``synthetic``, ``tidytuesday``, ``kaggle``, ``mssd`` or ``custom``.
        problems: one line per repaired or dropped fault (for the log and run_info).
    """

    tracks: pd.DataFrame
    raw: np.ndarray
    schema: str
    problems: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------- synthetic

# Per genre: mixture weight, then the typical value of danceability, energy, speechiness, acousticness,
# instrumentalness, liveness, valence (all in [0, 1]), tempo mean and spread (BPM), P(major).
_GENRES: dict[str, tuple[float, ...]] = {
    #            w     dance energy speech acoust instr  live   val    bpm  sd   major
    "pop":       (.16, .66, .68, .07, .18, .02, .15, .56, 118, 22, .62),
    "rock":      (.12, .50, .76, .05, .10, .08, .19, .50, 125, 24, .66),
    "rap":       (.11, .76, .64, .28, .14, .01, .19, .50, 100, 24, .48),
    "edm":       (.10, .68, .83, .07, .04, .50, .18, .42, 126, 7, .50),
    "latin":     (.09, .73, .72, .08, .20, .02, .17, .72, 112, 22, .55),
    "r&b":       (.08, .67, .54, .10, .25, .02, .14, .50, 104, 22, .50),
    "metal":     (.06, .40, .93, .09, .01, .15, .22, .28, 136, 28, .52),
    "folk":      (.06, .52, .34, .04, .80, .05, .13, .45, 114, 24, .74),
    "jazz":      (.06, .56, .33, .05, .76, .45, .15, .50, 112, 28, .56),
    "classical": (.05, .28, .13, .04, .93, .86, .12, .22, 104, 28, .64),
    "ambient":   (.05, .25, .16, .04, .84, .88, .11, .15, 98, 22, .50),
    "lo-fi":     (.06, .66, .36, .10, .70, .80, .12, .40, 84, 8, .48),
}
# Spotify's key frequencies (C, C#, D, ... B): C, G, C#, D most common.
_KEY_P = np.array([.125, .10, .09, .03, .075, .085, .07, .11, .065, .09, .07, .09])
_ADJECTIVES = np.array(["Blue", "Golden", "Silent", "Electric", "Broken", "Wild", "Midnight", "Velvet",
                        "Neon", "Lonely", "Burning", "Frozen", "Hidden", "Endless", "Crimson", "Paper"])
_NOUNS = np.array(["River", "Heart", "City", "Dream", "Fire", "Road", "Sky", "Echo", "Garden", "Storm",
                   "Mirror", "Ocean", "Shadow", "Light", "Train", "Summer"])


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1.0 - p))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def synthetic_catalog(n_tracks: int = 20000, seed: int = 0) -> Catalog:
    """A seeded synthetic catalog with Spotify-like raw features and genre structure.

    Tracks come from a mixture of 12 genres (``tracks.genre``), each with its own typical features and
    spreads; within a genre a shared "intensity" factor moves energy and loudness up and acousticness
    down, and a "mood" factor moves valence and danceability together, so energy-loudness correlate
    strongly and acousticness-energy negatively, as in Spotify's data. Loudness (dB) follows energy;
    tempo (BPM) is genre-specific; key follows Spotify's key frequencies; mode is genre-specific.
    Vectorised: a million tracks take about a second.

    Args:
        n_tracks: number of tracks N (>= 1).
        seed: seed of the ``np.random.Generator`` that draws everything.

    Returns:
        A :class:`Catalog` with schema ``"synthetic"``; ``tracks`` has track_id (``"syn00000042"``),
        name, artist (``"Artist 17"``, each artist belongs to one genre) and genre.
    """
    if n_tracks < 1:
        raise ConfigError(f"data.n_tracks={n_tracks}: must be an integer >= 1")
    rng = np.random.default_rng(seed)
    names = list(_GENRES)
    table = np.array([_GENRES[g] for g in names])
    weights = table[:, 0] / table[:, 0].sum()
    genre = rng.choice(len(names), size=n_tracks, p=weights)
    p = table[genre]
    intensity = rng.standard_normal(n_tracks)
    mood = rng.standard_normal(n_tracks)
    noise = rng.standard_normal((n_tracks, 7))

    def unit(col: int, spread: float, shared: np.ndarray | float = 0.0) -> np.ndarray:
        """A [0, 1] feature: the genre's typical value in logit space plus shared and own noise."""
        return _sigmoid(_logit(p[:, col]) + shared + spread * noise[:, col - 1])

    danceability = unit(1, 0.45, 0.30 * mood)
    energy = unit(2, 0.40, 0.50 * intensity)
    speechiness = unit(3, 0.55)
    acousticness = unit(4, 0.70, -0.60 * intensity)
    instrumentalness = unit(5, 0.90)
    liveness = unit(6, 0.55)
    valence = unit(7, 0.45, 0.55 * mood)
    loudness = np.clip(-24.0 + 21.0 * energy + 2.5 * rng.standard_normal(n_tracks), -60.0, 0.0)
    tempo = np.clip(p[:, 8] + p[:, 9] * rng.standard_normal(n_tracks), 50.0, 220.0)
    key = rng.choice(12, size=n_tracks, p=_KEY_P / _KEY_P.sum()).astype(np.float64)
    mode = (rng.random(n_tracks) < p[:, 10]).astype(np.float64)
    raw = np.column_stack([danceability, energy, key, loudness, mode, speechiness, acousticness,
                           instrumentalness, liveness, valence, tempo])

    per_genre = max(1, n_tracks // (10 * len(names)))
    artist = genre * per_genre + rng.integers(per_genre, size=n_tracks)
    words = rng.integers(len(_ADJECTIVES), size=(2, n_tracks))
    ids = np.arange(n_tracks)
    tracks = pd.DataFrame({
        "track_id": pd.Series(ids).map("syn{:08d}".format),
        "name": pd.Series(_ADJECTIVES[words[0]]) + " " + pd.Series(_NOUNS[words[1]]),
        "artist": "Artist " + pd.Series(artist).astype(str),
        "genre": pd.Series(np.array(names)[genre]),
    })
    return Catalog(tracks=tracks, raw=raw, schema="synthetic", problems=[])


# --------------------------------------------------------------------------------------------- normaliser

# Physical ranges (raw units) that map to [0, 1]; values outside are clipped.
PHYSICAL_RANGES: dict[str, tuple[float, float]] = {
    "loudness": (-60.0, 0.0),   # dB
    "tempo": (0.0, 250.0),      # BPM
    "key": (0.0, 11.0),         # pitch class
    "mode": (0.0, 1.0),         # minor 0, major 1
}
NORMALISATIONS: tuple[str, ...] = tuple(Normalisation)


class Normaliser:
    """Raw features → float32 in [0, 1], scikit-learn style.

    ``physical``: fixed ranges (:data:`PHYSICAL_RANGES`; the [0, 1] features pass through), needs no fit,
    so any catalog and any new track normalise the same way. ``minmax``: the per-column min and max of the
    catalog passed to :meth:`fit` (a constant column maps to 0). Either way the output is clipped to [0, 1].
    """

    def __init__(self, mode: str = "physical") -> None:
        """Args: mode: ``"physical"`` or ``"minmax"``."""
        if mode not in NORMALISATIONS:
            raise ConfigError(f"data.normalisation={mode!r}: must be one of {', '.join(NORMALISATIONS)}")
        self.mode = str(mode)  # a plain string (a config Enum would not load with weights_only=True)
        self.low: np.ndarray | None = None
        self.high: np.ndarray | None = None
        if mode == "physical":
            self.low = np.array([PHYSICAL_RANGES.get(f, (0.0, 1.0))[0] for f in FEATURES])
            self.high = np.array([PHYSICAL_RANGES.get(f, (0.0, 1.0))[1] for f in FEATURES])

    @staticmethod
    def _check(raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        if raw.ndim != 2 or raw.shape[1] != len(FEATURES):
            raise ValueError(f"raw features must have shape (N, {len(FEATURES)}), got {raw.shape}")
        return raw

    def fit(self, raw: np.ndarray) -> Normaliser:
        """Fit the per-column ranges (``minmax``; ``physical`` has fixed ranges and ignores ``raw``)."""
        raw = self._check(raw)
        if self.mode == "minmax":
            if len(raw) == 0:
                raise ValueError("cannot fit a minmax normaliser on 0 tracks")
            self.low, self.high = raw.min(axis=0), raw.max(axis=0)
        return self

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """Normalised features, float32 (N, 11), clipped to [0, 1]."""
        raw = self._check(raw)
        if self.low is None or self.high is None:
            raise RuntimeError("Normaliser('minmax') must be fitted before transform")
        span = self.high - self.low
        scaled = (raw - self.low) / np.where(span > 0, span, 1.0)
        return np.clip(scaled, 0.0, 1.0).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (mode, feature order, ranges) that :meth:`from_dict` restores."""
        return {"mode": self.mode, "features": list(FEATURES),
                "low": None if self.low is None else [float(v) for v in self.low],
                "high": None if self.high is None else [float(v) for v in self.high]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normaliser:
        """The normaliser saved by :meth:`to_dict`."""
        if list(d.get("features", [])) != list(FEATURES):
            raise ValueError(f"normaliser features {d.get('features')!r} differ from {list(FEATURES)}")
        out = cls(d["mode"])
        if d.get("low") is not None and d.get("high") is not None:
            out.low = np.asarray(d["low"], dtype=np.float64)
            out.high = np.asarray(d["high"], dtype=np.float64)
        return out


# --------------------------------------------------------------------------------------------- validation

METADATA: tuple[str, ...] = ("track_id", "name", "artist", "genre")
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
            return (x >= -1.0) & (x <= 11.0) & (x == np.round(x))
        if feature == "mode":
            return (x == 0.0) | (x == 1.0)
        return (x >= 0.0) & (x <= 1.0)


def _at(lines: np.ndarray, example: str) -> str:
    """'line 7: <example>' or 'lines 7, 9, ...; e.g. <example> at line 7'."""
    if len(lines) == 1:
        return f"line {int(lines[0])}: {example}"
    return f"{_where(lines)}; e.g. {example} at line {int(lines[0])}"


def _rows(n: int) -> str:
    """'1 row', '3 rows'."""
    return f"{n} row{'' if n == 1 else 's'}"


def _where(lines: np.ndarray) -> str:
    """'line 7' or 'lines 7, 9, 12, ...' (the first three)."""
    shown = ", ".join(str(int(v)) for v in lines[:3])
    return f"line{'s' if len(lines) > 1 else ''} {shown}{', ...' if len(lines) > 3 else ''}"


# --------------------------------------------------------------------------------------------- schemas

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


def _resolve(path: Path, columns: list[str], overrides: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The schema and the map our name → file column; raises when a feature column is missing."""
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
    if missing:
        raise CatalogError(f"{path}: schema {schema}: missing required {'; '.join(missing)}; "
                           f"the file has {len(columns)} columns: {', '.join(columns[:30])}")
    return schema, mapping


# --------------------------------------------------------------------------------------------- reading

def _sniff_delimiter(path: Path) -> str:
    """The delimiter of the header line among , ; tab | (quoted text ignored); ',' when none occurs."""
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        header = next((line for line in fh if line.strip()), "")
    bare = re.sub(r'"[^"]*"', "", header)
    counts = {d: bare.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def _read_table(path: Path, delimiter: str) -> tuple[pd.DataFrame, np.ndarray, int, list[str]]:
    """Every cell as a string (``NA`` stays ``NA``), the file line of each row, the number of rows skipped
    for a wrong number of fields, and the problem line about them."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if not head.removeprefix(b"\xef\xbb\xbf").strip():
        raise CatalogError(f"{path}: empty file (expected a header line and one row per track)")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            df = pd.read_csv(path, sep=delimiter, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                             index_col=False, on_bad_lines="warn")
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
    good[bad - 2] = False
    lines = np.flatnonzero(good)[: len(df)] + 2
    problems = []
    if skipped:
        problems.append(f"{path}: {_rows(len(skipped))} with the wrong number of fields skipped "
                        f"({_at(bad, skipped[0][1])})")
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


def _parse_column(cells: pd.Series, feature: str) -> tuple[np.ndarray, np.ndarray]:
    """A feature column's values (NaN where not a number) and which cells are empty (``""``, ``NA``...)."""
    try:  # fast path: every cell a plain number
        values = cells.astype(np.float64).to_numpy()
        return values, np.isnan(values)
    except (ValueError, TypeError):
        pass
    text = cells.fillna("").astype(str).str.strip()
    lower = text.str.lower()
    empty = lower.isin(_NA_TOKENS).to_numpy(dtype=bool)
    if feature == "mode":
        text = text.mask(lower == "major", "1").mask(lower == "minor", "0")
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan).copy()
    retry = np.isnan(values) & ~empty
    if retry.any():  # decimal commas ("0,52") from ;-separated European exports
        fixed = text[retry].str.replace(r"^([+-]?\d+),(\d+)$", r"\1.\2", regex=True)
        values[retry] = pd.to_numeric(fixed, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return values, empty


def _parse_features(df: pd.DataFrame, mapping: dict[str, str], lines: np.ndarray,
                    path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Raw features (N, 11), the rows to drop, and one problem line per column and kind of fault."""
    n = len(df)
    raw = np.full((n, len(FEATURES)), np.nan)
    empty = np.zeros((n, len(FEATURES)), dtype=bool)
    for j, feature in enumerate(FEATURES):
        raw[:, j], empty[:, j] = _parse_column(df[mapping[feature]], feature)
    all_empty = empty.all(axis=1)
    problems = []
    if all_empty.any():
        problems.append(f"{path}: {_rows(int(all_empty.sum()))} with every feature empty dropped "
                        f"({_where(lines[all_empty])})")
    drop = all_empty.copy()
    for j, feature in enumerate(FEATURES):
        col = f"column '{mapping[feature]}'" + ("" if mapping[feature] == feature else f" ({feature})")
        x = raw[:, j]
        blank = empty[:, j] & ~all_empty
        text_bad = np.isnan(x) & ~empty[:, j]
        outside = ~np.isnan(x) & ~_valid(feature, x)
        for mask, what in ((blank, "an empty value"), (text_bad, "a non-numeric value"),
                           (outside, f"a value outside {ALLOWED[feature]}")):
            if mask.any():
                first = int(np.flatnonzero(mask)[0])
                value = repr(str(df[mapping[feature]].iloc[first]).strip())
                where = _where(lines[mask]) if what == "an empty value" else _at(lines[mask], value)
                problems.append(f"{path}: {col}: {_rows(int(mask.sum()))} with {what} dropped ({where})")
            drop |= mask
    return raw, drop, problems


def _metadata(df: pd.DataFrame, mapping: dict[str, str], lines: np.ndarray,
              path: Path) -> tuple[pd.DataFrame, list[str]]:
    """track_id (a missing id becomes ``row<line>``), name, artist, genre as found, then the other columns."""
    used = set(mapping.values())
    out: dict[str, pd.Series] = {}
    problems = []
    if "track_id" in mapping:
        ids = df[mapping["track_id"]].fillna("").astype(str).str.strip()
        missing = (ids == "").to_numpy(dtype=bool)
        if missing.any():
            problems.append(f"{path}: column '{mapping['track_id']}': {_rows(int(missing.sum()))} without a "
                            f"track id given the id row<line> ({_where(lines[missing])})")
            ids[missing] = [f"row{v}" for v in lines[missing]]
    else:
        log.info("%s: no track id column; ids are row<line> (row2 is the first track)", path)
        ids = pd.Series([f"row{v}" for v in lines], index=df.index, dtype=str)
    out["track_id"] = ids
    for ours in METADATA[1:]:
        if ours in mapping:
            out[ours] = df[mapping[ours]].fillna("").astype(str).str.strip()
    if "artist" in out:
        out["artist"] = _clean_artists(out["artist"])
    for col in df.columns:
        if col not in used and col not in out:
            out[col] = df[col].fillna("")
    return pd.DataFrame(out).reset_index(drop=True), problems


def _load_csv(cfg: DataConfig, min_tracks: int) -> Catalog:
    """Read, repair and validate a CSV catalog (see :func:`load_catalog`)."""
    if not cfg.path:
        raise ConfigError("data.path=None: a CSV path is required when data.source=csv")
    path = Path(cfg.path)
    if not path.is_file():
        raise CatalogError(f"{path}: no such file (data.path={cfg.path!r})")
    delimiter = cfg.delimiter or _sniff_delimiter(path)
    df, lines, n_skipped, problems = _read_table(path, delimiter)
    schema, mapping = _resolve(path, list(df.columns), dict(cfg.columns))
    n_read = len(df) + n_skipped
    log.info("%s: schema %s, delimiter %r, %d rows; columns used: %s", path, schema, delimiter, n_read,
             ", ".join(f"{ours}={theirs}" if ours != theirs else ours for ours, theirs in mapping.items()))
    raw, drop, feature_problems = _parse_features(df, mapping, lines, path)
    problems += feature_problems
    keep = ~drop
    tracks, id_problems = _metadata(df[keep], mapping, lines[keep], path)
    problems += id_problems
    raw, lines = raw[keep], lines[keep]

    dup = tracks["track_id"].duplicated(keep="first").to_numpy(dtype=bool)
    if dup.any():
        first = tracks["track_id"].iloc[int(np.flatnonzero(dup)[0])]
        id_col = mapping.get("track_id", "track_id")
        problems.append(f"{path}: column '{id_col}': {_rows(int(dup.sum()))} with an already seen track id "
                        f"dropped, the first row of each id kept ({_at(lines[dup], repr(first))})")
        tracks, raw, lines = tracks[~dup].reset_index(drop=True), raw[~dup], lines[~dup]

    key = FEATURES.index("key")
    no_key = raw[:, key] == -1.0
    if no_key.any():
        problems.append(f"{path}: column '{mapping['key']}': {_rows(int(no_key.sum()))} with key -1 (no key "
                        f"detected) given key {NO_KEY} ({_where(lines[no_key])})")
        raw[no_key, key] = NO_KEY

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


def count_distinct(rows: np.ndarray, enough: int) -> int:
    """The number of distinct rows of ``rows``, counted up to at least ``enough`` (a large catalog's first
    rows usually suffice: only a catalog with too little variety is read through)."""
    for size in (4096, len(rows)):
        distinct = len(np.unique(rows[:size], axis=0))
        if distinct >= enough or size >= len(rows):
            return distinct
    return distinct


def check_variety(rows: np.ndarray, n_clusters: int, what: str) -> None:
    """Raise :class:`CatalogError` when the tracks' ``rows`` (features or latents) are too alike to form
    ``n_clusters`` clusters: all the same, or fewer distinct rows than clusters."""
    distinct = count_distinct(rows, max(n_clusters, 2))
    if distinct < 2:
        raise CatalogError(f"{what}: every one of the {len(rows)} tracks is the same: nothing to tell apart or "
                           "learn")
    if distinct < n_clusters:
        raise CatalogError(f"{what}: too little variety: {distinct} distinct tracks among {len(rows)}, fewer "
                           f"than reward.n_clusters={n_clusters} clusters; lower reward.n_clusters or use a richer "
                           "catalog")


def load_catalog(cfg: DataConfig, seed: int, min_tracks: int) -> Catalog:
    """The catalog described by ``cfg``: synthetic (seeded) or a CSV file, validated and repaired.

    CSV files: the delimiter is ``cfg.delimiter`` or sniffed from the header (, ; tab |); CRLF, a UTF-8
    BOM and quoted fields work. The schema comes from the header (``tidytuesday``, ``mssd``, ``kaggle``;
    ``custom`` when ``cfg.columns`` maps our names to file columns) and is logged. Metadata is kept as
    text (``NA`` stays ``"NA"``). Faults, each one line in ``problems`` and a log warning:

    - a missing feature column (with the closest column name) → :class:`CatalogError`;
    - empty, non-numeric or impossible feature values (:data:`ALLOWED`), rows whose features are all empty,
      rows with the wrong number of fields → the row is dropped;
    - an empty track id → ``row<line>`` (also the ids of a file without an id column);
    - a repeated track id → the first valid row is kept;
    - key -1 (no key detected) → key :data:`NO_KEY`;
    - a constant feature column → a warning only.

    ``cfg.strict`` makes any problem fatal; fewer than ``min_tracks`` rows left → :class:`CatalogError`.

    Args:
        cfg: the ``data`` config.
        seed: seed of the synthetic catalog (CSV reading is deterministic).
        min_tracks: fewest tracks the run can use (``env.k + 1``).
    """
    if cfg.source == "synthetic":
        catalog = synthetic_catalog(cfg.n_tracks, seed)
        if len(catalog.raw) < min_tracks:
            raise CatalogError(f"data.n_tracks={cfg.n_tracks}: at least {min_tracks} tracks needed "
                               "(env.k + 1)")
        return catalog
    if cfg.source == "csv":
        return _load_csv(cfg, min_tracks)
    raise ConfigError(f"data.source={cfg.source!r}: must be one of synthetic, csv")
