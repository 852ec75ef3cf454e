"""Track catalogs: the synthetic generator, the Normaliser and CSV loading with validation and repairs."""

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from music_rl.core.errors import CatalogError, ConfigError
from music_rl.data.catalog import FEATURES, DataConfig, Normaliser, load_catalog, synthetic_catalog
from music_rl.data.catalog_csv import NO_KEY

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "catalogs"
HEADER = ["track_id", "track_name", "track_artist", *FEATURES]


# ------------------------------------------------------------------------------------------ synthetic

def test_synthetic_catalog_is_deterministic_per_seed():
    a, b, c = synthetic_catalog(500, seed=3), synthetic_catalog(500, seed=3), synthetic_catalog(500, seed=4)
    np.testing.assert_array_equal(a.raw, b.raw)
    assert a.tracks.equals(b.tracks)
    assert not np.array_equal(a.raw, c.raw)
    assert (a.tracks["genre"] != c.tracks["genre"]).any()


def test_synthetic_values_are_spotify_like():
    cat = synthetic_catalog(5000, seed=0)
    raw = cat.raw
    col = {f: raw[:, j] for j, f in enumerate(FEATURES)}
    assert cat.schema == "synthetic" and cat.problems == []
    assert raw.shape == (5000, 11) and raw.dtype == np.float64
    assert list(cat.tracks.columns) == ["track_id", "name", "artist", "genre"]
    assert cat.tracks["track_id"].is_unique and cat.tracks["track_id"].iloc[42] == "syn00000042"
    assert cat.tracks["artist"].str.fullmatch(r"Artist \d+").all()
    assert -60 <= col["loudness"].min() and col["loudness"].max() <= 0
    assert -15 <= np.median(col["loudness"]) <= -3
    assert 50 <= col["tempo"].min() and col["tempo"].max() <= 220 and 90 <= np.median(col["tempo"]) <= 140
    assert set(np.unique(col["key"])) == set(range(12))
    assert set(np.unique(col["mode"])) == {0.0, 1.0}
    for f in set(FEATURES) - {"key", "loudness", "mode", "tempo"}:
        assert 0 <= col[f].min() and col[f].max() <= 1 and col[f].std() > 0.05, f
    assert 8 <= cat.tracks["genre"].nunique() <= 12


def test_synthetic_features_correlate_like_spotify():
    cat = synthetic_catalog(5000, seed=1)
    col = {f: cat.raw[:, j] for j, f in enumerate(FEATURES)}
    assert np.corrcoef(col["energy"], col["loudness"])[0, 1] > 0.5
    assert np.corrcoef(col["acousticness"], col["energy"])[0, 1] < -0.3
    genre = cat.tracks["genre"].to_numpy()
    instr = {g: col["instrumentalness"][genre == g].mean() for g in np.unique(genre)}
    speech = {g: col["speechiness"][genre == g].mean() for g in np.unique(genre)}
    assert min(instr["classical"], instr["ambient"], instr["lo-fi"]) > 3 * max(instr["pop"], instr["rap"])
    assert max(speech, key=speech.get) == "rap"


def test_synthetic_genres_make_neighbourhoods_and_clusters():
    cat = synthetic_catalog(3000, seed=2)
    X = Normaliser("physical").transform(cat.raw)
    genre = cat.tracks["genre"].to_numpy()
    _, idx = NearestNeighbors(n_neighbors=6).fit(X).kneighbors(X)
    same = (genre[idx[:, 1:]] == genre[:, None]).mean()
    chance = sum(np.mean(genre == g) ** 2 for g in np.unique(genre))
    assert same > 3 * chance
    centroids = {g: X[genre == g].mean(axis=0) for g in np.unique(genre)}
    within = np.mean([np.linalg.norm(X[genre == g] - c, axis=1).mean() for g, c in centroids.items()])
    overall = np.linalg.norm(X - X.mean(axis=0), axis=1).mean()
    assert within < 0.85 * overall


def test_load_catalog_synthetic_uses_the_seed_and_size():
    cfg = DataConfig(source="synthetic", n_tracks=300)
    cat = load_catalog(cfg, seed=5, min_tracks=5)
    np.testing.assert_array_equal(cat.raw, synthetic_catalog(300, seed=5).raw)
    with pytest.raises(CatalogError, match="at least 500 tracks needed"):
        load_catalog(cfg, seed=5, min_tracks=500)


# ------------------------------------------------------------------------------------------ normaliser

