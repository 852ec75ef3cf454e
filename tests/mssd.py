"""A Spotify Music Streaming Sessions Dataset look-alike for tests: a ``tf_mini.csv``-schema track file and a
``log_mini.csv``-schema session log over its tracks, generated (the real files are not redistributable)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "catalogs" / "tf_mini.csv"
FLAGS = ("skip_1", "skip_2", "skip_3", "not_skipped")


def mssd_files(folder: Path, n_tracks: int = 400, n_sessions: int = 60, unknown: int = 0,
               seed: int = 0, no_flag: int = 0) -> tuple[Path, Path]:
    """``tracks.csv`` (tf_mini schema: the fixture's rows, features jittered, new ids) and ``log.csv`` (log_mini
    schema: sessions of 5-20 tracks, nested skip flags) in ``folder``; ``unknown`` log rows (the first ones) name
    tracks that are not in the track file; ``no_flag`` rows after them, spread evenly, have every skip flag false
    (as a few percent of a real log's rows do)."""
    rng = np.random.default_rng(seed)
    base = pd.read_csv(FIXTURE)
    tracks = base.iloc[rng.integers(len(base), size=n_tracks)].reset_index(drop=True)
    for col in ("acousticness", "danceability", "energy", "instrumentalness", "liveness", "speechiness",
                "valence"):
        tracks[col] = np.clip(tracks[col] + rng.normal(0, 0.08, n_tracks), 0, 1)
    tracks["tempo"] = np.clip(tracks["tempo"] + rng.normal(0, 8, n_tracks), 40, 220)
    tracks["loudness"] = np.clip(tracks["loudness"] + rng.normal(0, 2, n_tracks), -59, 0)
    tracks["track_id"] = [f"t_{seed:02d}{i:06d}" for i in range(n_tracks)]
    rows = []
    for s in range(n_sessions):
        length = int(rng.integers(5, 21))
        for position, track in enumerate(rng.choice(n_tracks, size=length, replace=False), start=1):
            level = int(rng.integers(4))  # 0: skip_1 (and so 2 and 3) ... 3: not skipped
            flags = [level <= 0, level <= 1, level <= 2, level == 3]
            rows.append({"session_id": f"{s}_{seed:04d}-session", "session_position": position,
                         "session_length": length, "track_id_clean": tracks["track_id"][track],
                         **{f: str(v).lower() for f, v in zip(FLAGS, flags, strict=True)},
                         "context_switch": 0, "hour_of_day": 12, "premium": "true"})
    log = pd.DataFrame(rows)
    for i in range(unknown):
        log.loc[i, "track_id_clean"] = f"t_unknown{i:04d}"
    if no_flag:
        log.loc[no_flag_rows(len(log), unknown, no_flag), list(FLAGS)] = "false"
    tracks.to_csv(folder / "tracks.csv", index=False)
    log.to_csv(folder / "log.csv", index=False)
    return folder / "tracks.csv", folder / "log.csv"


def no_flag_rows(n_rows: int, unknown: int, no_flag: int) -> np.ndarray:
    """The 0-based log rows :func:`mssd_files` writes with no skip flag: ``no_flag`` of them, evenly spread
    after the ``unknown`` first rows."""
    return np.linspace(unknown, n_rows - 1, no_flag).round().astype(int)
