"""The durable feedback log: round trips, torn lines, invalid rows, SIGKILL mid-burst, concurrent writers."""

from __future__ import annotations

import csv
import errno
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import music_rl.data.feedback_store
from music_rl.core.errors import FeedbackError
from music_rl.data.feedback_store import COLUMNS, FeedbackStore

REPO = Path(__file__).resolve().parents[3]

# A writer process: once imported, says so (<log>.<user>.ready) and waits for <log>.go; then appends batches
# of 1..3 rows (user_id = argv[2], increasing position) until killed or argv[3] rows are written (0: forever).
WRITER = """
import pathlib, sys, time
from music_rl.data.feedback_store import FeedbackStore
store, user, limit = FeedbackStore(sys.argv[1]), sys.argv[2], int(sys.argv[3])
pathlib.Path(f"{sys.argv[1]}.{user}.ready").touch()
while not pathlib.Path(f"{sys.argv[1]}.go").exists():
    time.sleep(0.001)
pos = 0
while limit == 0 or pos < limit:
    n = 1 + pos % 3 if limit == 0 else min(1 + pos % 3, limit - pos)
    store.append([{"user_id": user, "session_id": "s,1", "position": pos + i, "track_id": f"t{pos + i}",
                   "percentage_listened": 0.5, "liked": (pos + i) % 2, "policy_version": "v2"}
                  for i in range(n)])
    pos += n
"""


def _start_writers(path: Path, users: tuple[str, ...], limit: int) -> list[subprocess.Popen]:
    """Start one writer process per user and release them together once all are ready."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), user, str(limit)], cwd=REPO, env=env)
             for user in users]
    deadline = time.monotonic() + 30.0
    while not all(Path(f"{path}.{user}.ready").exists() for user in users) and time.monotonic() < deadline:
        time.sleep(0.005)
    Path(f"{path}.go").touch()
    return procs


@pytest.fixture
def burst_dir(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs folder when there is one: SIGKILL tests the page cache, not the disk, and fsync is free."""
    if not os.access("/dev/shm", os.W_OK):
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir="/dev/shm") as folder:
        yield Path(folder)


class _UnwritableLock:
    """The writers' lock in a folder where its file cannot be created (what root, ignoring modes, never meets)."""

    def __init__(self, lock_file: str, error: int = errno.EACCES) -> None:
        self.lock_file, self.error = lock_file, error

    def acquire(self) -> None:
        raise OSError(self.error, os.strerror(self.error), self.lock_file)

    def release(self) -> None:
        raise AssertionError("released a lock never acquired")

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _log(n: int, user: str = "u1") -> pd.DataFrame:
    return pd.DataFrame({"user_id": user, "session_id": "s1", "position": np.arange(n),
                         "track_id": [f"t{i}" for i in range(n)], "percentage_listened": np.linspace(0, 1, n),
                         "liked": np.arange(n) % 2})


def test_create_append_read_round_trip_with_awkward_values(tmp_path: Path) -> None:
    path = tmp_path / "run" / "feedback.csv"
    store = FeedbackStore.create(path, _log(3))
    awkward = [{"user_id": 'a,"b"', "session_id": "line1\nline2", "position": 3, "track_id": "007",
                "percentage_listened": 0.1 + 0.2, "liked": 1, "action_prob": 1 / 3, "policy_version": "v1"},
               {"user_id": "u1", "session_id": "s1", "position": 4, "track_id": "t4",
                "percentage_listened": 1.0, "liked": 0, "served_at": "2024-05-01T12:00:00+00:00"}]
    store.append(awkward)
    store.append(pd.DataFrame(awkward[1:]).assign(position=5))
    df = FeedbackStore(path).read()

    assert list(df.columns) == list(COLUMNS)
    assert df["position"].tolist() == [0, 1, 2, 3, 4, 5]
    assert df.loc[3, "user_id"] == 'a,"b"' and df.loc[3, "session_id"] == "line1\nline2"
    assert df.loc[3, "track_id"] == "007"
    assert df.loc[3, "percentage_listened"] == 0.1 + 0.2 and df.loc[3, "action_prob"] == 1 / 3
    assert df["action_prob"].isna().sum() == 5
    assert df["policy_version"].tolist() == ["", "", "", "v1", "", ""]
    assert (df.loc[:2, "served_at"] == "").all()  # rows of the training log carry no timestamp
    stamped = pd.to_datetime(df.loc[3, "served_at"], utc=True)
    assert abs(pd.Timestamp.now(tz="UTC") - stamped) < pd.Timedelta(minutes=1)
    assert df.loc[4, "served_at"] == "2024-05-01T12:00:00+00:00"
    assert df["position"].dtype == np.int64 and df["liked"].dtype == np.int64
    assert df["liked"].tolist() == [0, 1, 0, 1, 0, 0]

    empty = FeedbackStore.create(tmp_path / "empty.csv", _log(0)).read()
    assert list(empty.columns) == list(COLUMNS) and len(empty) == 0


