"""Lines that name what is really wrong: a FIFO or a device given as a path, a wrong delimiter or Excel's ``sep=``
line in a catalog, an output error about a hidden temporary file, a resume refused for its budget and its config
at once, a key given twice on the command line, a garbled ``vae.pt``; and the project's packaging metadata."""

from __future__ import annotations

import errno
import json
import os
import random
import stat
import tempfile
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, run_cli

from music_rl.cli.app import repeated_key
from music_rl.core.atomic import atomic_path, write_text_atomic
from music_rl.core.errors import CatalogError, OutputError, RunFolderError, not_a, os_error_line, path_kind
from music_rl.data.catalog import DataConfig
from music_rl.data.catalog_csv import load_csv
from music_rl.learners.models import load_encoder
from music_rl.runs.run_folder import check_output, claim

KAGGLE = ROOT / "tests" / "fixtures" / "catalogs" / "kaggle_tracks_features.csv"


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


def last_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The one non-empty stderr line of a command that failed, which must be an ``error:`` line."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


# ------------------------------------------------------------------------------------------- what a path is

def test_a_path_is_named_by_its_kind(tmp_path, fifo):
    (tmp_path / "file").write_text("x")
    assert path_kind(tmp_path / "file") == "a regular file"
    assert path_kind(tmp_path) == "a directory"
    assert path_kind(fifo) == "a FIFO"
    assert path_kind("/dev/null") == "a character device"
    assert path_kind(tmp_path / "nowhere") == "missing"
    assert not_a(fifo, "regular file") == "a FIFO, not a regular file"
    assert not_a("/dev/zero", "folder") == "a character device, not a folder"
    assert not_a(tmp_path / "nowhere", "regular file") == "no such file"


@pytest.mark.parametrize("key, value, kind", [
    ("data.path", "{fifo}", "a FIFO"), ("data.path", "/dev/null", "a character device"),
    ("feedback.path", "/dev/zero", "a character device"), ("data.path", "{tmp}", "a directory"),
])
def test_train_names_a_fifo_or_a_device_given_as_an_input(tmp_path, fifo, capsys, key, value, kind):
    path = value.format(fifo=fifo, tmp=tmp_path)
    extra = ["data.source=csv"] if key == "data.path" else []
    run = tmp_path / "run"
    assert run_cli("train", "+experiment=tiny", *extra, f"{key}={path}", f"hydra.run.dir={run}") == 2
    assert f"{key}='{path}': {kind}, not a regular file" in last_error(capsys)
    assert not run.exists()


def test_train_names_a_fifo_given_as_the_run_folder(tmp_path, fifo, capsys):
    assert run_cli("train", "+experiment=tiny", f"hydra.run.dir={fifo}") == 2
    assert f"hydra.run.dir='{fifo}': a FIFO, not a folder" in last_error(capsys)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_train_refuses_a_run_folder_inside_another_run(tmp_path, capsys):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("seed: 0\n")
    assert run_cli("train", "+experiment=tiny", f"hydra.run.dir={run / 'world'}") == 2
    assert f"inside the run folder {run}: a run needs a folder of its own, outside other runs" in last_error(capsys)
    assert sorted(p.name for p in run.iterdir()) == [".hydra"]


def test_a_catalog_read_directly_names_a_fifo(fifo):
    with pytest.raises(CatalogError, match="pipe: a FIFO, not a regular file"):
        load_csv(DataConfig(source="csv", path=str(fifo)), 5)


# ------------------------------------------------------------------------------------------- outputs

def test_an_output_onto_a_fifo_is_refused_and_the_fifo_stays(fifo):
    with pytest.raises(OutputError, match="pipe: a FIFO, not a regular file; give the path of a file"):
        write_text_atomic(fifo, "{}")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert sorted(p.name for p in fifo.parent.iterdir()) == ["pipe"]  # no temporary left


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_an_output_onto_a_character_device_is_refused_and_the_device_stays(tmp_path):
    device = tmp_path / "null"  # a copy of /dev/null: the rename would have replaced it with a file
    os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    with pytest.raises(OutputError, match="null: a character device, not a regular file"):
        write_text_atomic(device, "{}")
    assert stat.S_ISCHR(os.stat(device).st_mode)


