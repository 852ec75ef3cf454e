"""Tests of feedback logs: CSV/Parquet round trips, validation messages, generation from listeners and the
Music Streaming Sessions Dataset import."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from envs.candidates import CandidateIndex, build_neighbour_table
from envs.listeners import ListenerConfig, ListenerPopulation
from envs.simulated_logs import probe_log, random_walk_log
from music_rl.core.errors import ConfigError, FeedbackError
from music_rl.data.catalog import Normaliser, synthetic_catalog
from music_rl.data.feedback import COLUMNS, read_feedback, write_feedback
from music_rl.data.mssd import DEFAULT_SKIP_MAP, import_streaming_sessions

MSSD_SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "feedback" / "mssd_log_sample.csv"
N_TRACKS = 400
HEADER = ",".join(COLUMNS)


@pytest.fixture(scope="module")
def world() -> tuple[ListenerPopulation, CandidateIndex, np.ndarray]:
    catalog = synthetic_catalog(N_TRACKS, seed=2)
    X = Normaliser("physical").fit(catalog.raw).transform(catalog.raw)
    pop = ListenerPopulation.sample(X, ListenerConfig(population=4), np.random.default_rng(0))
    index = CandidateIndex(X, build_neighbour_table(X, 12), k=4)
    ids = catalog.tracks["track_id"].to_numpy().astype(object)
    ids[:3] = ["NA", "00123", "null"]  # ids pandas would read as missing or as numbers by default
    return pop, index, ids


def _walk(world: tuple[ListenerPopulation, CandidateIndex, np.ndarray], seed: int) -> pd.DataFrame:
    pop, index, ids = world
    return random_walk_log(pop, [0, 2], index, n_sessions=3, session_length=8, track_ids=ids,
                           rng=np.random.default_rng(seed))


def _csv(tmp_path: Path, text: str, name: str = "log.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_round_trip_gives_the_identical_frame(world, tmp_path: Path, suffix: str) -> None:
    pop, _, ids = world
    for log in (_walk(world, 0), probe_log(pop, [1, 3], [0, 1, 2, 50], ids, np.random.default_rng(0))):
        path = tmp_path / f"feedback{suffix}"
        write_feedback(log, path)
        back = read_feedback(path, known_track_ids=list(ids))
        pd.testing.assert_frame_equal(back, log)
        assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind
    assert {"NA", "00123", "null"} & set(back["track_id"])
    assert back["position"].dtype == np.int64 and back["liked"].dtype == np.int64
    assert back["percentage_listened"].dtype == np.float64


@pytest.mark.parametrize(("rows", "match"), [
    (["u,s,1,t1,0.5,0", "u,s,2,t2,abc,1", "u,s,3,t3,1.0,1", "u,s,4,t4,1.5,0"],
     r"log\.csv: column percentage_listened, rows 2, 4: must be a number in \[0, 1\] \(got 'abc'\)"),
    (["u,s,1,t1,0.5,0", "u,s,2,t2,0.5,yes please", "u,s,3,t3,0.5,2"],
     r"column liked, rows 2, 3: must be 0 or 1"),
    ([f"u,s,{i},t1,{'0.5' if i % 4 else '-0.1'},0" for i in range(1, 41)],
     r"column percentage_listened, rows 4, 8, 12, 16, 20 \(\+5 more, 10 in all\)"),
    (["u,s,1,t1,0.5,0", "u,s,-1,t2,0.5,0", "u,s,2.5,t2,0.5,0"],
     r"column position, rows 2, 3: must be an integer in \[0, 2147483647\]"),
    (["u,s,1,t1,0.5,0", "u,s,2,,0.5,0"], r"column track_id, row 2: must not be empty"),
])
def test_bad_values_are_named_with_their_rows(tmp_path: Path, rows: list[str], match: str) -> None:
    path = _csv(tmp_path, "\n".join([HEADER, *rows]) + "\n")
    with pytest.raises(FeedbackError, match=match):
        read_feedback(path)


def test_unknown_tracks_missing_columns_and_empty_files(tmp_path: Path) -> None:
    path = _csv(tmp_path, "\n".join([HEADER, "u,s,1,t1,0.5,0", "u,s,2,zz,0.5,0", "u,s,3,t2,0.5,1"]) + "\n")
    assert len(read_feedback(path, known_track_ids=["t1", "t2", "zz"])) == 3
    with pytest.raises(FeedbackError, match=r"log\.csv: column track_id, row 2: unknown track id .*got 'zz'"):
        read_feedback(path, known_track_ids=["t1", "t2"])
    path = _csv(tmp_path, "user_id,session_id,track_id,percentage_listened\nu,s,t1,0.5\n", "cols.csv")
    with pytest.raises(FeedbackError, match=r"cols\.csv: missing column\(s\) position, liked"):
        read_feedback(path)
    with pytest.raises(FeedbackError, match=r"empty\.csv: empty file"):
        read_feedback(_csv(tmp_path, "", "empty.csv"))
    with pytest.raises(FeedbackError, match=r"header\.csv: no data rows"):
        read_feedback(_csv(tmp_path, HEADER + "\n", "header.csv"))
    with pytest.raises(FeedbackError, match=r"nowhere\.csv: no such file"):
        read_feedback(tmp_path / "nowhere.csv")
    (tmp_path / "log.json").write_text("{}")
    with pytest.raises(FeedbackError, match=r"log\.json: suffix '\.json' not supported"):
        read_feedback(tmp_path / "log.json")
    (tmp_path / "logs").mkdir()
    with pytest.raises(FeedbackError, match=r"logs: a directory, not a log"):
        read_feedback(tmp_path / "logs")


def test_writing_refuses_invalid_frames_and_leaves_nothing(world, tmp_path: Path) -> None:
    log = _walk(world, 0)
    log.loc[3, "liked"] = 5
    with pytest.raises(FeedbackError, match=r"column liked, row 4: must be 0 or 1"):
        write_feedback(log, tmp_path / "bad.csv")
    assert list(tmp_path.iterdir()) == []


def test_action_prob_is_validated(tmp_path: Path) -> None:
    path = _csv(tmp_path, HEADER + ",action_prob\nu,s,1,t1,0.5,0,0.25\nu,s,2,t1,0.5,0,0\n")
    with pytest.raises(FeedbackError, match=r"column action_prob, row 2: must be empty or a number in \(0, 1\]"):
        read_feedback(path)


def test_propensity_columns_are_read_and_checked(tmp_path: Path) -> None:
    header = HEADER + ",from_track_id,candidates,action_prob\n"
    path = _csv(tmp_path, header + "u,s,1,t2,0.5,0,t1,t2 t3 t4 t5,0.25\nu,s,2,t9,0.5,0,,,\n")
    log = read_feedback(path)
    assert log["candidates"].tolist() == ["t2 t3 t4 t5", ""] and log["from_track_id"].tolist() == ["t1", ""]
    assert log["action_prob"].iloc[0] == 0.25 and np.isnan(log["action_prob"].iloc[1])
    bad = _csv(tmp_path, header + "u,s,1,t9,0.5,0,t1,t2 t3 t4 t5,0.25\n", "bad.csv")
    with pytest.raises(FeedbackError, match=r"column candidates, row 1: must hold the chosen track_id"):
        read_feedback(bad)


def test_probe_log_plays_every_probe_to_every_listener(world) -> None:
    pop, _, ids = world
    probes = [5, 17, 99, 250, 300]
    log = probe_log(pop, [0, 3], probes, ids, np.random.default_rng(1))
    assert len(log) == 10 and (log["action_prob"] == 1.0).all() and (log["from_track_id"] == "").all()
    assert (log["candidates"] == log["track_id"]).all()  # a probe is shown alone, in a fresh session
    assert log.groupby("user_id")["track_id"].apply(list).tolist() == [[str(ids[t]) for t in probes]] * 2
    assert log["position"].tolist() == [1, 2, 3, 4, 5] * 2
    assert set(log["session_id"]) == {"probe-0", "probe-3"}
    pd.testing.assert_frame_equal(log, probe_log(pop, [0, 3], probes, ids, np.random.default_rng(1)))
    assert not log.equals(probe_log(pop, [0, 3], probes, ids, np.random.default_rng(2)))


def test_random_walk_log_follows_candidates_and_stops_when_the_listener_leaves(world) -> None:
    pop, index, ids = world
    log = _walk(world, 3)
    pd.testing.assert_frame_equal(log, _walk(world, 3))
    assert not log.equals(_walk(world, 4))
    assert (log["action_prob"] == 0.25).all()
    row_of = {str(t): i for i, t in enumerate(ids)}
    table = build_neighbour_table(index._Z, 12)
    for _, session in log.groupby("session_id"):
        tracks = [row_of[t] for t in session["track_id"]]
        assert session["position"].tolist() == list(range(1, len(tracks) + 1))
        assert len(set(tracks)) == len(tracks) <= 8  # never a repeat within a session
        for prev, nxt in zip(tracks, tracks[1:], strict=False):
            assert nxt in table[prev]  # each pick is one of the previous track's near neighbours
        if len(tracks) < 8:  # ended early: the listener left after `patience` skips in a row
            assert (session["percentage_listened"].to_numpy()[-pop.cfg.patience:] < 0.5).all()
    assert log["session_id"].nunique() == 6


def test_mssd_sample_imports_with_the_documented_mapping(tmp_path: Path) -> None:
    log, no_flag = import_streaming_sessions(MSSD_SAMPLE)
    assert not no_flag.any()
    raw = pd.read_csv(MSSD_SAMPLE)
    assert len(log) == len(raw) == 15
    expected = [1.0, 1.0, 0.05, 0.2, 0.6, 1.0, 1.0, 0.05, 0.05, 0.2, 1.0, 1.0, 0.6, 0.2, 1.0]
    assert log["percentage_listened"].tolist() == expected
    assert (log["user_id"] == log["session_id"]).all() and (log["liked"] == 0).all()
    assert log["session_id"].tolist() == raw["session_id"].tolist()
    assert log["track_id"].tolist() == raw["track_id_clean"].tolist()
    assert log["position"].tolist() == raw["session_position"].tolist()
    assert list(log.columns) == list(COLUMNS)

    reordered = {"skip_2": 0.1, "not_skipped": 1.0, "skip_3": 0.7}
    custom, _ = import_streaming_sessions(MSSD_SAMPLE, skip_map=reordered)
    assert custom["percentage_listened"].tolist()[:6] == [1.0, 1.0, 0.1, 0.1, 0.7, 1.0]

    text = MSSD_SAMPLE.read_text(encoding="utf-8")
    ones = _csv(tmp_path, text.replace(",true", ",1").replace(",false", ",0"), "ones.csv")
    pd.testing.assert_frame_equal(import_streaming_sessions(ones)[0], log)


def test_mssd_errors(tmp_path: Path) -> None:
    lines = MSSD_SAMPLE.read_text(encoding="utf-8").splitlines()
    flags = "false,false,false,true"
    maybe = lines[2].replace(flags, "maybe,false,false,true")
    bad = _csv(tmp_path, "\n".join([lines[0], lines[1], maybe]), "bad.csv")
    with pytest.raises(FeedbackError, match=r"bad\.csv: column skip_1, row 2: must be true/false or 1/0"):
        import_streaming_sessions(bad)
    no_flag = lines[1].replace(flags, "false,false,false,false")
    none = _csv(tmp_path, "\n".join([lines[0], no_flag]), "none.csv")
    flags_only = {flag: value for flag, value in DEFAULT_SKIP_MAP.items() if flag != "none"}
    with pytest.raises(FeedbackError, match=r"none\.csv: column skip_1/skip_2/skip_3/not_skipped, row 1: at.*"
                                            r"skip_map\.none"):
        import_streaming_sessions(none, skip_map=flags_only)
    cut = _csv(tmp_path, "session_id,session_position,skip_1\nx,1,true\n", "cut.csv")
    with pytest.raises(FeedbackError, match=r"cut\.csv: missing MSSD column\(s\) track_id_clean, skip_2"):
        import_streaming_sessions(cut)
    with pytest.raises(ConfigError, match=r"skip_map\['skip_1'\]=1\.5"):
        import_streaming_sessions(MSSD_SAMPLE, skip_map={**DEFAULT_SKIP_MAP, "skip_1": 1.5})
