"""Parquet catalogs (data=parquet): the same rows as a CSV give the same catalog (tracks, raw features, schema,
problems), bad values are dropped and counted batch by batch, and a file that cannot be read is one line."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import compose, train_here

from music_rl.core.errors import CatalogError, ConfigError
from music_rl.data import catalog_parquet
from music_rl.data.catalog import FEATURES, Catalog, DataConfig, load_catalog, synthetic_catalog
from music_rl.data.catalog_csv import NO_KEY, load_csv

HEADER = ["track_id", "track_name", "track_artist", *FEATURES]


def _frame(n: int = 8) -> pd.DataFrame:
    """n tracks with TidyTuesday-like columns: the features typed (key and mode whole numbers)."""
    raw = synthetic_catalog(n, seed=0).raw
    df = pd.DataFrame({"track_id": [f"id{i}" for i in range(n)], "track_name": [f"Song {i}" for i in range(n)],
                       "track_artist": [f"Artist {i}" for i in range(n)],
                       **{f: raw[:, j] for j, f in enumerate(FEATURES)}})
    return df.astype({"key": np.int64, "mode": np.int64})


def _write(tmp_path: Path, df: pd.DataFrame, **parquet: object) -> tuple[Path, Path]:
    """The rows as tracks.parquet and as tracks.csv (pandas writes both)."""
    pq_path, csv_path = tmp_path / "tracks.parquet", tmp_path / "tracks.csv"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), pq_path, **parquet)
    df.to_csv(csv_path, index=False)
    return pq_path, csv_path


def _load(path: Path, source: str = "parquet", min_tracks: int = 3, **cfg: object) -> Catalog:
    return load_catalog(DataConfig(source=source, path=str(path), **cfg), seed=0, min_tracks=min_tracks)


def _as_rows(line: str) -> str:
    """A CSV problem line as the Parquet reader writes it: rows numbered from the first track (line 2 is row 1)."""
    line = line.replace("tracks.csv", "tracks.parquet").replace("row<line>", "row<row>")
    return re.sub(r"\bline(s?) ((?:\d+, )*\d+)", lambda m: f"row{m[1]} " + ", ".join(
        str(int(v) - 1) for v in m[2].split(", ")), line)


def _same(tmp_path: Path, df: pd.DataFrame, **cfg: object) -> Catalog:
    """The Parquet and the CSV of ``df`` give the same catalog (an id given to a row without one numbered as the
    problem lines number it: row<row> for row<line>); the Parquet one."""
    pq_path, csv_path = _write(tmp_path, df)
    got, want = _load(pq_path, **cfg), _load(csv_path, "csv", **cfg)
    want.tracks["track_id"] = want.tracks["track_id"].str.replace(r"^row(\d+)$", lambda m: f"row{int(m[1]) - 1}",
                                                                  regex=True)
    pd.testing.assert_frame_equal(got.tracks, want.tracks)
    np.testing.assert_array_equal(got.raw, want.raw)
    assert got.raw.dtype == np.float64 and got.raw.shape == (len(got.tracks), len(FEATURES))
    assert got.schema == want.schema
    assert got.problems == [_as_rows(p) for p in want.problems]
    return got


# ------------------------------------------------------------------------------------------ the same catalog

def test_a_parquet_file_and_the_same_rows_as_csv_give_the_same_catalog(tmp_path):
    df = _frame()
    df.insert(3, "playlist_genre", ["pop", "rock"] * 4)
    df["track_popularity"] = np.arange(8)  # another column: kept as text, as the CSV reader keeps it
    cat = _same(tmp_path, df)
    assert cat.schema == "tidytuesday" and cat.problems == [] and len(cat.tracks) == 8
    assert list(cat.tracks.columns) == ["track_id", "name", "artist", "genre", "track_popularity"]
    assert cat.tracks["track_popularity"].tolist() == [str(i) for i in range(8)]


def test_bad_typed_values_are_dropped_and_counted_as_in_a_csv(tmp_path):
    df = _frame(10)
    df["tempo"] = df["tempo"].astype(object)
    df.loc[1, "energy"] = np.nan  # a null: a missing value
    df.loc[2, "tempo"], df.loc[3, "loudness"], df.loc[4, "valence"] = 0.0, 5.0, 1.5  # outside the allowed ranges
    df = df.astype({"tempo": np.float64, "key": np.float64})
    df.loc[5, "key"] = 12.0
    df.loc[6, "key"] = -1.0  # no key detected: repaired
    df.loc[7, "track_id"] = "id0"  # a repeated id: dropped
    df.loc[8, "track_id"] = ""  # an empty id: row<n>
    cat = _same(tmp_path, df)
    path = tmp_path / "tracks.parquet"
    assert cat.tracks["track_id"].tolist() == ["id0", "id6", "row9", "id9"]
    assert cat.raw[1, FEATURES.index("key")] == NO_KEY
    assert f"{path}: column 'tempo': 1 row with a value outside 0 < tempo <= 300 BPM dropped (row 3: '0.0')" \
        in cat.problems
    assert f"{path}: column 'key': 1 row with a value outside a whole number -1..11 (-1: no key detected) dropped " \
           "(row 6: '12.0')" in cat.problems
    assert f"{path}: column 'energy': 1 row with a missing value (empty, NA, NaN or null) dropped (row 2)" \
        in cat.problems
    assert f"{path}: column 'track_id': 1 row without a track id given the id row<row> (row 9)" in cat.problems
    assert any("1 row with an already seen track id dropped, the first row of each id kept (row 8: 'id0')" in p
               for p in cat.problems)


def test_a_feature_column_stored_as_text_is_parsed_as_a_csv_cell(tmp_path):
    df = _frame(10).astype({f: str for f in FEATURES})
    df.loc[1, "tempo"], df.loc[2, "tempo"], df.loc[3, "energy"] = "fast", "NA", " "
    df.loc[4, "mode"], df.loc[5, "mode"] = "major", "2"
    cat = _same(tmp_path, df)
    assert cat.tracks["track_id"].tolist() == ["id0", "id4", "id6", "id7", "id8", "id9"]
    assert cat.raw[1, FEATURES.index("mode")] == 1.0
    path = tmp_path / "tracks.parquet"
    assert f"{path}: column 'tempo': 1 row with a non-numeric value dropped (row 2: 'fast')" in cat.problems
    df.loc[6, "danceability"] = "0,5"  # a decimal comma in a text column: not a number (no file-wide sniffing)
    cat = _load(_write(tmp_path, df)[0])
    assert f"{path}: column 'danceability': 1 row with a non-numeric value dropped (row 7: '0,5')" in cat.problems


def test_a_row_whose_features_are_all_empty_is_one_problem(tmp_path):
    df = _frame().astype({f: np.float64 for f in FEATURES})
    df.loc[3, list(FEATURES)] = np.nan
    cat = _same(tmp_path, df)
    assert cat.problems == [f"{tmp_path / 'tracks.parquet'}: 1 row with every feature empty dropped (row 4)"]


def test_faults_are_counted_over_batches_and_row_groups(tmp_path, monkeypatch):
    df = _frame(40).astype({"tempo": np.float64})
    bad = [3, 9, 10, 25, 31]
    df.loc[bad, "tempo"] = 400.0
    df.loc[[12, 30], "track_id"] = "id5"
    pq_path, _ = _write(tmp_path, df, row_group_size=7)
    whole = _load(pq_path)
    monkeypatch.setattr(catalog_parquet, "BATCH_ROWS", 4)  # ten batches, across row groups
    cat = _load(pq_path)
    pd.testing.assert_frame_equal(cat.tracks, whole.tracks)
    np.testing.assert_array_equal(cat.raw, whole.raw)
    assert cat.problems == whole.problems
    assert f"{pq_path}: column 'tempo': 5 rows with a value outside 0 < tempo <= 300 BPM dropped (rows 4, 10, 11, " \
           "...; e.g. '400.0' at row 4)" in cat.problems
    assert any("2 rows with an already seen track id dropped" in p and "rows 13, 31;" in p for p in cat.problems)
    assert len(cat.tracks) == 40 - 5 - 2 and cat.tracks["track_id"].is_unique


def test_a_file_without_ids_numbers_its_rows_from_one(tmp_path):
    pq_path, _ = _write(tmp_path, _frame()[list(FEATURES)])
    cat = _load(pq_path)
    assert cat.tracks["track_id"].tolist() == [f"row{i}" for i in range(1, 9)] and cat.problems == []
    assert cat.schema == "kaggle"


def test_a_custom_column_mapping_and_a_list_of_artists(tmp_path):
    df = _frame().rename(columns={"track_id": "uri", "track_name": "title", "tempo": "BPM"})
    df["performers"] = [["A", "B's"], ["C"]] * 4  # a list column: joined as the CSV reader joins ['A', "B's"]
    pq_path, _ = _write(tmp_path, df.drop(columns="track_artist"))
    cat = _load(pq_path, columns={"track_id": "uri", "name": "title", "artist": "performers", "tempo": "BPM"})
    assert cat.schema == "custom" and list(cat.tracks.columns) == ["track_id", "name", "artist"]
    assert cat.tracks["artist"].tolist()[:2] == ["A, B's", "C"]
    np.testing.assert_array_equal(cat.raw, _load(_write(tmp_path, _frame())[0]).raw)


def test_strict_makes_any_problem_fatal(tmp_path):
    df = _frame().astype({"tempo": np.float64})
    df.loc[2, "tempo"] = 0.0
    pq_path, _ = _write(tmp_path, df)
    assert len(_load(pq_path).tracks) == 7
    with pytest.raises(CatalogError, match=r"'tempo': 1 row with a value outside .*data\.strict=true"):
        _load(pq_path, strict=True)
    with pytest.raises(CatalogError, match=r"tracks\.parquet: 7 usable tracks \(kept 7 of 8 rows\); at least 9"):
        _load(pq_path, min_tracks=9)


# ------------------------------------------------------------------------------------------ bad input

def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Each bad input, and what its line says after the path."""
    good, csv_path = _write(tmp_path, _frame())
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    no_tempo = tmp_path / "no_tempo.parquet"
    pq.write_table(pa.Table.from_pandas(_frame().rename(columns={"tempo": "temp"}), preserve_index=False), no_tempo)
    empty_rows = tmp_path / "no_rows.parquet"
    pq.write_table(pa.Table.from_pandas(_frame().iloc[:0], preserve_index=False), empty_rows)
    zero = tmp_path / "zero.parquet"
    zero.write_bytes(b"")
    folder = tmp_path / "folder.parquet"
    folder.mkdir()
    wrong_type = tmp_path / "dates.parquet"
    table = pa.Table.from_pandas(_frame(), preserve_index=False)
    pq.write_table(table.set_column(HEADER.index("tempo"), "tempo", pa.array(pd.date_range("2020", periods=8))),
                   wrong_type)
    return {
        "csv": (csv_path, ": not a Parquet file (it does not begin with the bytes PAR1); a CSV file? read it with "
                          "data=csv"),
        "truncated": (truncated, ": a damaged or truncated Parquet file (Parquet magic bytes not found in footer"),
        "missing column": (no_tempo, ": schema kaggle: missing required column 'tempo' (did you mean 'temp'? "
                                     "rename it or set data.columns.tempo=temp); the file has 14 columns: track_id"),
        "0 rows": (empty_rows, ": no track rows (a Parquet file of 0 rows; columns: track_id, track_name"),
        "0 bytes": (zero, ": empty file (0 bytes), not a Parquet file"),
        "directory": (folder, ": a directory, not a regular file (data.path="),
        "no such file": (tmp_path / "nowhere.parquet", ": no such file (data.path="),
        "wrong type": (wrong_type, ": column 'tempo' holds timestamp["),
    }