def test_an_output_path_ending_with_a_slash_is_refused_not_written_as_a_file(tmp_path, capsys):
    with pytest.raises(OutputError, match="new/: ends with '/': a folder's path, not a file's"):
        write_text_atomic(f"{tmp_path / 'new'}/", "{}")
    (tmp_path / "run").mkdir()
    assert run_cli("evaluate", f"run_dir={tmp_path / 'run'}", f"out={tmp_path / 'new'}/") == 2
    assert "ends with '/': a folder's path, not a file's; give the path of the JSON file" in last_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_evaluate_names_a_fifo_given_as_out(tmp_path, fifo, capsys):
    run = tmp_path / "run"
    run.mkdir()
    assert run_cli("evaluate", f"run_dir={run}", f"out={fifo}") == 2
    assert f"out='{fifo}': a FIFO, not a regular file" in last_error(capsys)
    assert run_cli("evaluate", f"run_dir={fifo}") == 2
    assert f"run_dir='{fifo}': a FIFO, not a folder" in last_error(capsys)


def test_a_failed_write_names_the_target_not_the_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    with pytest.raises(OSError) as err, atomic_path(target) as tmp:
        tmp.write_text("x")
        raise OSError(errno.ENOSPC, "No space left on device")  # as a writer's full disk (no file name)
    assert err.value.filename == str(target) and err.value.errno == errno.ENOSPC
    line = os_error_line(err.value)
    assert line.startswith(f"{target}: No space left on device; the disk is full") and ".tmp" not in line
    assert list(tmp_path.iterdir()) == []


def test_a_temporary_that_cannot_be_made_names_the_target(tmp_path, monkeypatch):
    def refuse(prefix: str, suffix: str, dir: str) -> tuple[int, str]:  # noqa: A002  (mkstemp's own names)
        raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, f"{prefix}abcd1234{suffix}"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError) as err:
        write_text_atomic(tmp_path / "out.json", "{}")
    assert err.value.filename == str(tmp_path / "out.json")
    assert os_error_line(err.value).startswith(f"{tmp_path / 'out.json'}: Permission denied; choose a folder")


def test_a_failed_rename_names_the_target_alone(tmp_path, monkeypatch):
    def refuse(src: str, dst: str) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link", src, None, dst)

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError) as err:
        write_text_atomic(tmp_path / "out.json", "{}")
    assert err.value.filename == str(tmp_path / "out.json") and err.value.filename2 is None


def test_another_files_error_keeps_its_name(tmp_path):
    with pytest.raises(FileNotFoundError) as err, atomic_path(tmp_path / "out.json"):
        open(tmp_path / "input.csv")  # noqa: SIM115  (reading an input while writing: its own name)
    assert err.value.filename == str(tmp_path / "input.csv")


def test_a_long_target_name_gets_a_temporary_that_fits(tmp_path):
    target = tmp_path / ("é" * 120 + ".json")  # 245 bytes: the temporary's 14 more would exceed 255
    write_text_atomic(target, "{}")
    assert target.read_text() == "{}" and list(tmp_path.iterdir()) == [target]


def test_an_output_inside_a_run_folders_own_folders_says_so(tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("seed: 0\n")
    with pytest.raises(RunFolderError, match=r"x\.json: inside world/ of the run folder .*holds the run's own"):
        check_output(run / "world" / "x.json")


# ------------------------------------------------------------------------------------------- catalogs

def semicolon_catalog(tmp_path: Path, first_line: str = "") -> Path:
    """The Kaggle fixture written with ';' between fields (and decimal points), after ``first_line``."""
    text = KAGGLE.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if '"' not in line]  # rows with quoted commas left out
    path = tmp_path / "semicolon.csv"
    path.write_text(first_line + "\n".join(line.replace(",", ";") for line in lines) + "\n", encoding="utf-8")
    return path


