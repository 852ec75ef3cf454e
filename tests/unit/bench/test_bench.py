"""music-rl bench (scripts/bench.py) in quick mode: bench.json's structure, the Markdown table, targets, a failed
stage and option errors.

Benchmarks are not tests: nothing here asserts a timing, only that the figures are there and consistent.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from music_rl.bench.build import task_neighbours
from music_rl.bench.report import Target, make_row
from music_rl.bench.runner import Runner, StageFailed
from music_rl.bench.sizes import QUICK, SWEEP

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "bench.py"
REPEATS = 2


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench")
    cmd = [sys.executable, str(SCRIPT), "quick=true", "only=[a,c,e,f]", f"repeats={REPEATS}",
           f"out={out / 'bench.json'}", f"workdir={out / 'work'}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads((out / "bench.json").read_text()), proc.stdout


@pytest.mark.slow
def test_report_describes_the_machine_and_the_run(quick):
    report, _ = quick
    m = report["machine"]
    assert m["cores"] >= 1 and m["memory_gb"] > 0 and m["cpu_model"]
    assert len(m["load_average_start"]) == 3 and len(m["load_average_end"]) == 3
    assert report["quick"] is True and report["repeats"] == REPEATS
    assert report["only"] == ["a", "c", "e", "f"]
    assert report["sizes"]["table_tracks"] == [2000]
    assert report["format_version"] == 2 and report["command"][:2] == ["music-rl", "bench"]


@pytest.mark.slow
def test_every_row_is_consistent(quick):
    report, _ = quick
    rows = report["results"]
    assert not [r for r in rows if "error" in r]
    assert {r["id"] for r in rows} == {"a", "c", "e", "f"}
    for r in rows:
        assert r["min"] <= r["median"] <= r["max"], r["what"]
        assert r["unit"] and r["what"]
        assert r["met"] in (True, False, None)
        assert (r["met"] is None) == (r["target"] == "")
        if r["id"] != "a":  # every other stage ran in its own subprocess: its peak memory is measured
            assert r["peak_rss_mb"] > 10


@pytest.mark.slow
def test_each_measurement_has_its_rows(quick):
    rows = quick[0]["results"]
    by_id = {mid: [r for r in rows if r["id"] == mid] for mid in "acef"}
    # (a): 3 observation modes x (dummy, vectorized) (quick: n_envs = 2 only); ratios of two rates
    assert len(by_id["a"]) == 6
    assert {r["params"]["vec_env"] for r in by_id["a"]} == {"dummy", "vectorized"}
    for r in by_id["a"]:
        assert len(r["params"]["real"]) == len(r["params"]["null"]) == len(r["values"]) == REPEATS
        assert r["median"] > 0
    # (c): one row per latent width, the target on the largest size at d = 5
    assert [r["params"]["latent_dim"] for r in by_id["c"]] == [2, 5]
    assert [r["target"] != "" for r in by_id["c"]] == [False, True]
    # (f): p50 <= p99 for each forward path
    paths = {r["params"]["path"] for r in by_id["f"] if "path" in r["params"]}
    assert paths == {"policies.candidate_probabilities", "lean actor forward"}
    for path in paths:
        p50, p99 = (
            next(r for r in by_id["f"] if r["params"].get("path") == path and r["what"].endswith(q))
            for q in ("p50", "p99")
        )
        assert p50["median"] <= p99["median"]
    assert len(by_id["e"]) == 1 and by_id["e"][0]["median"] > 0


@pytest.mark.slow
def test_markdown_table_has_one_line_per_row(quick):
    report, stdout = quick
    table = [line for line in stdout.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| # | measurement | median")
    assert len(table) == 1 + len(report["results"])


def test_targets_and_verdicts():
    time_ok = Target("median", "<=", 10.0, "s")
    memory = Target("peak_rss_mb", "<=", 1024, "MB")
    row = make_row("c", "x", "s", [3.0, 1.0, 2.0], [time_ok, memory], peak_rss_mb=2000.0)
    assert (row["median"], row["min"], row["max"]) == (2.0, 1.0, 3.0)
    assert row["met"] is False and row["target"] == "≤ 10 s; peak ≤ 1024 MB"
    assert make_row("a", "x", "×", [0.96], [Target("median", ">=", 0.95, "")])["met"] is True
    assert make_row("h", "x", "s", [1.0], [memory])["met"] is None  # memory not measured


def test_a_failing_stage_names_its_log(tmp_path):
    runner = Runner(tmp_path, QUICK, repeats=1, timeout_s=60)
    with pytest.raises(StageFailed, match=r"task_neighbours exited 1; see .*-task_neighbours\.log"):
        runner.child(task_neighbours, latents=str(tmp_path / "missing.npy"), k=4, repeats=1)


@pytest.mark.parametrize("args, message", [
    (["only=[a,z]"], "only=[a,z]: unknown measurement 'z'; choose from a, b, c, d, e, f, g, h, i"),
    (["repeats=0"], "repeats=0: must be an integer >= 1"),
    (["only=a"], "only: "),
])
def test_bad_options_exit_with_one_line(args, message):
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert message in proc.stderr


def test_sweep_measures_what_make_sweep_runs():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile[makefile.index("\nsweep:") :].split("\n\n")[0]
    source = re.search(r"^SWEEP_SOURCE \?= (\S+)", makefile, re.MULTILINE)
    overrides = set(re.findall(r"\b\w+\.\w+=\S+", recipe)) | ({source.group(1)} if source else set())
    assert set(SWEEP) == overrides