def test_torn_line_in_the_middle_is_skipped_with_one_warning(tmp_path: Path, caplog) -> None:
    path = tmp_path / "feedback.csv"
    store = FeedbackStore.create(path, _log(2))
    with open(path, "a", encoding="utf-8") as fh:  # a crash cut this append short, inside a quoted value
        fh.write('u1,s1,2,"t\n2')
    store.append(_log(4).iloc[3:])
    with caplog.at_level(logging.WARNING, logger="music_rl.data.feedback_store"):
        df = store.read()

    assert df["position"].tolist() == [0, 1, 3]
    assert len(caplog.records) == 1
    assert str(path) in caplog.messages[0] and "line(s) 4" in caplog.messages[0]


@pytest.mark.parametrize("tail", ["u1,s1,2,t2,0.", "u1,s1,2,t2,0.5,1,,2024-05-01T12:00:00+00:00,v"])
def test_torn_last_line_is_skipped_and_the_next_append_starts_a_new_line(tmp_path: Path, caplog,
                                                                          tail: str) -> None:
    path = tmp_path / "feedback.csv"
    store = FeedbackStore.create(path, _log(2))
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(tail)  # no newline: the last record is torn even when its width looks right
    with caplog.at_level(logging.WARNING, logger="music_rl.data.feedback_store"):
        assert store.read()["position"].tolist() == [0, 1]
    assert len(caplog.records) == 1 and "line(s) 4" in caplog.messages[0]

    store.append(_log(3).iloc[2:])
    assert store.read()["position"].tolist() == [0, 1, 2]


def test_invalid_rows_raise_naming_column_and_row(tmp_path: Path) -> None:
    path = tmp_path / "feedback.csv"
    store = FeedbackStore.create(path, _log(2))
    with pytest.raises(FeedbackError, match=r"column percentage_listened, row 2: .*\[0, 1\]"):
        store.append(_log(2).assign(percentage_listened=[0.5, 1.5]))
    with pytest.raises(FeedbackError, match=r"column action_prob, row 1 .*\(0, 1\]"):
        store.append(_log(1).assign(action_prob=0.0))
    with pytest.raises(FeedbackError, match="unknown column 'rating'"):
        store.append(_log(1).assign(rating=3))
    with pytest.raises(FeedbackError, match="missing column 'liked'"):
        FeedbackStore.create(tmp_path / "other.csv", _log(1).drop(columns="liked"))
    with pytest.raises(FeedbackError, match=r"column track_id, row 2: unknown track id .*'t1'"):
        store.read(known_track_ids=["t0"])
    assert len(store.read(known_track_ids=["t0", "t1"])) == 2  # the refused appends left nothing behind

    with open(path, "a", encoding="utf-8") as fh:
        fh.write("u1,s1,2,t2,0.5,7,,,,,\n")
    with pytest.raises(FeedbackError, match=r"column liked, row 3: .*'7'"):
        store.read()
    with pytest.raises(FeedbackError, match="no such feedback log"):
        FeedbackStore(tmp_path / "missing.csv").read()


BARE = "user_id,session_id,position,track_id,percentage_listened,liked"