def test_a_wrong_delimiter_names_the_one_used_and_the_one_that_works(tmp_path):
    path = semicolon_catalog(tmp_path)
    with pytest.raises(CatalogError) as err:
        load_csv(DataConfig(source="csv", path=str(path), delimiter=","), 5)
    line = str(err.value)
    assert "split with the delimiter ',' (data.delimiter), the header has 1 column" in line
    assert "the delimiter ';' gives every required column: leave data.delimiter null (it is sniffed" in line


def test_a_wrong_excel_sep_line_names_the_delimiter_that_works(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_text("sep=;\n" + KAGGLE.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(CatalogError) as err:
        load_csv(DataConfig(source="csv", path=str(path)), 5)
    line = str(err.value)
    assert "split with the delimiter ';' (Excel's line sep=), the header has 1 column" in line
    assert line.endswith("the delimiter ',' gives every required column: give \"data.delimiter=','\"")


def test_a_delimiter_that_works_nowhere_is_still_named(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(CatalogError, match=r"split with the delimiter ',' \(sniffed from the header\), the header "
                                           r"has 3 columns: a, b, c$"):
        load_csv(DataConfig(source="csv", path=str(path)), 5)


@pytest.mark.parametrize("sep", [",", ";"])
def test_excels_sep_line_is_honoured_and_counted(tmp_path, sep):
    path = semicolon_catalog(tmp_path, f"sep={sep}\r\n") if sep == ";" else tmp_path / "excel.csv"
    if sep == ",":
        path.write_text(f"sep={sep}\n" + KAGGLE.read_text(encoding="utf-8"), encoding="utf-8")
    catalog = load_csv(DataConfig(source="csv", path=str(path)), 5)
    assert len(catalog.raw) >= 15 and catalog.schema == "kaggle"
    assert catalog.problems[0] == (f"{path}: line 1 'sep={sep}' (Excel's delimiter line) skipped; the header is "
                                   f"line 2, split with the delimiter '{sep}' (Excel's line sep=)")
    with pytest.raises(CatalogError, match="Excel's delimiter line.*data.strict=true"):
        load_csv(DataConfig(source="csv", path=str(path), strict=True), 5)


def test_line_numbers_count_excels_sep_line(tmp_path):
    rows = KAGGLE.read_text(encoding="utf-8").splitlines()
    rows[1] = rows[1].replace(",136.812,", ",abc,")  # file line 2 without the sep line, 3 with it
    assert ",abc," in rows[1]
    path = tmp_path / "excel.csv"
    path.write_text("sep=,\n" + "\n".join(rows) + "\n", encoding="utf-8")
    problems = load_csv(DataConfig(source="csv", path=str(path)), 5).problems
    assert any("column 'tempo': 1 row with a non-numeric value dropped (line 3: 'abc')" in p for p in problems)


# ------------------------------------------------------------------------------------------- resume

def fake_run(tmp_path: Path, config: dict) -> Path:
    """A run folder as an interrupted run leaves it: its saved config and a checkpoint of 1024 steps."""
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "ppo_1024_steps.zip").write_bytes(b"")
    return run


def test_resume_names_the_changed_keys_and_the_budget_together(tmp_path):
    saved = {"algo": "ppo", "seed": 0, "vae": {"latent_dim": 5}, "ppo": {"total_timesteps": 1024}}
    run = fake_run(tmp_path, saved)
    asked = {**saved, "vae": {"latent_dim": 3}, "ppo": {"total_timesteps": 10}}
    with pytest.raises(RunFolderError) as err:
        claim(run, asked, resume=True, overwrite=False)
    line = str(err.value)
    assert "resume=true with another config: vae.latent_dim: 5 -> 3" in line
    assert "and with ppo.total_timesteps=10, below the 1024 steps already trained" in line


def test_resume_accepts_keys_added_since_the_run_started(tmp_path):
    saved = {"algo": "ppo", "seed": 0, "ppo": {"total_timesteps": 1024}}
    run = fake_run(tmp_path, saved)
    with claim(run, {**saved, "eval": {"planner": {"width": 4}}}, resume=True, overwrite=False):
        pass


# ------------------------------------------------------------------------------------------- the command line

@pytest.mark.parametrize("args, key", [
    (["seed=1", "seed=2"], "seed"),
    (["+data.path=a.csv", "data.path=b.csv"], "data.path"),
    (["++seed=1", "seed=1"], "seed"),
    (["data=csv", "data=synthetic"], "data"),
    (["-m", "seed=1,2", "seed=3"], "seed"),
])
def test_a_key_given_twice_is_named_with_both_values(args, key):
    line = repeated_key(args)
    assert line is not None and line.startswith(f"command line: {key} is given twice")
    assert all(arg in line for arg in args if "=" in arg)


@pytest.mark.parametrize("args", [
    ["seed=1", "data.seed=1"], ["-m", "seed=1,2"], ["~seed", "seed=2"], ["--config-name", "x=1", "x=2"],
    ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], ["seed=1", "seed=1"],
])
def test_different_keys_a_sweep_and_a_deletion_are_not_repeats(args):
    assert repeated_key(args) is None


def test_a_command_refuses_a_key_given_twice(tmp_path, capsys):
    assert run_cli("evaluate", f"run_dir={tmp_path}", "n_episodes=4", "n_episodes=8") == 2
    assert last_error(capsys) == ("error: command line: n_episodes is given twice (n_episodes=4, then n_episodes=8): "
                                  "give it once")


# ------------------------------------------------------------------------------------------- evaluate, compare

def test_evaluating_a_run_in_training_or_interrupted_says_so(tmp_path):
    from music_rl.cli.evaluate import check_trained

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "ppo_512_steps.zip").write_bytes(b"")
    with pytest.raises(RunFolderError, match=r"ppo\.zip: missing: .* holds an interrupted run \(checkpoints\); "
                                             r"finish it first: music-rl train hydra\.run\.dir=.* resume=true"):
        check_trained(run, "ppo")
    (run / ".lock.json").write_text(json.dumps({"pid": os.getpid(), "command": "music-rl train", "since": "now"}))
    with pytest.raises(RunFolderError, match=r"missing: the run is still in progress \(in use by pid \d+, "
                                             r"music-rl train, since now\)"):
        check_trained(run, "ppo")
    (run / ".lock.json").write_text(json.dumps({"pid": 2**22 + 1, "command": "music-rl train", "since": "then"}))
    with pytest.raises(RunFolderError, match="holds an interrupted run"):  # a holder killed long ago
        check_trained(run, "ppo")


