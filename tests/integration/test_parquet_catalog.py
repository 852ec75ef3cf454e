"""``music-rl train data=parquet``: a Parquet catalog trains end to end, its repairs recorded in run_info.json."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import train

from music_rl.data.catalog import FEATURES, synthetic_catalog

pytestmark = pytest.mark.slow  # trains (the tiny budget, a smaller evaluation: seconds)

SMALL = ("env.session_length=8", "eval.ope_log_steps=600", "eval.planner.n_episodes=4")


def test_a_parquet_catalog_trains_end_to_end(tmp_path):
    cat = synthetic_catalog(800, seed=0)
    df = pd.DataFrame({"track_id": cat.tracks["track_id"], "track_name": cat.tracks["name"],
                       "track_artist": cat.tracks["artist"], "playlist_genre": cat.tracks["genre"],
                       **{f: cat.raw[:, j] for j, f in enumerate(FEATURES)}}).astype({"key": np.int64})
    df.loc[5, "tempo"] = 0.0  # dropped and counted, as a CSV's
    path = tmp_path / "tracks.parquet"
    df.to_parquet(path, index=False)
    proc = train(tmp_path / "run", "data=parquet", f"data.path={path}", *SMALL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((tmp_path / "run" / "run_info.json").read_text(encoding="utf-8"))["catalog"]
    assert info == {"schema": "tidytuesday", "n_tracks": 799, "problems": [
        f"{path}: column 'tempo': 1 row with a value outside 0 < tempo <= 300 BPM dropped (row 6: '0.0')"]}
    tracks = pd.read_csv(tmp_path / "run" / "world" / "tracks.csv")
    assert len(tracks) == 799 and "syn00000005" not in set(tracks["track_id"])
    assert (tmp_path / "run" / "metrics.json").is_file()
