"""Feedback logs that real files do not break (issue #23): MSSD rows with no skip flag, one submission landing
once, a run whose feedback.csv was deleted, appends that cannot complete, and the lines naming what is wrong."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, run_cli
from mssd import mssd_files, no_flag_rows

import music_rl.data.feedback_store
from music_rl.cli.cold_start import parse_pct
from music_rl.cli.help import field_docs
from music_rl.cli.recommend import RecommendConfig
from music_rl.core.errors import FeedbackError
from music_rl.data.feedback import land_once, read_feedback
from music_rl.data.feedback_store import FeedbackStore
from music_rl.data.log_import import FeedbackConfig, read_log
from music_rl.data.mssd import DEFAULT_SKIP_MAP, NO_FLAG

HEADER = "user_id,session_id,position,track_id,percentage_listened,liked"


def _rows(n: int, user: str = "u", start: int = 1) -> pd.DataFrame:
    """``n`` answers of ``user`` in session s, positions from ``start``, tracks syn<position>."""
    pos = np.arange(start, start + n)
    return pd.DataFrame({"user_id": user, "session_id": "s", "position": pos,
                         "track_id": [f"syn{p:08d}" for p in pos], "percentage_listened": 0.5, "liked": 1})


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _error(capsys: pytest.CaptureFixture) -> str:
    """The one line a refused command printed."""
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert line.startswith("error: "), line
    return line


# ------------------------------------------------------------------------------- MSSD rows with no skip flag

def test_mssd_rows_with_no_flag_are_read_by_skip_map_none_and_counted(tmp_path: Path) -> None:
    tracks, log = mssd_files(tmp_path, unknown=2, no_flag=6)
    raw = pd.read_csv(log)
    ids = pd.read_csv(tracks)["track_id"].astype(str).tolist()
    kept, report = read_log(FeedbackConfig(path=str(log)), ids)
    assert len(kept) == len(raw) - 2 == report.rows_joined  # every row whose track is in the catalog
    assert report.no_flag_rows == 6 and report.no_flag_pct == DEFAULT_SKIP_MAP[NO_FLAG] == 0.8
    assert "6 rows with no skip flag true read as percentage_listened 0.8 (feedback.skip_map.none)" \
        in report.line(log)
    rows = no_flag_rows(len(raw), 2, 6)
    assert (kept["percentage_listened"].to_numpy()[rows - 2] == 0.8).all()
    assert "none" not in raw.columns  # the reserved entry is never read as a column
    custom, _ = read_log(FeedbackConfig(path=str(log), skip_map={**DEFAULT_SKIP_MAP, NO_FLAG: 0.7}), ids)
    assert (custom["percentage_listened"].to_numpy()[rows - 2] == 0.7).all()


def test_mssd_rows_with_no_flag_are_fatal_when_strict(tmp_path: Path) -> None:
    tracks, log = mssd_files(tmp_path, no_flag=3)
    ids = pd.read_csv(tracks)["track_id"].astype(str).tolist()
    first = int(no_flag_rows(len(pd.read_csv(log)), 0, 3)[0]) + 1
    with pytest.raises(FeedbackError, match=rf"log\.csv: 3 rows with no skip flag true \(first: row {first}\) "
                                            r"\[feedback\.strict=true: fatal"):
        read_log(FeedbackConfig(path=str(log), strict=True), ids)


def test_skip_map_none_is_a_config_key() -> None:
    from music_rl.config import load_config

    cfg = load_config({"feedback": {"skip_map": {"none": 0.7}}})
    assert cfg.feedback.skip_map == {**DEFAULT_SKIP_MAP, "none": 0.7}


# ----------------------------------------------------------------------------- one submission lands once

def test_a_submission_lands_each_served_track_once() -> None:
    rows = pd.concat([_rows(3), _rows(1)], ignore_index=True)  # row 4 repeats row 1
    kept, duplicates = land_once(rows, "new.csv")
    assert duplicates == 1 and len(kept) == 3
    clash = pd.concat([_rows(3), _rows(1).assign(percentage_listened=0.9)], ignore_index=True)
    with pytest.raises(FeedbackError, match=r"new\.csv: rows 1 and 4 answer one served track twice, differently "
                                            r"\(user_id='u', session_id='s', position=1, track_id='syn00000001'\): "
                                            r"percentage_listened 0\.5, liked 1 vs percentage_listened 0\.9"):
        land_once(clash, "new.csv")


def test_the_store_lands_a_submission_once_and_refuses_another_answer(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "feedback.csv")
    assert len(store.append_new(pd.concat([_rows(3), _rows(3)], ignore_index=True))) == 3
    assert len(store.append_new(_rows(4))) == 1  # three already there, same answers: land once
    before = _sha(store.path)
    with pytest.raises(FeedbackError, match=r"feedback\.csv: already logs another answer to a served track "
                                            r"\(user_id='u', session_id='s', position=2, track_id='syn00000002'\)"):
        store.append_new(pd.concat([_rows(1, start=9), _rows(1, start=2).assign(liked=0)], ignore_index=True))
    assert _sha(store.path) == before and len(store.read()) == 4  # nothing appended


# ------------------------------------------------------------------------ a run whose feedback.csv was deleted

def test_a_log_that_must_exist_is_never_started_anew(tmp_path: Path) -> None:
    path = tmp_path / "feedback.csv"
    with pytest.raises(FeedbackError, match=r"feedback\.csv: missing: this run's feedback log .* deleted"):
        FeedbackStore(path, must_exist=True)
    FeedbackStore(path).append(_rows(1))  # a log that need not exist yet: created, as before
    store = FeedbackStore(path, must_exist=True)
    path.unlink()  # deleted while open
    with pytest.raises(FeedbackError, match="missing"):
        store.append(_rows(1))
    assert not path.exists()


# ---------------------------------------------------------------------------- appends that cannot complete

def test_a_failed_write_leaves_the_log_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FeedbackStore.create(tmp_path / "feedback.csv", _rows(3))
    before = _sha(store.path)

    def half_then_full(fd: int, data: bytes) -> int:
        os.ftruncate(fd, os.fstat(fd).st_size + len(data) // 2)  # half the batch lands, then the disk is full
        monkeypatch.setattr(music_rl.data.feedback_store.os, "write", disk_full)
        return len(data) // 2

    def disk_full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(music_rl.data.feedback_store.os, "write", half_then_full)
    with pytest.raises(OSError, match=r"No space left on device \(5 row\(s\) not appended; the log is as it was\)"
                       ) as caught:
        store.append(_rows(5, start=4))
    assert caught.value.filename == str(store.path) and caught.value.errno == errno.ENOSPC
    assert _sha(store.path) == before


FSIZE = """
import resource, sys
import pandas as pd
from music_rl.data.feedback_store import FeedbackStore
path, limit = sys.argv[1], int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
rows = pd.DataFrame({"user_id": "u", "session_id": "s", "position": range(100, 150), "track_id": "t",
                     "percentage_listened": 0.5, "liked": 1})