def test_compare_names_a_fifo_a_run_folder_and_two_folders(tmp_path, fifo, capsys):
    assert run_cli("compare", str(fifo)) == 2
    assert f"sweep_dir='{fifo}': a FIFO, not a folder" in last_error(capsys)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text("{}")
    assert run_cli("compare", str(tmp_path / "run")) == 2
    assert "a single run's folder (metrics.json), not a sweep's" in last_error(capsys)
    assert run_cli("compare", str(tmp_path), str(tmp_path / "run")) == 2
    assert "music-rl compare: one bare argument at most (it stands for sweep_dir=...), got 2" in last_error(capsys)


def test_compare_refuses_a_bad_baseline_before_writing_anything(tmp_path, capsys):
    assert run_cli("compare", str(tmp_path), "baseline=[seed]") == 2
    assert "baseline=['seed']: give key:value pairs" in last_error(capsys)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------- vae.pt

@pytest.mark.parametrize("content, why", [
    (random.Random(0).randbytes(3000), "not a torch file of tensors and plain data"),
    (b"", "empty or truncated"),
    (b"PK\x03\x04garbage", "a damaged archive or another kind of file"),
], ids=["random-bytes", "empty", "zip-garbage"])
def test_a_garbled_vae_is_named_with_how_to_rebuild_it(tmp_path, content, why):
    (tmp_path / "vae.pt").write_bytes(content)
    with pytest.raises(RunFolderError) as err:
        load_encoder(tmp_path / "vae.pt")
    line = str(err.value)
    assert line.startswith(f"{tmp_path / 'vae.pt'}: not a valid VAE checkpoint of this project ({why})")
    assert f"music-rl train --config-dir {tmp_path / '.hydra'} --config-name config" in line
    assert "weights_only" not in line


