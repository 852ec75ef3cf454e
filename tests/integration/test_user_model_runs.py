"""``music-rl train listeners.model=learnt``: a run on an MSSD log and its track file, and the inputs it refuses
in one line (exit 2, nothing written or overwritten)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import error_line, train_here, train_in_process
from mssd import mssd_files

from music_rl.core.errors import RunFolderError

pytestmark = pytest.mark.slow  # trains (a tiny budget, still seconds per test)

SMALL = ("env.session_length=8", "reward.n_clusters=8", "eval.planner.n_episodes=4", "listeners.learnt.max_epochs=5")


@pytest.fixture(scope="module")
def mssd_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mssd_learnt")
    tracks, log = mssd_files(folder, n_sessions=60, unknown=4, no_flag=6)
    out = folder / "run"
    said = train_in_process(out, "data=csv", f"data.path={tracks}", f"feedback.path={log}", "listeners.model=learnt",
                            f"listeners.fit_log={log}", *SMALL)
    (out / "stdout.txt").write_text(said)
    return out


def test_an_mssd_log_fits_the_listener_the_run_trains_against(mssd_run: Path) -> None:
    fidelity = json.loads((mssd_run / "listener" / "fidelity.json").read_text())
    for model in ("learnt", "rates", "previous"):
        assert set(fidelity[model]) == {"log_likelihood", "skip_accuracy"}
        assert fidelity[model]["log_likelihood"] < 0 and 0 <= fidelity[model]["skip_accuracy"] <= 1
    assert fidelity["fit"]["split_by"] == "session" and fidelity["fit"]["sessions"]["held_out"] == 12
    text = (mssd_run / "stdout.txt").read_text()
    assert "4 rows whose track is not in the catalog dropped" in text and "no user ids" in text
    metrics = json.loads((mssd_run / "metrics.json").read_text())
    assert metrics["policies"]["ppo"]["mean_length"] > 0
    meta = json.loads((mssd_run / "world" / "meta.json").read_text())
    assert meta["listener_config"]["model"] == "learnt"


def test_a_model_saved_for_another_catalog_is_refused(mssd_run: Path, tmp_path: Path) -> None:
    from music_rl.training.run_world import load_run_world

    world = load_run_world(mssd_run)  # its own model loads
    assert type(world.listeners()).__name__ == "LearntPopulation"
    copy = tmp_path / "copy"
    shutil.copytree(mssd_run, copy)
    tracks = pd.read_csv(copy / "world" / "tracks.csv", dtype={"track_id": str})
    tracks.loc[0, "track_id"] = "renamed"
    tracks.to_csv(copy / "world" / "tracks.csv", index=False)
    model = (copy / "listener" / "model.pt").read_bytes()
    with pytest.raises(RunFolderError, match=r"listener/model\.pt: fitted on another catalog"):
        load_run_world(copy)
    assert (copy / "listener" / "model.pt").read_bytes() == model


def test_the_inputs_a_learnt_listener_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tracks, log = mssd_files(tmp_path, n_sessions=9)
    base = ("data=csv", f"data.path={tracks}", "listeners.model=learnt", *SMALL)
    line = error_line(train_here(capsys, tmp_path / "a", *base))
    assert line.startswith("error: listeners.fit_log=None: listeners.model=learnt is fitted on a session log")
    line = error_line(train_here(capsys, tmp_path / "b", "data=csv", f"data.path={tracks}", f"listeners.fit_log={log}"))
    assert "is read by listeners.model=learnt only" in line
    line = error_line(train_here(capsys, tmp_path / "c", *base, f"listeners.fit_log={tmp_path / 'missing.csv'}"))
    assert "listeners.fit_log=" in line and "no such file" in line
    line = error_line(train_here(capsys, tmp_path / "d", *base, f"listeners.fit_log={log}"))
    assert line == f"error: {log}: 9 session(s): a listener is fitted on at least 10 (some fit it, some stop the " \
                   "fitting early, some measure its fidelity)"
    assert not (tmp_path / "d" / "vae.pt").exists() and not (tmp_path / "d" / "listener").exists()
    (tmp_path / "other").mkdir()
    other, _ = mssd_files(tmp_path / "other", seed=7)
    line = error_line(train_here(capsys, tmp_path / "e", "data=csv", f"data.path={other}", "listeners.model=learnt",
                                 f"listeners.fit_log={log}", *SMALL))
    assert "joins no row of the catalog" in line