try:
    FeedbackStore(path).append(rows)
except OSError as err:
    print(err.errno, err.filename, err.strerror)
"""


@pytest.mark.parametrize("header", ["full", "old"])  # an append in place / a header upgrade's rewrite
def test_file_too_large_leaves_the_log_as_it_was(tmp_path: Path, header: str) -> None:
    path = tmp_path / "feedback.csv"
    if header == "full":
        FeedbackStore.create(path, _rows(3))
    else:  # another tool's log with the six columns only: the append rewrites it with the full header
        path.write_text(HEADER + "\nu,s,1,t,0.5,1\n")
    before = _sha(path)
    proc = subprocess.run([sys.executable, "-c", FSIZE, str(path), str(path.stat().st_size + 100)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split(" ", 2)[:2] == [str(errno.EFBIG), str(path)], proc.stdout
    assert "50 row(s) not appended; the log is as it was" in proc.stdout
    assert _sha(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feedback.csv", "feedback.csv.lock"]  # no temporary


# ------------------------------------------------------------------------------------------ misleading lines

def test_a_carriage_return_is_named_in_its_own_column(tmp_path: Path) -> None:
    crlf = tmp_path / "crlf.csv"
    crlf.write_bytes(f"{HEADER}\r\nu,s,1,t1,0.5,1\r\nu,s,2,t2,0.5,0\r\r\n".encode())  # CRLF, once converted twice
    assert read_feedback(crlf)["liked"].tolist() == [1, 0]
    stray = tmp_path / "stray.csv"
    stray.write_bytes(f"{HEADER}\nu,s,1,t1,0.5,1\nu,s,2,t2\r,0.5,0\n".encode())
    with pytest.raises(FeedbackError, match=r"stray\.csv: column track_id, row 2: must not hold a carriage return"
                                            r".*\(got 't2\\r'\)"):
        read_feedback(stray)
    mac = tmp_path / "mac.csv"
    mac.write_bytes(f"{HEADER}\ru,s,1,t1,0.5,1\r".encode())
    with pytest.raises(FeedbackError, match=r"mac\.csv: its lines end in CR only"):
        read_feedback(mac)


def test_an_out_of_range_position_is_named_as_written(tmp_path: Path) -> None:
    path = tmp_path / "new.csv"
    path.write_text(f"{HEADER}\nu,s,1e30,t1,0.5,1\n")
    with pytest.raises(FeedbackError, match=r"new\.csv: column position, row 1: must be an integer in "
                                            r"\[0, 2147483647\] \(got '1e30'\)"):
        read_feedback(path)


def test_a_bare_number_above_one_is_not_read_as_a_percentage() -> None:
    assert parse_pct("1") == 1.0 and parse_pct("0.8") == 0.8 and parse_pct("80%") == 0.8
    assert parse_pct("2%") == 0.02 and parse_pct("0") == 0.0
    for ambiguous in ("2", "80"):
        with pytest.raises(ValueError, match=rf"'{ambiguous}'\? a bare number is a fraction from 0 to 1: write "
                                             rf"{ambiguous}% for a percentage"):
            parse_pct(ambiguous)
    with pytest.raises(ValueError, match=r"'150%'\? give how much you listened: a fraction from 0 to 1"):
        parse_pct("150%")
    assert "a percentage with % (80%)" in field_docs(RecommendConfig)["cold_start"]


# --------------------------------------------------------------------- the commands (a trained tiny run)

@pytest.fixture
def run(pristine: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny run."""
    return Path(shutil.copytree(pristine, tmp_path / "run"))


