"""music-rl tables: results files collected from (fake) run folders, sweeps and bench.json, rendered into
marked blocks of documents; idempotence, check mode, and one-line errors for bad inputs. Nothing trains."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from music_rl.bench.report import COLUMNS, Target, make_row
from music_rl.reports.tables.render import cell, results_table
from music_rl.reports.tables.results import Column, excerpt, lookup, resolve

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "tables.py"
SEED_COLUMNS = [
    {"header": "seed", "key": "config.seed"},
    {"header": "observation", "key": "overrides.env.observation"},
    {"header": "normalized_score", "key": "metrics.normalized_score", "format": ".2f"},
    {"header": "ppo mean_reward (95% CI)", "key": "metrics.policies.ppo.mean_reward", "format": ".3f",
     "ci": "metrics.policies.ppo.mean_reward_ci95"},
]


def tables(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def fake_run(folder: Path, seed: int, score: float, overrides: list[str]) -> Path:
    """A finished run folder as far as tables reads it: metrics.json, .hydra/, run_info.json."""
    (folder / ".hydra").mkdir(parents=True)
    metrics = {"normalized_score": score, "normalized_score_realised": float("nan"),
               "policies": {"ppo": {"mean_reward": 1.2345, "mean_reward_ci95": 0.1234, "like_rate": 0.1},
                            "random": {"mean_reward": 0.5, "mean_reward_ci95": 0.1}}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "ppo": {"n_envs": 8}}))
    (folder / "run_info.json").write_text(json.dumps({"git_commit": "abcdef0123456789", "platform": "Linux-x86_64",
                                                      "versions": {"python": "3.11.7", "torch": "2.3.0"}}))
    return folder


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A working folder with a README holding one marker, a spec, a run folder and a two-job sweep."""
    fake_run(tmp_path / "runs" / "a", 1, 1.344, ["seed=1", "env.observation=history"])
    sweep = tmp_path / "sweeps" / "s"
    for num, seed in ((10, 3), (2, 2)):  # job 2 comes before job 10
        fake_run(sweep / f"{num}_seed-{seed}", seed, 0.5 + seed, [f"seed={seed}"])
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": ["seed=2,3"]}}}))
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({"columns": SEED_COLUMNS}))
    (tmp_path / "README.md").write_text("# Title\n\nBefore.\n\n<!-- results:seeds -->\nold text\n"
                                        "<!-- /results:seeds -->\n\nAfter.\n")
    (tmp_path / "BENCHMARKS.md").write_text("# Benchmarks\n")
    return tmp_path