def test_physical_normaliser_maps_physical_ranges_to_unit_interval():
    raw = np.zeros((4, 11))
    j = {f: i for i, f in enumerate(FEATURES)}
    raw[:, j["loudness"]] = [-60, -30, 0, 5]
    raw[:, j["tempo"]] = [0, 125, 250, 400]
    raw[:, j["key"]] = [0, 5.5, 11, 11]
    raw[:, j["mode"]] = [0, 1, 1, 0]
    raw[:, j["energy"]] = [0, 0.25, 1, 1.5]
    X = Normaliser("physical").fit(raw).transform(raw)
    assert X.dtype == np.float32 and X.shape == (4, 11)
    np.testing.assert_allclose(X[:, j["loudness"]], [0, 0.5, 1, 1])
    np.testing.assert_allclose(X[:, j["tempo"]], [0, 0.5, 1, 1])
    np.testing.assert_allclose(X[:, j["key"]], [0, 0.5, 1, 1])
    np.testing.assert_allclose(X[:, j["mode"]], [0, 1, 1, 0])
    np.testing.assert_allclose(X[:, j["energy"]], [0, 0.25, 1, 1])
    X = Normaliser().transform(synthetic_catalog(1000, seed=0).raw)
    assert X.min() >= 0 and X.max() <= 1