@pytest.mark.parametrize(("header", "problem"), [
    (f"user_id,{BARE}", "duplicate column 'user_id'; each column"),
    (f"{BARE},liked,served_at,served_at", "duplicate columns 'liked', 'served_at'; each column"),
    (f"{BARE},rating", "unknown column 'rating'"),
    ("user_id,session_id,position,track_id,liked", "missing column 'percentage_listened'"),
    ("", "missing column 'user_id'"),
    ('"' + "x" * 200_000, r"not readable as CSV \(field larger than field limit"),
], ids=["duplicate", "duplicates", "unknown", "missing", "empty-line", "huge-field"])
def test_bad_header_raises_one_line_naming_file_and_problem(tmp_path: Path, header: str, problem: str) -> None:
    path = tmp_path / "feedback.csv"
    path.write_text(f"{header}\nu1,u1,s1,0,t0,0.5,1,x,y\n", encoding="utf-8")
    for attempt in (FeedbackStore(path).read, lambda: FeedbackStore(path).append(_log(1))):
        with pytest.raises(FeedbackError, match=problem) as err:
            attempt()
        assert str(err.value).startswith(f"{path}: line 1: ") and "\n" not in str(err.value)


def test_duplicate_columns_in_rows_to_write_raise(tmp_path: Path) -> None:
    twice = pd.concat([_log(1), _log(1)[["liked"]]], axis=1)
    with pytest.raises(FeedbackError, match="duplicate column 'liked'"):
        FeedbackStore.create(tmp_path / "feedback.csv", twice)
    with pytest.raises(FeedbackError, match="duplicate column 'liked'"):
        FeedbackStore(tmp_path / "feedback.csv").append(twice)
    assert not (tmp_path / "feedback.csv").exists()


def test_empty_file_reads_as_an_empty_log(tmp_path: Path) -> None:
    path = tmp_path / "feedback.csv"
    path.touch()  # what a crash between an append's open and its write leaves
    assert list(FeedbackStore(path).read().columns) == list(COLUMNS) and len(FeedbackStore(path).read()) == 0
    FeedbackStore(path).append(_log(1))
    assert FeedbackStore(path).read()["position"].tolist() == [0]


def test_reading_a_missing_log_creates_nothing(tmp_path: Path) -> None:
    for path in (tmp_path / "feedback.csv", tmp_path / "no" / "such" / "feedback.csv"):
        with pytest.raises(FeedbackError, match="no such feedback log"):
            FeedbackStore(path).read()
    assert list(tmp_path.iterdir()) == []  # no <path>.lock, no folders


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file modes: see the simulated test below")
def test_read_in_a_read_only_folder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    FeedbackStore.create(run / "feedback.csv", _log(2))
    (run / "feedback.csv.lock").unlink()  # someone else's run, copied or unpacked without its lock file
    run.chmod(0o555)
    try:
        assert FeedbackStore(run / "feedback.csv").read()["position"].tolist() == [0, 1]
        with pytest.raises(FeedbackError, match="no such feedback log"):
            FeedbackStore(run / "other.csv").read()
        with pytest.raises(PermissionError, match="feedback.csv.lock"):
            FeedbackStore(run / "feedback.csv").append(_log(1))
        assert sorted(p.name for p in run.iterdir()) == ["feedback.csv"]
    finally:
        run.chmod(0o755)


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_read_without_the_lock_where_it_cannot_be_created(tmp_path: Path, monkeypatch, code: int) -> None:
    path = tmp_path / "feedback.csv"
    FeedbackStore.create(path, _log(2))
    before = path.read_bytes()
    monkeypatch.setattr(music_rl.data.feedback_store, "FileLock", lambda lock_file: _UnwritableLock(lock_file, code))
    assert FeedbackStore(path).read()["position"].tolist() == [0, 1]

    with pytest.raises(OSError) as err:  # a writer still needs the lock; the entry points print one line
        FeedbackStore(path).append(_log(1))
    assert err.value.errno == code and err.value.filename == f"{path}.lock"
    from music_rl.core.errors import os_error_line

    line = os_error_line(err.value)
    assert line is not None and line.startswith(f"{path}.lock: ") and "\n" not in line
    assert path.read_bytes() == before


