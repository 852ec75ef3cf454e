"""Track catalogs: the embedded synthetic default and real Spotify CSV exports, validated and normalised.

A :class:`Catalog` holds the metadata (``tracks``) and the raw audio features (``raw``, in the units of
Spotify's API: dB, BPM, key 0..11, mode 0/1, the rest in [0, 1]); row i of both is track i.
:class:`Normaliser` maps the raw features to [0, 1].
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from music_rl.core.errors import CatalogError, ConfigError, require

log = logging.getLogger(__name__)

FEATURES: tuple[str, ...] = (
    "danceability", "energy", "key", "loudness", "mode", "speechiness",
    "acousticness", "instrumentalness", "liveness", "valence", "tempo",
)


class DataSource(StrEnum):
    """Where the catalog comes from."""

    synthetic = "synthetic"
    csv = "csv"
    parquet = "parquet"


class Normalisation(StrEnum):
    """How raw features map to [0, 1] (:class:`Normaliser`)."""

    physical = "physical"
    minmax = "minmax"


@dataclass
class DataConfig:
    """Where the catalog comes from and how it is read (config group ``data``)."""

    source: DataSource = DataSource.synthetic
    """synthetic: the embedded catalog (12 genre-like groups) | csv: a Spotify-features CSV at data.path |
    parquet: the same columns in a Parquet file at data.path"""
    path: str | None = None
    """the CSV or Parquet file (data.source=csv or parquet): TidyTuesday 30000 songs, Kaggle exports, MSSD
    tf_mini.csv, or any file mapped with data.columns"""
    n_tracks: int = 20000
    """size of the synthetic catalog (unused by CSV and Parquet catalogs)"""
    columns: dict[str, str] = field(default_factory=dict)
    """our name -> file column: track_id, name, artist, genre or a feature, one entry each given with a +:
    +data.columns.tempo=BPM (schema custom)"""
    strict: bool = False
    """true: any catalog problem (dropped row, repaired value, constant column) is fatal"""
    normalisation: Normalisation = Normalisation.physical
    """physical: fixed ranges (dB, BPM, key/11) | minmax: fitted on the catalog"""
    delimiter: str | None = None
    """the CSV delimiter; null: sniffed from the header ("," ";" tab "|")"""
    seed: int = 0
    """seed of the synthetic catalog, apart from the run seed so the data stays put across runs"""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad ``data.*`` key (the keys of a file only with one:
        data.path and data.columns with data=csv or data=parquet, data.delimiter with data=csv)."""
        csv, file = self.source == DataSource.csv, self.source != DataSource.synthetic
        kind = "a CSV" if csv else "a Parquet"
        no_file = "(the synthetic catalog has no file): add data=csv data.path=<file>"
        only_csv = (f"applies to data=csv only {no_file}" if not file
                    else "applies to data=csv only (a Parquet file has no delimiter): leave it null")
        require([
            ("data.path", self.path, bool(self.path) if file else not self.path,
             f"{kind} path is required when data.source={self.source}" if file
             else "is set but data.source=synthetic: add data=csv (or data=parquet) to read it"),
            ("data.columns", dict(self.columns), file or not self.columns,
             f"applies to data=csv and data=parquet only {no_file}"),
            ("data.delimiter", self.delimiter, csv or self.delimiter is None, only_csv),
            ("data.delimiter", self.delimiter, self.delimiter is None or len(self.delimiter) == 1,
             "must be null (sniffed) or one character, e.g. ';' or a tab"),
            ("data.n_tracks", self.n_tracks, self.n_tracks >= 10, "must be an integer >= 10"),
        ])


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
    y: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return y


SYNTHETIC_CHUNK = 1_000_000  # rows drawn from one random stream: chunk 0 is the catalog of every N <= this