def test_minmax_normaliser_fits_columns_and_guards_constant_ones():
    raw = synthetic_catalog(200, seed=0).raw
    raw[:, FEATURES.index("mode")] = 1.0
    norm = Normaliser("minmax").fit(raw)
    X = norm.transform(raw)
    varying = [j for j, f in enumerate(FEATURES) if f != "mode"]
    np.testing.assert_allclose(X[:, varying].min(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(X[:, varying].max(axis=0), 1, atol=1e-6)
    assert np.isfinite(X).all() and (X[:, FEATURES.index("mode")] == 0).all()
    with pytest.raises(RuntimeError, match="fitted"):
        Normaliser("minmax").transform(raw)


@pytest.mark.parametrize("mode", ["physical", "minmax"])
def test_normaliser_round_trips_through_json(mode):
    raw = synthetic_catalog(300, seed=1).raw
    norm = Normaliser(mode).fit(raw[:200])
    again = Normaliser.from_dict(json.loads(json.dumps(norm.to_dict())))
    np.testing.assert_array_equal(again.transform(raw[200:]), norm.transform(raw[200:]))
    assert again.mode == mode


def test_normaliser_rejects_an_unknown_mode():
    with pytest.raises(ConfigError, match="data.normalisation='zscore': must be one of physical, minmax"):
        Normaliser("zscore")


# ------------------------------------------------------------------------------------------ schema fixtures

def _file_rows(name: str) -> list[dict[str, str]]:
    with open(FIXTURES / name, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _csv(name: str, **cfg) -> DataConfig:
    return DataConfig(source="csv", path=str(FIXTURES / name), **cfg)


def test_tidytuesday_fixture(caplog):
    rows = _file_rows("tidytuesday.csv")
    with caplog.at_level(logging.INFO, logger="music_rl.data.catalog_csv"):
        cat = load_catalog(_csv("tidytuesday.csv"), seed=0, min_tracks=5)
    assert cat.schema == "tidytuesday"
    assert "schema tidytuesday" in caplog.text and "kept 29 of 30 rows" in caplog.text
    assert len(cat.tracks) == len(cat.raw) == 29 == len(rows) - 1
    assert list(cat.tracks.columns[:4]) == ["track_id", "name", "artist", "genre"]
    assert cat.tracks["track_id"].is_unique
    assert "NA" in set(cat.tracks["artist"])
    assert "Falling Slowly, Again" in set(cat.tracks["name"])
    dup = rows[3]["track_id"]
    assert cat.tracks.loc[cat.tracks["track_id"] == dup, "genre"].item() == rows[3]["playlist_genre"] == "pop"
    assert len(cat.problems) == 1
    assert f"1 row with an already seen track id dropped, the first row of each id kept (line 12: '{dup}')" \
        in cat.problems[0]
    np.testing.assert_allclose(cat.raw[0], [float(rows[0][f]) for f in FEATURES])
    assert cat.tracks["track_popularity"].iloc[0] == rows[0]["track_popularity"]


def test_kaggle_fixture_strips_artist_list_syntax():
    rows = _file_rows("kaggle_tracks_features.csv")
    cat = load_catalog(_csv("kaggle_tracks_features.csv"), seed=0, min_tracks=5)
    assert cat.schema == "kaggle" and cat.problems == []
    assert len(cat.tracks) == 30 and "genre" not in cat.tracks
    assert cat.tracks["track_id"].tolist() == [r["id"] for r in rows]
    artists = set(cat.tracks["artist"])
    assert {"Rage Against The Machine", "Orchestre de Lyon, Marie Duval", "Guns N' Roses"} <= artists
    assert not any(a.startswith("[") for a in artists)
    np.testing.assert_allclose(cat.raw[:, FEATURES.index("tempo")], [float(r["tempo"]) for r in rows])


def test_mssd_fixture_maps_mode_strings():
    rows = _file_rows("tf_mini.csv")
    cat = load_catalog(_csv("tf_mini.csv"), seed=0, min_tracks=5)
    assert cat.schema == "mssd" and cat.problems == []
    assert len(cat.tracks) == 20
    assert cat.tracks["track_id"].tolist() == [r["track_id"] for r in rows]
    np.testing.assert_array_equal(cat.raw[:, FEATURES.index("mode")], [r["mode"] == "major" for r in rows])
    assert {r["mode"] for r in rows} == {"major", "minor"}
    np.testing.assert_allclose(cat.raw[:, FEATURES.index("loudness")], [float(r["loudness"]) for r in rows])


# ------------------------------------------------------------------------------------------ malformed files

def _rows(n: int = 8) -> list[list[str]]:
    """n valid rows in HEADER order (mode alternates, so no column is constant)."""
    raw = synthetic_catalog(n, seed=11).raw
    raw[:, FEATURES.index("mode")] = np.arange(n) % 2
    return [[f"id{i}", f"Song {i}", f"Artist {i}", *(f"{v:.4g}" for v in raw[i])] for i in range(n)]


def _write(tmp_path: Path, rows: list[list[str]], header: list[str] = HEADER, sep: str = ",",
           newline: str = "\n", bom: bool = False) -> Path:
    text = newline.join(sep.join(cells) for cells in [header, *rows]) + newline
    path = tmp_path / "tracks.csv"
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))
    return path


def _load(path: Path, min_tracks: int = 3, **cfg) -> "object":
    return load_catalog(DataConfig(source="csv", path=str(path), **cfg), seed=0, min_tracks=min_tracks)


def _set(rows: list[list[str]], i: int, feature: str, value: str) -> list[list[str]]:
    rows[i][HEADER.index(feature)] = value
    return rows


def test_a_missing_file_names_the_path(tmp_path):
    with pytest.raises(CatalogError, match=r"nowhere\.csv: no such file"):
        _load(tmp_path / "nowhere.csv")


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", b"\xef\xbb\xbf"])
def test_an_empty_file_is_an_error(tmp_path, content):
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    with pytest.raises(CatalogError, match="empty.csv: empty file"):
        _load(path)


def test_a_header_only_file_is_an_error(tmp_path):
    with pytest.raises(CatalogError, match="header only, no track rows"):
        _load(_write(tmp_path, []))


def test_a_missing_column_is_named(tmp_path):
    header = [h for h in HEADER if h != "tempo"]
    rows = [r[:-1] for r in _rows()]
    with pytest.raises(CatalogError) as err:
        _load(_write(tmp_path, rows, header=header))
    assert "missing required column 'tempo'" in str(err.value) and "did you mean" not in str(err.value)
    assert "\n" not in str(err.value)


def test_a_misspelt_column_gets_a_suggestion(tmp_path):
    header = ["danceabilty" if h == "danceability" else h for h in HEADER]
    with pytest.raises(CatalogError) as err:
        _load(_write(tmp_path, _rows(), header=header))
    assert "column 'danceability' (did you mean 'danceabilty'?" in str(err.value)
    assert "data.columns.danceability=danceabilty" in str(err.value)


def test_column_names_match_whatever_their_case_and_spaces(tmp_path):
    header = [f" {h.title()} " for h in HEADER]
    cat = _load(_write(tmp_path, _rows(), header=header))
    np.testing.assert_allclose(cat.raw, _load(_write(tmp_path, _rows())).raw)
    assert cat.tracks.loc[0, "track_id"] == "id0" and cat.tracks.loc[0, "name"] == "Song 0"


def test_text_in_a_numeric_column_drops_the_row(tmp_path):
    rows = _set(_rows(), 2, "tempo", "fast")
    cat = _load(_write(tmp_path, rows))
    assert len(cat.tracks) == 7 and "id2" not in set(cat.tracks["track_id"])
    assert cat.problems == [f"{tmp_path / 'tracks.csv'}: column 'tempo': 1 row with a non-numeric value "
                            "dropped (line 4: 'fast')"]


def test_empty_cells_drop_their_rows(tmp_path):
    rows = _set(_set(_set(_rows(), 1, "energy", ""), 5, "energy", "NA"), 6, "valence", " ")
    cat = _load(_write(tmp_path, rows))
    assert cat.tracks["track_id"].tolist() == ["id0", "id2", "id3", "id4", "id7"]
    missing = "a missing value (empty, NA, NaN or null) dropped"
    assert any(f"column 'energy': 2 rows with {missing} (lines 3, 7)" in p for p in cat.problems)
    assert any(f"column 'valence': 1 row with {missing} (line 8)" in p for p in cat.problems)


def test_duplicate_ids_keep_the_first(tmp_path):
    rows = _rows()
    rows[4][0] = rows[1][0] = "same"
    cat = _load(_write(tmp_path, rows))
    assert len(cat.tracks) == 7 and cat.tracks["track_id"].is_unique
    kept = cat.tracks.index[cat.tracks["track_id"] == "same"].item()
    assert cat.tracks.loc[kept, "name"] == "Song 1"
    assert any("1 row with an already seen track id dropped" in p and "line 6" in p for p in cat.problems)


def test_identical_rows_warn_about_constant_columns_and_strict_makes_it_fatal(tmp_path, caplog):
    rows = [[f"id{i}", "Same", "Same", *_rows(1)[0][3:]] for i in range(6)]
    path = _write(tmp_path, rows)
    with caplog.at_level(logging.WARNING, logger="music_rl.data.catalog_csv"):
        cat = _load(path)
    assert len(cat.tracks) == 6 and len(cat.problems) == 11
    assert all("is constant" in p for p in cat.problems)
    assert "column 'tempo' is constant" in caplog.text
    with pytest.raises(CatalogError, match="column 'danceability' is constant.*data.strict=true"):
        _load(path, strict=True)


def test_too_few_tracks_after_repairs_is_an_error(tmp_path):
    rows = _set(_set(_rows(5), 0, "tempo", "0"), 1, "loudness", "x")
    with pytest.raises(CatalogError, match=r"3 usable tracks \(kept 3 of 5 rows\); at least 5 needed"):
        _load(_write(tmp_path, rows), min_tracks=5)


def test_crlf_bom_and_other_delimiters_read_the_same(tmp_path):
    plain = _load(_write(tmp_path, _rows()))
    for kwargs in ({"newline": "\r\n"}, {"bom": True}, {"sep": ";"}, {"sep": "\t"},
                   {"sep": ";", "newline": "\r\n", "bom": True}):
        cat = _load(_write(tmp_path, _rows(), **kwargs))
        np.testing.assert_array_equal(cat.raw, plain.raw)
        assert cat.tracks.equals(plain.tracks), kwargs
        assert cat.problems == [] and list(cat.tracks.columns) == ["track_id", "name", "artist"]


def test_an_explicit_delimiter_overrides_the_sniffer(tmp_path):
    path = _write(tmp_path, _rows(), sep=";")
    assert len(_load(path, delimiter=";").tracks) == 8
    with pytest.raises(CatalogError, match="missing required column"):
        _load(path, delimiter=",")


def test_decimal_commas_in_a_semicolon_file_are_read(tmp_path):
    rows = [[c.replace(".", ",") for c in r] for r in _rows()]
    cat = _load(_write(tmp_path, rows, sep=";"))
    np.testing.assert_allclose(cat.raw, _load(_write(tmp_path, _rows())).raw)


def test_out_of_range_values_drop_their_rows(tmp_path):
    rows = _set(_set(_set(_rows(), 0, "tempo", "0"), 3, "loudness", "5"), 4, "energy", "1.2")
    rows = _set(_set(rows, 5, "key", "12"), 6, "mode", "2")
    cat = _load(_write(tmp_path, rows))
    assert cat.tracks["track_id"].tolist() == ["id1", "id2", "id7"]
    text = "\n".join(cat.problems)
    assert "column 'tempo': 1 row with a value outside 0 < tempo <= 300 BPM dropped (line 2: '0')" in text
    assert "column 'loudness': 1 row with a value outside -60..3 dB dropped (line 5: '5')" in text
    assert "column 'energy': 1 row with a value outside 0..1" in text
    assert "column 'key'" in text and "column 'mode'" in text


def test_key_minus_one_means_no_key_and_is_repaired(tmp_path):
    cat = _load(_write(tmp_path, _set(_rows(), 2, "key", "-1")))
    assert len(cat.tracks) == 8 and cat.raw[2, FEATURES.index("key")] == NO_KEY
    assert any("key -1 (no key detected)" in p and "line 4" in p for p in cat.problems)


def test_na_like_metadata_stays_a_string(tmp_path):
    rows = _rows()
    rows[0][1:3] = ["NA", "null"]
    rows[1][1:3] = ["None", ""]
    cat = _load(_write(tmp_path, rows))
    assert cat.tracks.loc[0, "name"] == "NA" and cat.tracks.loc[0, "artist"] == "null"
    assert cat.tracks.loc[1, "name"] == "None" and cat.tracks.loc[1, "artist"] == ""
    assert cat.problems == []


def test_a_row_whose_features_are_all_empty_is_dropped(tmp_path):
    rows = _rows()
    rows[3][3:] = [""] * 11
    cat = _load(_write(tmp_path, rows))
    assert len(cat.tracks) == 7 and "id3" not in set(cat.tracks["track_id"])
    assert cat.problems == [f"{tmp_path / 'tracks.csv'}: 1 row with every feature empty dropped (line 5)"]


def test_strict_mode_makes_any_problem_fatal(tmp_path):
    path = _write(tmp_path, _set(_rows(), 2, "tempo", "fast"))
    assert len(_load(path).tracks) == 7
    with pytest.raises(CatalogError, match=r"'tempo': 1 row with a non-numeric value.*data\.strict=true"):
        _load(path, strict=True)


def test_quoted_fields_with_commas_and_quotes(tmp_path):
    rows = _rows()
    rows[0][1:3] = ['"Hello, Goodbye"', '"The ""Fab"" Four, Ltd"']
    cat = _load(_write(tmp_path, rows))
    assert cat.tracks.loc[0, "name"] == "Hello, Goodbye"
    assert cat.tracks.loc[0, "artist"] == 'The "Fab" Four, Ltd'
    assert len(cat.tracks) == 8 and cat.problems == []


def test_rows_with_the_wrong_number_of_fields_are_skipped_and_counted(tmp_path, caplog):
    rows = _rows()
    rows[2] = rows[2] + ["extra"]
    with caplog.at_level(logging.INFO, logger="music_rl.data.catalog_csv"):
        cat = _load(_write(tmp_path, rows))
    assert "kept 7 of 8 rows (1 dropped)" in caplog.text
    assert len(cat.tracks) == 7 and "id2" not in set(cat.tracks["track_id"])
    assert "1 row with the wrong number of fields skipped (line 4: expected 14 fields, saw 15)" \
        in cat.problems[0]
    bad = _set(_rows(), 5, "tempo", "x")
    bad[2] = bad[2] + ["extra"]
    cat = _load(_write(tmp_path, bad))
    assert any("(line 7: 'x')" in p for p in cat.problems)  # line numbers count the skipped line


def test_missing_ids_are_generated_from_the_line(tmp_path):
    rows = _rows()
    rows[1][0] = ""
    cat = _load(_write(tmp_path, rows))
    assert cat.tracks.loc[1, "track_id"] == "row3"
    assert any("1 row without a track id" in p for p in cat.problems)
    no_ids = _load(_write(tmp_path, [r[3:] for r in _rows()], header=list(FEATURES)))
    assert no_ids.tracks["track_id"].tolist() == [f"row{i}" for i in range(2, 10)] and no_ids.problems == []


def test_a_custom_column_mapping(tmp_path):
    header = ["uri", "title", "performer", "style", *(f.upper() for f in FEATURES[:-1]), "BPM"]
    rows = [[*r[:3], "indie", *r[3:]] for r in _rows()]
    columns = {"track_id": "uri", "name": "title", "artist": "performer", "genre": "style", "tempo": "BPM"}
    cat = _load(_write(tmp_path, rows, header=header), columns=columns)
    assert cat.schema == "custom"
    assert list(cat.tracks.columns) == ["track_id", "name", "artist", "genre"]
    assert cat.tracks["genre"].eq("indie").all() and cat.tracks.loc[0, "track_id"] == "id0"
    np.testing.assert_allclose(cat.raw, _load(_write(tmp_path, _rows())).raw)


def test_a_bad_custom_mapping_is_named(tmp_path):
    path = _write(tmp_path, _rows())
    with pytest.raises(ConfigError, match="data.columns.bpm='tempo': unknown name; allowed: track_id"):
        _load(path, columns={"bpm": "tempo"})
    with pytest.raises(CatalogError, match=r"data\.columns\.tempo='tempp' \(did you mean 'tempo'\?"):
        _load(path, columns={"tempo": "tempp"})