# ------------------------------------------------------------------------------------------- packaging

def test_the_license_is_a_spdx_expression_built_by_a_setuptools_that_reads_it():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert meta["project"]["license"] == "MIT"  # PEP 639; the table form is deprecated
    assert meta["build-system"]["requires"] == ["setuptools>=77"]  # the first setuptools that reads it


# ------------------------------------------------------------------------------------------- lines that misled

@pytest.mark.parametrize("override, key", [("+data.columns.tempo=BPM", "data.columns={'tempo': 'BPM'}"),
                                           ("data.delimiter=x", "data.delimiter='x'")])
def test_a_key_of_csv_catalogs_with_the_synthetic_one_is_refused(tmp_path, capsys, override, key):
    assert run_cli("train", "+experiment=tiny", override, f"hydra.run.dir={tmp_path / 'run'}") == 2
    only = "data=csv and data=parquet" if key.startswith("data.columns") else "data=csv"
    assert last_error(capsys) == (f"error: {key}: applies to {only} only (the synthetic catalog has no file): "
                                  "add data=csv data.path=<file>")
    assert not (tmp_path / "run").exists()


def test_a_key_deleted_then_set_is_named_as_such_not_as_a_typo(tmp_path, capsys):
    assert run_cli("train", "+experiment=tiny", "~seed", "seed=3", f"hydra.run.dir={tmp_path / 'run'}") == 2
    line = last_error(capsys)
    assert line == "error: seed: deleted by ~seed on the command line, then set: give seed=<value> alone"


def test_a_mapping_set_whole_names_the_form_that_adds_an_entry(tmp_path, capsys):
    assert run_cli("train", "+experiment=tiny", "data.columns={tempo: BPM}", f"hydra.run.dir={tmp_path / 'r'}") == 2
    line = last_error(capsys)
    assert line.startswith("error: data.columns.tempo: a new entry of the mapping data.columns: add it with a +: "
                           "+data.columns.tempo=<value>") and "did you mean" not in line


def test_a_character_to_quote_is_named_with_the_quoted_override(tmp_path, capsys):
    assert run_cli("train", "+experiment=tiny", "data.delimiter=;", f"hydra.run.dir={tmp_path / 'run'}") == 2
    line = last_error(capsys)
    assert line.startswith("error: override 'data.delimiter=;': a character that must be quoted")
    assert "quote a value holding , ; =" in line and "\"data.delimiter=';'\"" in line
    assert "Exception" not in line


def test_each_command_summary_is_written_once():
    from music_rl.cli.main import COMMANDS
    from music_rl.cli.tables import app

    assert app.summary == COMMANDS["tables"][1]
    sources = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "music_rl" / "cli").glob("*.py"))
    for _, summary in COMMANDS.values():
        assert sources.count(summary) == 1, summary


def test_a_baseline_no_job_has_is_refused_and_names_the_sweeps_values():
    import pandas as pd

    from music_rl.reports.sweep import against_baseline

    jobs = pd.DataFrame({"job": ["0", "1"], "vae.latent_dim": ["2", "5"], "seed": [0, 0],
                         "normalized_score": [0.1, 0.2], "ppo_seconds": [1.0, 1.0]})
    with pytest.raises(RunFolderError, match=r"baseline: no job has vae\.latent_dim=7 \(the sweep's values: "
                                             r"vae\.latent_dim: 2, 5\)"):
        against_baseline(jobs, {"vae.latent_dim": "7"})
    assert len(against_baseline(jobs, {"vae.latent_dim": "2"})) == 1  # a baseline some job has still compares
