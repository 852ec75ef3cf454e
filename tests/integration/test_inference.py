"""Inference from a run folder: recommend (table/JSON, queries, unknown tracks), model versions, fine-tuning,
the durable feedback log and cold start (simulated listener and answers piped on stdin)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, run_cli

from music_rl.cli.finetune import with_serving_columns
from music_rl.core.errors import FeedbackError, UnknownTrackError
from music_rl.data.feedback import read_feedback
from music_rl.data.feedback_store import COLUMNS, FeedbackStore
from music_rl.learners.models import load_model, model_versions
from music_rl.serving.finetune import probe_tracks
from music_rl.serving.inference import find_track, load_run

pytestmark = pytest.mark.slow  # trains (a tiny budget, still seconds per test)


@pytest.fixture
def run_dir(pristine: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny run, for tests that write into it."""
    return Path(shutil.copytree(pristine, tmp_path / "run"))


def recommend(capsys: pytest.CaptureFixture, *argv: str) -> str:
    """music-rl recommend in this process; its stdout."""
    code = run_cli("recommend", *argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def recommend_json(capsys: pytest.CaptureFixture, *argv: str) -> dict:
    return json.loads(recommend(capsys, *argv, "format=json"))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def parse_table(text: str) -> list[dict]:
    """The steps of the table format: value, the picked track id and every candidate's id and probability."""
    steps = []
    for line in text.splitlines():
        if m := re.match(r"#(\d+)\s+from .*\[(\S+)\]\s+value (-?[\d.]+)$", line):
            steps.append({"from": m.group(2), "value": float(m.group(3)), "candidates": [], "pick": None})
        elif m := re.match(r"  (->|  )\s+([\d.]+)%\s+.*\[(\S+)\]$", line):
            if m.group(1) == "->":
                steps[-1]["pick"] = len(steps[-1]["candidates"])
            steps[-1]["candidates"].append((m.group(3), float(m.group(2))))
    return steps


def test_table_and_json_agree_and_give_length_distinct_tracks(pristine, capsys):
    start = "syn00000007"
    out = recommend_json(capsys, f"run_dir={pristine}", f"track_id={start}", "length=12")
    table = parse_table(recommend(capsys, f"run_dir={pristine}", f"track_id={start}", "length=12"))
    steps = out["steps"]
    assert out["policy_version"] == 1 and len(steps) == len(table) == 12
    picks = [s["candidates"][s["pick"]]["track_id"] for s in steps]
    assert len(set(picks)) == 12 and start not in picks
    assert steps[0]["from"]["track_id"] == start
    for prev, step in zip(picks, steps[1:], strict=False):
        assert step["from"]["track_id"] == prev  # the pick becomes the current track
    for step, row in zip(steps, table, strict=True):
        probs = [c["probability"] for c in step["candidates"]]
        assert len(probs) == 4 and sum(probs) == pytest.approx(1.0, abs=1e-5)
        assert step["pick"] == probs.index(max(probs))  # argmax unless sample=true
        assert row["from"] == step["from"]["track_id"] and row["pick"] == step["pick"]
        assert row["value"] == pytest.approx(step["value"], abs=5e-4)
        assert [c[0] for c in row["candidates"]] == [c["track_id"] for c in step["candidates"]]
        assert [c[1] for c in row["candidates"]] == pytest.approx([100 * p for p in probs], abs=0.051)
        assert {"artist", "name"} <= set(step["candidates"][0])  # the synthetic catalog has names


def test_sampling_is_seeded_and_still_distinct(pristine, capsys):
    argv = (f"run_dir={pristine}", "track_id=syn00000007", "length=15", "sample=true")
    a = recommend_json(capsys, *argv, "seed=3")
    assert a == recommend_json(capsys, *argv, "seed=3")
    picks = [s["candidates"][s["pick"]]["track_id"] for s in a["steps"]]
    assert len(set(picks)) == 15


def test_query_by_artist_and_title(pristine, capsys):
    tracks = load_run(pristine).world.tracks
    labels = tracks["artist"] + " - " + tracks["name"]
    row = int(labels.map(labels.value_counts()).eq(1).to_numpy().argmax())  # a unique "artist - title"
    out = recommend_json(capsys, f"run_dir={pristine}", f"query={labels[row].upper()}", "length=3")
    assert out["steps"][0]["from"]["track_id"] == tracks["track_id"][row]
    assert len(out["steps"]) == 3


def test_find_track_names_the_closest_matches(pristine):
    world = load_run(pristine).world
    assert find_track(world, track_id="syn00000042") == 42
    with pytest.raises(UnknownTrackError, match=r"closest: syn00000042"):
        find_track(world, track_id="syn0000042")  # a digit lost
    duplicated = (world.tracks["artist"] + " - " + world.tracks["name"]).value_counts().index[0]
    with pytest.raises(UnknownTrackError, match=r"matches \d+ tracks"):
        find_track(world, query=duplicated)  # ambiguous: say so rather than guess


def test_unknown_track_id_or_query_fails_cleanly(pristine):
    """Exit 2 and ONE line on stderr, with the closest matches (separate processes, as a user runs it)."""
    cases = {"track_id=syn0000042": "syn00000042", "query=Artist 999 - Nothing Like It": "Artist "}
    script = str(ROOT / "scripts" / "recommend.py")
    procs = {arg: subprocess.Popen([sys.executable, script, f"run_dir={pristine}", arg], cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for arg in cases}  # both at once
    for arg, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, err
        assert out == "" and len(err.strip().splitlines()) == 1, err
        assert err.startswith("error: ") and cases[arg] in err.split("closest: ")[1]


@pytest.mark.parametrize("arg, shown", [
    ("track_id=00123", "track_id='00123'"),  # leading zeros kept
    ("track_id=1e5", "track_id='1e5'"),  # not the number 100000.0
    ("track_id=true", "track_id='true'"),
    ("query='Artist 983, Live [2020] \\'Remix\\''", "query=\"Artist 983, Live [2020] 'Remix'\""),
    ('query="Don\'t Stop, Believin"', "query=\"Don't Stop, Believin\""),
])
def test_values_arrive_verbatim(pristine, capsys, arg, shown):
    """Track ids and queries as typed: numbers, booleans, commas, brackets and quotes (Hydra's quoting)."""
    assert run_cli("recommend", f"run_dir={pristine}", arg) == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert line.startswith(f"error: {shown}: "), line


def test_feedback_store_reads_and_upgrades_the_training_log(run_dir):
    path = run_dir / "feedback.csv"
    original = read_feedback(path)
    store = FeedbackStore(path)
    logged = store.read()
    assert list(logged.columns) == list(COLUMNS) and len(logged) == len(original)
    pd.testing.assert_frame_equal(logged[original.columns[:6]], original[original.columns[:6]])
    assert (logged["served_at"] == "").all() and (logged["policy_version"] == "").all()
    store.append(original.head(1).assign(user_id="someone", policy_version="v1"))
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)  # header upgraded in place
    again = store.read()
    assert len(again) == len(original) + 1 and again["served_at"].iloc[-1] != ""
    pd.testing.assert_frame_equal(again.head(len(original)), logged)


def test_finetune_writes_a_new_version_and_keeps_the_old_one(run_dir, capsys, tmp_path):
    argv = (f"run_dir={run_dir}", "track_id=syn00000007", "length=6")
    before = recommend_json(capsys, *argv)
    old_sha = sha(run_dir / "ppo.zip")
    served = load_run(run_dir).world.meta["served_listener"]
    new = pd.DataFrame({"user_id": [f"listener-{served}"] * 3 + ["newcomer"],
                        "session_id": ["s1", "s1", "s1", "s2"], "position": [1, 2, 3, 1],
                        "track_id": ["syn00000001", "syn00000002", "syn00000003", "syn00000004"],
                        "percentage_listened": [1.0, 0.2, 0.9, 0.5], "liked": [1, 0, 1, 0]})
    new_path = tmp_path / "new.csv"
    new.to_csv(new_path, index=False)
    n_logged = len(read_feedback(run_dir / "feedback.csv"))

    assert run_cli("finetune", f"run_dir={run_dir}", f"feedback={new_path}", "timesteps=1024") == 0
    assert "version 2" in capsys.readouterr().out
    assert model_versions(run_dir) == [1, 2] and sha(run_dir / "ppo.zip") == old_sha
    assert load_model(run_dir / "ppo.zip").num_timesteps == 8192  # the old model still loads, as trained
    assert load_model(run_dir / "ppo-v2.zip").num_timesteps > 8192  # PPO continued from it
    assert (run_dir / "world" / "reward_table-v2.npy").is_file()
    assert list((run_dir / "tb" / "finetune-v2").glob("events.out.tfevents.*"))

    log = FeedbackStore(run_dir / "feedback.csv").read()
    assert len(log) == n_logged + 4
    tail = log.tail(4)
    assert (tail["policy_version"] == "v1").all()
    assert pd.to_datetime(tail["served_at"], format="ISO8601", utc=True).notna().all()

    latest, pinned = recommend_json(capsys, *argv), recommend_json(capsys, *argv, "policy_version=1")
    assert latest["policy_version"] == 2 and pinned == before

    assert run_cli("finetune", f"run_dir={run_dir}", f"feedback={new_path}", "timesteps=1024") == 0  # again
    assert "0 new feedback rows" in capsys.readouterr().out
    assert len(FeedbackStore(run_dir / "feedback.csv").read()) == n_logged + 4  # not logged twice
    assert model_versions(run_dir) == [1, 2, 3] and sha(run_dir / "ppo.zip") == old_sha


@pytest.mark.parametrize("served_at", ["yesterday", "2024-05-01T12:00:00"])  # not a time / no timezone
def test_finetune_input_needs_served_at_as_the_log_does(served_at):
    new = pd.DataFrame({"user_id": ["u", "u"], "served_at": ["2024-05-01T12:00:00Z", served_at]})
    with pytest.raises(FeedbackError, match=r"new\.csv.*served_at, row 2"):
        with_serving_columns(new, "new.csv", "v1")
    ok = with_serving_columns(new.iloc[:1].assign(policy_version=""), "new.csv", "v3")
    assert ok["policy_version"].tolist() == ["v3"]


def test_cold_start_with_a_simulated_listener(run_dir, capsys):
    n_probes = len(probe_tracks(load_run(run_dir)))
    n_logged = len(FeedbackStore(run_dir / "feedback.csv").read())
    out = recommend_json(capsys, f"run_dir={run_dir}", "cold_start=true", "listener_seed=5", "length=8",
                         "finetune_timesteps=512")
    assert out["policy_version"] == 2 and model_versions(run_dir) == [1, 2]
    assert out["cold_start"] == {"user_id": "sim-5", "answers": n_probes, "finetuned_on": n_probes}
    picks = {s["candidates"][s["pick"]]["track_id"] for s in out["steps"]}
    assert len(picks) == 8
    log = FeedbackStore(run_dir / "feedback.csv").read()
    probes = log.iloc[n_logged:]
    assert len(probes) == n_probes and (probes["user_id"] == "sim-5").all()
    assert (probes["policy_version"] == "v1").all() and (probes["served_at"] != "").all()
    assert probes["position"].tolist() == list(range(1, n_probes + 1))


def test_cold_start_answered_on_stdin(run_dir):
    """A person's answers piped in: an invalid answer is asked again, q stops early."""
    n_logged = len(FeedbackStore(run_dir / "feedback.csv").read())
    answers = "80%\ny\nabc\n0.3\nmaybe\nn\nq\n"
    cmd = [sys.executable, str(ROOT / "scripts" / "recommend.py"), f"run_dir={run_dir}", "cold_start=true",
           "user_id=tester", "length=5", "format=json", "finetune_timesteps=256"]
    proc = subprocess.run(cmd, cwd=ROOT, input=answers, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "'abc'? give how much you listened" in proc.stderr and "'maybe'? answer y or n" in proc.stderr
    assert "[3/" in proc.stderr and "[4/" not in proc.stderr  # stopped at the third probe
    out = json.loads(proc.stdout)
    assert out["policy_version"] == 2 and out["cold_start"]["answers"] == 2 and len(out["steps"]) == 5
    log = FeedbackStore(run_dir / "feedback.csv").read().iloc[n_logged:]
    assert log["user_id"].tolist() == ["tester", "tester"]
    assert log["percentage_listened"].tolist() == [0.8, 0.3] and log["liked"].tolist() == [1, 0]
    first_probe = load_run(run_dir, 1).world.track_ids()[probe_tracks(load_run(run_dir, 1))[0]]
    assert log["track_id"].iloc[0] == first_probe
    assert out["steps"][0]["from"]["track_id"] == first_probe  # the start: the probe liked best
