"""Track catalogs: the embedded synthetic default and real Spotify CSV exports, validated and normalised.

(Stub: the data config; the implementation follows docs/ARCHITECTURE.md.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

FEATURES: tuple[str, ...] = (
    "danceability", "energy", "key", "loudness", "mode", "speechiness",
    "acousticness", "instrumentalness", "liveness", "valence", "tempo",
)


@dataclass
class DataConfig:
    """Where the catalog comes from and how it is read (config group ``data``)."""

    source: str = "synthetic"
    path: str | None = None
    n_tracks: int = 20000
    columns: dict[str, str] = field(default_factory=dict)
    strict: bool = False
    normalisation: str = "physical"
    delimiter: str | None = None