def _model_files(run: Path) -> list[str]:
    return sorted(p.name for p in run.glob("ppo*.zip"))


@pytest.mark.slow
def test_finetune_lands_a_file_once_drops_unknown_tracks_and_refuses_two_answers(run, tmp_path, capsys):
    new = pd.concat([_rows(3), _rows(1), _rows(1, start=10).assign(track_id="nowhere")], ignore_index=True)
    new.to_csv(tmp_path / "new.csv", index=False)
    n_logged = len(FeedbackStore(run / "feedback.csv").read())
    assert run_cli("finetune", f"run_dir={run}", f"feedback={tmp_path / 'new.csv'}", "timesteps=256") == 0
    captured = capsys.readouterr()
    assert "1 exact duplicate rows landed once" in captured.err
    assert "1 rows whose track is not in the catalog dropped (e.g. 'nowhere')" in captured.err
    assert "3 new feedback rows appended" in captured.out
    assert len(FeedbackStore(run / "feedback.csv").read()) == n_logged + 3

    before, models = _sha(run / "feedback.csv"), _model_files(run)
    assert run_cli("finetune", f"run_dir={run}", f"feedback={tmp_path / 'new.csv'}", "timesteps=256",
                   "strict=true") == 2
    assert "[strict=true: fatal]" in _error(capsys)
    _rows(1, start=2).assign(liked=0).to_csv(tmp_path / "other.csv", index=False)  # logged with liked 1
    assert run_cli("finetune", f"run_dir={run}", f"feedback={tmp_path / 'other.csv'}", "timesteps=256") == 2
    assert "already logs another answer to a served track (user_id='u', session_id='s', position=2" \
        in _error(capsys)
    pd.concat([_rows(2), _rows(1).assign(liked=0)]).to_csv(tmp_path / "clash.csv", index=False)
    assert run_cli("finetune", f"run_dir={run}", f"feedback={tmp_path / 'clash.csv'}", "timesteps=256") == 2
    assert "clash.csv: rows 1 and 3 answer one served track twice" in _error(capsys)
    assert _sha(run / "feedback.csv") == before and _model_files(run) == models