def collect_seeds(repo: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = tables(repo, "collect", "name=seeds", "sources=[runs/a,sweeps/s]", *extra)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_collect_excerpts_runs_and_sweep_jobs(repo):
    collect_seeds(repo, "spec=spec.yaml")
    saved = json.loads((repo / "results" / "seeds.json").read_text())
    assert saved["table"] == "seeds" and saved["columns"] == SEED_COLUMNS
    assert [r["source"] for r in saved["rows"]] == ["runs/a", "sweeps/s/2_seed-2", "sweeps/s/10_seed-3"]
    first = saved["rows"][0]
    assert first["overrides"] == {"env.observation": "history"}  # only what the columns read
    assert first["metrics"] == {"normalized_score": 1.344,
                                "policies": {"ppo": {"mean_reward": 1.2345, "mean_reward_ci95": 0.1234}}}
    assert first["config"] == {"seed": 1}
    produced = saved["produced"]
    assert produced["commands"] == ["music-rl train seed=1 env.observation=history", "music-rl train -m seed=2,3"]
    assert produced["code"] == ["abcdef0123456789"] and produced["machines"] == ["Linux-x86_64; Python 3.11.7, "
                                                                                 "torch 2.3.0"]
    assert produced["when"].endswith("UTC")


def test_recollect_reuses_the_columns_and_refreshes_the_figures(repo):
    collect_seeds(repo, "spec=spec.yaml")
    metrics = json.loads((repo / "runs" / "a" / "metrics.json").read_text())
    metrics["normalized_score"] = 0.25
    (repo / "runs" / "a" / "metrics.json").write_text(json.dumps(metrics))
    (repo / "spec.yaml").unlink()
    collect_seeds(repo)
    saved = json.loads((repo / "results" / "seeds.json").read_text())
    assert saved["columns"] == SEED_COLUMNS
    assert saved["rows"][0]["metrics"]["normalized_score"] == 0.25


def test_render_is_idempotent_and_leaves_the_rest_alone(repo):
    collect_seeds(repo, "spec=spec.yaml")
    proc = tables(repo)
    assert proc.returncode == 0 and proc.stdout.strip() == "updated README.md:5 results:seeds", proc.stderr
    text = (repo / "README.md").read_text()
    assert text.startswith("# Title\n\nBefore.\n\n<!-- results:seeds -->\n| seed | observation |")
    assert text.endswith("<!-- /results:seeds -->\n\nAfter.\n") and "old text" not in text
    assert "| 1 | history | 1.34 | 1.234 ± 0.123 |" in text
    assert "| 2 | — | 2.50 | 1.234 ± 0.123 |" in text  # a key a row lacks: a dash
    assert "`music-rl train -m seed=2,3`" in text and "code abcdef0" in text
    again = tables(repo)
    assert again.returncode == 0 and again.stdout.startswith("no block changed")
    assert (repo / "README.md").read_text() == text
    assert tables(repo, "check=true").returncode == 0


def test_check_names_a_hand_edited_block(repo):
    collect_seeds(repo, "spec=spec.yaml")
    tables(repo)
    edited = (repo / "README.md").read_text().replace("| 1.34 |", "| 1.40 |")
    (repo / "README.md").write_text(edited)
    line = one_error_line(tables(repo, "check=true"))
    assert "stale" in line and "README.md:5 results:seeds" in line
    assert (repo / "README.md").read_text() == edited  # check writes nothing


def test_blocks_are_rendered_wherever_they_are_in_the_docs(repo):
    """The default documents take every page below docs/; an indented marker (an example) is text."""
    collect_seeds(repo, "spec=spec.yaml")
    (repo / "README.md").write_text("# Title\n\n1. an example:\n\n   <!-- results:nope -->\n"
                                    "   <!-- /results:nope -->\n")
    page = repo / "docs" / "results" / "seeds.md"
    page.parent.mkdir(parents=True)
    page.write_text("# Seeds\n\n<!-- results:seeds -->\n<!-- /results:seeds -->\n")
    proc = tables(repo)
    assert proc.returncode == 0 and proc.stdout.strip() == "updated docs/results/seeds.md:3 results:seeds", proc.stderr
    assert "| 1 | history | 1.34 | 1.234 ± 0.123 |" in page.read_text()
    assert "<!-- results:nope -->" in (repo / "README.md").read_text()
    assert tables(repo, "check=true").returncode == 0
    page.write_text(page.read_text().replace("| 1.34 |", "| 1.40 |"))
    assert "docs/results/seeds.md:3 results:seeds" in one_error_line(tables(repo, "check=true"))


def test_collect_from_a_compare_csv(repo):
    sweep = repo / "sweeps" / "s"
    (sweep / "compare.csv").write_text("vae.latent_dim,n_seeds,normalized_score,normalized_score_ci95\n"
                                       "5,2,1.2345,0.25\n2,1,0.5,nan\n")
    spec = {"columns": [{"header": "latent_dim", "key": "compare.vae.latent_dim"},
                        {"header": "score", "key": "compare.normalized_score", "format": ".2f",
                         "ci": "compare.normalized_score_ci95"}]}
    (repo / "compare.yaml").write_text(yaml.safe_dump(spec))
    (repo / "README.md").write_text("<!-- results:sweep -->\n<!-- /results:sweep -->\n")
    proc = tables(repo, "collect", "name=sweep", "sources=[sweeps/s/compare.csv]", "spec=compare.yaml")
    assert proc.returncode == 0, proc.stderr
    saved = json.loads((repo / "results" / "sweep.json").read_text())
    assert saved["rows"][1] == {"source": "sweeps/s/compare.csv:3",
                                "compare": {"vae.latent_dim": 2, "normalized_score": 0.5,
                                            "normalized_score_ci95": None}}
    assert saved["produced"]["commands"] == ["music-rl train -m seed=2,3", "music-rl compare sweeps/s"]
    assert tables(repo).returncode == 0
    text = (repo / "README.md").read_text()
    assert "| 5 | 1.23 ± 0.25 |\n| 2 | 0.50 |\n" in text


def fake_bench(path: Path) -> dict:
    rows = [make_row("c", "neighbour table, N=2,000, d=5", "s", [0.011, 0.0105, 0.012],
                     [Target("median", "<=", 10.0, "s")], peak_rss_mb=74.46, detail="CPU 0.01 s"),
            make_row("a", "PPO steps/s", "×", [0.93], [Target("median", ">=", 0.95, "")], detail="x | y"),
            {"id": "g", "what": "default make train", "error": "train exited 2"}]
    report = {"format_version": 2, "created": "2026-01-02T03:04:05+0000", "command": ["music-rl", "bench"],
              "machine": {"cpu_model": "Test CPU", "cores": 2, "memory_gb": 8.0, "platform": "Linux",
                          "python": "3.11.7", "torch": "2.3.0", "git_commit": "0123456789abcdef"},
              "results": rows}
    path.write_text(json.dumps(report))
    return report


def test_a_bench_table_is_the_table_bench_prints(repo):
    report = fake_bench(repo / "bench.json")
    (repo / "bench_spec.yaml").write_text(yaml.safe_dump({"columns": [c.to_dict() for c in COLUMNS]},
                                                         allow_unicode=True))
    assert tables(repo, "collect", "name=bench", "sources=[bench.json]", "spec=bench_spec.yaml").returncode == 0
    (repo / "BENCHMARKS.md").write_text("<!-- results:bench -->\n<!-- /results:bench -->\n")
    assert tables(repo, "collect", "name=seeds", "sources=[runs/a]", "spec=spec.yaml").returncode == 0
    assert tables(repo).returncode == 0
    text = (repo / "BENCHMARKS.md").read_text()
    assert results_table(COLUMNS, report["results"]) in text
    assert "| c | neighbour table, N=2,000, d=5 | 0.011 s | 0.0105–0.012 | 3 | 74.5 | ≤ 10 s | yes |" in text
    assert "x \\| y" in text  # a pipe inside a cell is escaped
    assert "| g | default make train | — | — | — | — | — |  | — | — |" in text  # a failed measurement
    assert "`music-rl bench`; code 0123456; 2026-01-02 03:04 UTC; Test CPU, 2 cores, 8.0 GB" in text


def test_the_repository_documents_match_their_results_files():
    proc = subprocess.run([sys.executable, str(SCRIPT), "check=true"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("setup, args, message", [
    (lambda r: (r / "README.md").write_text("<!-- results:nope -->\n<!-- /results:nope -->\n"), [],
     "README.md:1: marker results:nope has no results/nope.json"),
    (lambda r: (r / "README.md").write_text("no marker\n"), [], "results/seeds.json: no <!-- results:seeds --> marker"),
    (lambda r: (r / "README.md").write_text("x\n<!-- results:seeds -->\n"), [],
     "README.md:2: <!-- results:seeds --> has no closing <!-- /results:seeds -->"),
    (lambda r: (r / "results" / "seeds.json").write_text("{not json"), [], "results/seeds.json: not JSON"),
    (lambda r: (r / "spec.yaml").write_text("columns: [{header: x, key: config.seed, format: '%d'}]"),
     ["collect", "name=seeds", "sources=[runs/a]", "spec=spec.yaml"], "format '%d': not a Python format spec"),
    (lambda r: (r / "spec.yaml").write_text("columns: [{header: x, key: metrics.typo}]"),
     ["collect", "name=seeds", "sources=[runs/a]", "spec=spec.yaml"],
     "column 'x': 'metrics.typo' is in none of the 1 source rows"),
    (lambda r: None, ["collect", "name=seeds", "sources=[runs/missing]"], "runs/missing: not a run folder"),
    (lambda r: None, ["collect", "name=other", "sources=[runs/a]"], "results/other.json does not exist yet"),
    (lambda r: (r / "bench.json").write_text('{"format_version": 9}'),
     ["collect", "name=seeds", "sources=[bench.json]"], "bench.json: not a bench.json of format 1 or 2"),
    (lambda r: None, ["collect", "name=seeds"], "sources: give the run folders"),
    (lambda r: None, ["check=yes please"], "check: Value 'yes please' is not a valid bool"),
    (lambda r: None, ["documents=[README.md,NOTES.md]"], "documents: NOTES.md: no such file"),
])
def test_bad_inputs_are_one_line_and_exit_2(repo, setup, args, message):
    collect_seeds(repo, "spec=spec.yaml")
    tables(repo)
    setup(repo)
    assert message in one_error_line(tables(repo, *args))


def test_key_paths_match_keys_holding_dots():
    doc = {"overrides": {"env.observation": "history", "env": "x"}, "a": {"b": {"c": 1}}}
    assert resolve(doc, "overrides.env.observation") == ["overrides", "env.observation"]
    assert lookup(doc, "a.b.c") == 1 and lookup(doc, "a.b.d") is None and lookup(doc, "a.b.c.d") is None
    assert excerpt(doc, ["a.b.c", "overrides.env.observation", "missing"]) == {
        "a": {"b": {"c": 1}}, "overrides": {"env.observation": "history"}}
    assert excerpt({"x": float("nan"), "y": [1.0, math.inf]}, ["x", "y"]) == {"x": None, "y": [1.0, None]}


@pytest.mark.parametrize("column, row, text", [
    (Column("h", "v", "sig3", unit="u"), {"v": 0.00614, "u": "s"}, "6.14e-03 s"),
    (Column("h", "v", "sig3", to="w"), {"v": 743.0, "w": 1234.5}, "743–1234"),
    (Column("h", "v", ".3f", ci="c"), {"v": 1.23456, "c": 0.0432}, "1.235 ± 0.043"),
    (Column("h", "v", ".3f", ci="c"), {"v": 1.23456, "c": None}, "1.235"),
    (Column("h", "v", "verdict"), {"v": False}, "**no**"),
    (Column("h", "v", "verdict"), {}, ""),
    (Column("h", "v", "count"), {"v": [1, 2, 3]}, "3"),
    (Column("h", "v"), {"v": 1.1}, "1.1"),
    (Column("h", "v", ".2f"), {}, "—"),
])
def test_cell_formats(column, row, text):
    assert cell(row, column) == text



def test_markdown_tables_are_laid_out_in_one_place():
    """music_rl.reports.markdown lays out every table (run, sweep, results, bench, simulate): no other module of the
    package writes a row or a header line by hand."""
    from music_rl.reports.markdown import markdown_header, markdown_row, markdown_table

    assert markdown_table(["a", "b"], [["1", "2"], ["3", "4"]]) == "| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |"
    assert markdown_header(["a"]) + "\n" + markdown_row(["1"]) == markdown_table(["a"], [["1"]])
    hand_written = [f"{path.relative_to(ROOT)}:{number}" for path in sorted((ROOT / "music_rl").rglob("*.py"))
                    if path.name != "markdown.py"
                    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                    if "|---" in line or '"| ' in line]
    assert hand_written == []


def test_a_summary_column_adds_a_row_of_its_statistic_over_the_rows():
    from music_rl.core.errors import ResultsError

    columns = [Column("seed", "seed"), Column("tau", "tau", ".2f", summary="mean"),
               Column("ratio", "ratio", ".1f", summary="median")]
    rows = [{"seed": 1, "tau": 0.5, "ratio": 1.0}, {"seed": 2, "tau": 0.7, "ratio": None},
            {"seed": 3, "tau": None, "ratio": 3.0}, {"seed": 4, "tau": 0.9, "ratio": 9.0}]
    last = results_table(columns, rows).strip().splitlines()[-1]
    assert last == "| **mean / median of 4** | **0.70** | **3.0** |"  # missing values left out
    with pytest.raises(ResultsError, match="summary 'sum'"):
        Column.from_dict({"header": "x", "key": "x", "summary": "sum"}, "t.json")