@pytest.mark.parametrize("case", ["csv", "truncated", "missing column", "0 rows", "0 bytes", "directory",
                                  "no such file", "wrong type"])
def test_a_bad_file_is_one_line_naming_it(tmp_path, case):
    path, says = _bad_inputs(tmp_path)[case]
    with pytest.raises(CatalogError) as err:
        _load(path)
    assert str(err.value).startswith(f"{path}{says}"), str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("case", ["truncated", "directory"])  # the others: the same path to the error line
def test_the_command_prints_one_error_line_and_exits_2(tmp_path, capsys, case):
    path, says = _bad_inputs(tmp_path)[case]
    proc = train_here(capsys, tmp_path / "run", "data=parquet", f"data.path={path}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    if case == "directory":  # refused with the inputs, before a run folder is made (as a CSV path is)
        says = f"error: data.path='{path}': a directory, not a regular file"
        assert errors == [says] and not (tmp_path / "run").exists(), proc.stderr[-2000:]
        return
    assert len(errors) == 1 and errors[0].startswith(f"error: {path}{says}"), proc.stderr[-2000:]


def test_the_csv_reader_sends_a_parquet_file_to_data_parquet(tmp_path):
    pq_path, _ = _write(tmp_path, _frame())
    with pytest.raises(CatalogError, match=r"tracks\.parquet: a Parquet file \(it begins with the bytes PAR1\), not "
                                           r"a CSV: read it with data=parquet$"):
        load_csv(DataConfig(source="csv", path=str(pq_path)), 3)


def test_the_config_group_and_its_keys(tmp_path):
    cfg = compose("data=parquet", f"data.path={tmp_path / 'x.parquet'}", "+data.columns.tempo=BPM")
    assert cfg.data.source == "parquet" and cfg.data.columns == {"tempo": "BPM"}
    DataConfig(source="parquet", path="x.parquet", columns={"tempo": "BPM"}).validate()
    with pytest.raises(ConfigError, match="data.path=None: a Parquet path is required when data.source=parquet"):
        DataConfig(source="parquet").validate()
    with pytest.raises(ConfigError, match=r"data.delimiter=';': applies to data=csv only \(a Parquet file has no "
                                          r"delimiter\)"):
        DataConfig(source="parquet", path="x.parquet", delimiter=";").validate()