@pytest.mark.slow
def test_recommend_reads_a_submission_by_the_same_rule(run, tmp_path):
    from music_rl.serving.inference import load_run, user_answers

    new = pd.concat([_rows(3), _rows(1), _rows(1, start=10).assign(track_id="nowhere")], ignore_index=True)
    new.to_csv(tmp_path / "new.csv", index=False)
    loaded = load_run(run)
    answers, report = user_answers(loaded, "u", tmp_path / "new.csv")
    assert len(answers) == 3 and report.duplicate_rows == 1 and report.unknown_rows == 1
    with pytest.raises(FeedbackError, match=r"new\.csv: 1 rows whose track is not in the catalog .* from row 5 "
                                            r"\[strict=true: fatal\]"):
        user_answers(loaded, "u", tmp_path / "new.csv", strict=True)


@pytest.mark.slow
def test_a_repeated_simulated_cold_start_logs_and_learns_its_answers_once(run, capsys):
    import json

    n_logged = len(FeedbackStore(run / "feedback.csv").read())
    argv = (f"run_dir={run}", "cold_start=true", "listener_seed=5", "length=3", "finetune_timesteps=256",
            "format=json")
    summaries = []
    for _ in range(2):
        assert run_cli("recommend", *argv) == 0
        summaries.append(json.loads(capsys.readouterr().out)["cold_start"])
    n = summaries[0]["answers"]
    assert summaries[1] == summaries[0] == {"user_id": "sim-5", "answers": n, "finetuned_on": n}
    log = FeedbackStore(run / "feedback.csv").read()
    assert len(log) == n_logged + n and set(log["session_id"].iloc[n_logged:]) == {"sim-5-probe-seed0"}
    assert run_cli("recommend", *argv, "seed=1") == 0  # other draws of the listener: a session of their own
    assert json.loads(capsys.readouterr().out)["cold_start"]["finetuned_on"] == 2 * n


@pytest.mark.slow
def test_a_run_whose_feedback_log_was_deleted_is_refused(run, tmp_path, capsys):
    (run / "feedback.csv").unlink()
    _rows(1).to_csv(tmp_path / "new.csv", index=False)
    models = _model_files(run)
    assert run_cli("finetune", f"run_dir={run}", f"feedback={tmp_path / 'new.csv'}", "timesteps=256") == 2
    assert f"{run / 'feedback.csv'}: missing" in _error(capsys)
    assert run_cli("recommend", f"run_dir={run}", "cold_start=true", "listener_seed=5",
                   "finetune_timesteps=256") == 2
    assert f"{run / 'feedback.csv'}: missing" in _error(capsys)
    assert not (run / "feedback.csv").exists() and _model_files(run) == models


@pytest.mark.slow
def test_finetune_past_the_file_size_limit_names_the_log_and_keeps_it(run, tmp_path):
    from music_rl.serving.finetune import run_log
    from music_rl.serving.inference import load_run

    pd.concat([_rows(60, user="big")]).to_csv(tmp_path / "new.csv", index=False)
    log = run / "feedback.csv"
    before, models, limit = _sha(log), _model_files(run), log.stat().st_size + 200

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "finetune.py"), f"run_dir={run}",
                           f"feedback={tmp_path / 'new.csv'}", "timesteps=256"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, preexec_fn=small_files)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {log}: File too large (60 row(s) not appended; the log is as it was)"), line
    assert _sha(log) == before and _model_files(run) == models
    loaded = load_run(run)
    assert run_log(loaded).must_exist  # training wrote it: world/meta.json records its source
    never = dataclasses.replace(loaded, world=dataclasses.replace(loaded.world, meta={
        k: v for k, v in loaded.world.meta.items() if k != "feedback"}))
    assert not run_log(never).must_exist  # a run that never had one: the first append creates it