def test_read_keeps_other_lock_errors(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "feedback.csv"
    FeedbackStore.create(path, _log(1))
    monkeypatch.setattr(music_rl.data.feedback_store, "FileLock",
                        lambda lock_file: _UnwritableLock(lock_file, errno.EIO))
    with pytest.raises(OSError, match="Input/output error"):
        FeedbackStore(path).read()


@pytest.mark.parametrize("served", ["yesterday", "2024-05-01T12:00:00", "2024-W18-3T12:00:00+00:00"])
def test_append_refuses_a_served_at_that_is_not_an_iso_time_with_a_timezone(tmp_path: Path, served: str) -> None:
    path = tmp_path / "feedback.csv"
    store = FeedbackStore.create(path, _log(2))
    before = path.read_bytes()
    batch = _log(5).iloc[2:].assign(served_at=["2024-05-01T12:00:00Z", served, ""])
    expected = rf"column served_at, row 2 \(1 bad in all\): .*\(got {re.escape(repr(served))}\)"
    with pytest.raises(FeedbackError, match=expected) as err:
        store.append(batch)
    assert str(err.value).startswith(f"{path} (rows being written)") and "\n" not in str(err.value)
    assert path.read_bytes() == before  # all or nothing
    with pytest.raises(FeedbackError, match="column served_at, row 2"):
        FeedbackStore.create(tmp_path / "other.csv", batch)

    store.append(batch.assign(served_at=["2024-05-01T12:00:00Z", "2024-05-01 14:00:00.5+02:00", ""]))
    assert store.read()["served_at"].tolist()[2:4] == ["2024-05-01T12:00:00Z", "2024-05-01 14:00:00.5+02:00"]


def test_append_upgrades_a_log_written_with_the_bare_schema(tmp_path: Path) -> None:
    path = tmp_path / "feedback.csv"
    _log(2).to_csv(path, index=False)
    FeedbackStore(path).append(_log(3).iloc[2:].assign(policy_version="v1"))

    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)
    df = FeedbackStore(path).read()
    assert df["position"].tolist() == [0, 1, 2] and df["policy_version"].tolist() == ["", "", "v1"]


def test_sigkill_mid_burst_leaves_whole_rows_in_order(burst_dir: Path) -> None:
    path = burst_dir / "feedback.csv"
    [proc] = _start_writers(path, ("killed",), limit=0)
    deadline = time.monotonic() + 60.0  # a guard only: on a loaded machine the writer starts late
    while time.monotonic() < deadline and (not path.exists() or path.stat().st_size < 40_000):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    df = FeedbackStore(path).read()
    assert len(df) > 50  # the writer was well into its burst of small batches
    assert df["position"].tolist() == list(range(len(df)))  # every row before the last intact, in order
    assert df["track_id"].tolist() == [f"t{i}" for i in range(len(df))]
    assert (df["session_id"] == "s,1").all() and (df["policy_version"] == "v2").all()
    with open(path, newline="", encoding="utf-8") as fh:
        records = list(csv.reader(fh))[1:]
    assert all(len(r) == len(COLUMNS) for r in records[:-1])  # at most the last record is torn
    assert len(df) in (len(records), len(records) - 1)

    FeedbackStore(path).append(_log(1, user="after").assign(position=len(df)))
    after = FeedbackStore(path).read()
    assert after["position"].tolist() == list(range(len(df) + 1))
    assert after["user_id"].iloc[-1] == "after"


def test_two_concurrent_writers_never_interleave_within_a_line(burst_dir: Path) -> None:
    path, n = burst_dir / "feedback.csv", 200
    procs = _start_writers(path, ("w0", "w1"), limit=n)
    assert [p.wait(timeout=60) for p in procs] == [0, 0]

    with open(path, newline="", encoding="utf-8") as fh:
        records = list(csv.reader(fh))
    assert records[0] == list(COLUMNS)
    assert len(records) == 1 + 2 * n and all(len(r) == len(COLUMNS) for r in records)
    df = FeedbackStore(path).read()
    assert len(df) == 2 * n
    assert (df["user_id"] != df["user_id"].shift()).sum() > 2  # the writers really took turns
    for user in ("w0", "w1"):
        mine = df[df["user_id"] == user]
        assert mine["position"].tolist() == list(range(n))
        assert mine["track_id"].tolist() == [f"t{i}" for i in range(n)]
