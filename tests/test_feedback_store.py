"""The durable feedback log: round trips, torn lines, invalid rows, SIGKILL mid-burst, concurrent writers."""

from __future__ import annotations

import csv
import logging
import os
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

from envs.errors import FeedbackError
from envs.feedback_store import COLUMNS, FeedbackStore

REPO = Path(__file__).resolve().parents[1]

# A writer process: once imported, says so (<log>.<user>.ready) and waits for <log>.go; then appends batches
# of 1..3 rows (user_id = argv[2], increasing position) until killed or argv[3] rows are written (0: forever).
WRITER = """
import pathlib, sys, time
from envs.feedback_store import FeedbackStore
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
    with caplog.at_level(logging.WARNING, logger="envs.feedback_store"):
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
    with caplog.at_level(logging.WARNING, logger="envs.feedback_store"):
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
        fh.write("u1,s1,2,t2,0.5,7,,,\n")
    with pytest.raises(FeedbackError, match=r"column liked, row 3: .*'7'"):
        store.read()
    with pytest.raises(FeedbackError, match="no such feedback log"):
        FeedbackStore(tmp_path / "missing.csv").read()


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
    deadline = time.monotonic() + 3.0
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