def synthetic_catalog(n_tracks: int = 20000, seed: int = 0) -> Catalog:
    """A seeded synthetic catalog with Spotify-like raw features and genre structure.

    Tracks come from a mixture of 12 genres (``tracks.genre``), each with its own typical features and
    spreads; within a genre a shared "intensity" factor moves energy and loudness up and acousticness
    down, and a "mood" factor moves valence and danceability together, so energy-loudness correlate
    strongly and acousticness-energy negatively, as in Spotify's data. Loudness (dB) follows energy;
    tempo (BPM) is genre-specific; key follows Spotify's key frequencies; mode is genre-specific.
    Vectorised: a million tracks take about a second. The whole catalog in memory: :func:`synthetic_chunks`
    gives it in parts.

    Args:
        n_tracks: number of tracks N (>= 1).
        seed: seed of the ``np.random.Generator`` that draws everything.

    Returns:
        A :class:`Catalog` with schema ``"synthetic"``; ``tracks`` has track_id (``"syn00000042"``),
        name, artist (``"Artist 17"``, each artist belongs to one genre) and genre.
    """
    parts = list(synthetic_chunks(n_tracks, seed))
    if len(parts) == 1:
        return parts[0]
    return Catalog(tracks=pd.concat([p.tracks for p in parts], ignore_index=True),
                   raw=np.concatenate([p.raw for p in parts]), schema="synthetic", problems=[])


def synthetic_chunks(n_tracks: int, seed: int) -> Iterator[Catalog]:
    """The synthetic catalog of :func:`synthetic_catalog` in parts of :data:`SYNTHETIC_CHUNK` rows, in order.

    Part 0 is drawn from ``np.random.default_rng(seed)``, part i > 0 from its own stream ``[seed, i]``: a catalog
    of at most :data:`SYNTHETIC_CHUNK` tracks is one part, and a larger one is the same whatever reads it in
    what chunks. The tracks' name, artist and genre are categorical (a few bytes a track).
    """
    if n_tracks < 1:
        raise ConfigError(f"data.n_tracks={n_tracks}: must be an integer >= 1")
    per_genre = max(1, n_tracks // (10 * len(_GENRES)))
    for index, start in enumerate(range(0, n_tracks, SYNTHETIC_CHUNK)):
        rng = np.random.default_rng(seed if index == 0 else [seed, index])
        yield _synthetic_part(rng, start, min(SYNTHETIC_CHUNK, n_tracks - start), per_genre)


def _synthetic_part(rng: np.random.Generator, start: int, n_tracks: int, per_genre: int) -> Catalog:
    """Tracks ``start .. start + n_tracks`` of a synthetic catalog, drawn from ``rng``."""
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

    artist = genre * per_genre + rng.integers(per_genre, size=n_tracks)
    words = rng.integers(len(_ADJECTIVES), size=(2, n_tracks))
    titles = np.array([f"{a} {b}" for a in _ADJECTIVES for b in _NOUNS])
    artists = np.arange(len(names) * per_genre)  # every artist of the catalog: the same categories in every part
    tracks = pd.DataFrame({
        "track_id": pd.Series(np.arange(start, start + n_tracks)).map("syn{:08d}".format),
        "name": pd.Categorical.from_codes(words[0] * len(_NOUNS) + words[1], pd.Index(titles)),
        "artist": pd.Categorical.from_codes(artist, pd.Index(np.char.add("Artist ", artists.astype(str)))),
        "genre": pd.Categorical.from_codes(genre, pd.Index(names)),
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
        normalised: np.ndarray = np.clip(scaled, 0.0, 1.0).astype(np.float32)
        return normalised

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
    """The catalog described by ``cfg``: synthetic (seeded), a CSV file or a Parquet file
    (:func:`music_rl.data.catalog_parquet.load_parquet`: the same rules, read in batches), validated and repaired.

    CSV files: the delimiter is ``cfg.delimiter``, else the one Excel's first line ``sep=<character>`` names
    (the line skipped, one problem line), else sniffed from the header (, ; tab |); a header that lacks required
    columns names the delimiter used and one that would give them. CRLF, a UTF-8 BOM and quoted fields work.
    The schema comes from the header (``tidytuesday``, ``mssd``, ``kaggle``; ``custom`` when ``cfg.columns``
    maps our names to file columns) and is logged. Metadata is kept as text (``NA`` stays ``"NA"``). Faults,
    each one line in ``problems`` and a log warning:

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
        from music_rl.data.catalog_csv import load_csv  # here: it imports this module's Catalog and DataConfig

        return load_csv(cfg, min_tracks)
    if cfg.source == "parquet":
        from music_rl.data.catalog_parquet import load_parquet  # read in batches: same columns, same repairs

        return load_parquet(cfg, min_tracks)
    raise ConfigError(f"data.source={cfg.source!r}: must be one of synthetic, csv, parquet")
