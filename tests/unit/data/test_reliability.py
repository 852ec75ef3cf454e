"""The bad-input matrix: every case ends in ONE clear line (what is wrong, where, what is allowed), exit 2,
no traceback, and nothing half-written.

Catalog, feedback, config and run-folder cases run in-process through the entry points' own error policy
(``music_rl.cli.errors.user_errors_exit``, or ``music-rl evaluate`` run in this process); a representative subset, and
everything Hydra or the file system does before the job starts, runs through the ``music-rl train`` CLI.
The files are in ``tests/fixtures/bad/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, compose, run_cli, train, train_here, train_in_process
from omegaconf import OmegaConf

import music_rl.cli.train  # noqa: F401  (registers train_schema in Hydra's ConfigStore)
from music_rl.cli.errors import user_errors_exit
from music_rl.config import load_config
from music_rl.data.catalog import DataConfig, load_catalog
from music_rl.data.feedback import read_feedback
from music_rl.data.feedback_store import FeedbackStore

BAD = ROOT / "tests" / "fixtures" / "bad"
TRACK_IDS = [f"trk{i:03d}" for i in range(8)]


def temporaries(folder: Path) -> list[Path]:
    """Temporary files of music_rl.core.atomic left anywhere under ``folder``."""
    return [p for p in folder.rglob(".*.tmp")]


@pytest.fixture
def entry(capsys) -> Callable[..., tuple[int, list[str]]]:
    """Call a function as an entry point does; return (exit status, non-empty stderr lines)."""

    def call(func: Callable[..., object], *args: object, **kwargs: object) -> tuple[int, list[str]]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as stop:
            user_errors_exit(func)(*args, **kwargs)
        return stop.value.code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]

    return call


def one_error_line(code: int, lines: list[str], *fragments: str) -> str:
    """Assert exit 2 and a single ``error:`` line holding every fragment; return the line."""
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "Traceback" not in lines[0]
    return lines[0]


def train_cli(run_dir: Path, *overrides: str, timeout: float = 300,
              preexec: Callable[[], None] | None = None) -> subprocess.CompletedProcess:
    """``music-rl train`` with the tiny budget into ``run_dir``."""
    return train(run_dir, *overrides, timeout=timeout, preexec_fn=preexec)


def cli_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Assert the CLI ended with exit 2 and one ``error:`` line (after any log lines), no traceback."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and proc.stderr.rstrip().endswith(errors[0]), proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


# ------------------------------------------------------------------------------------------- catalogs

def catalog(name: str, strict: bool = False, min_tracks: int = 5) -> object:
    return load_catalog(DataConfig(source="csv", path=str(BAD / name), strict=strict), seed=0,
                        min_tracks=min_tracks)


@pytest.mark.parametrize("name, fragments", [
    ("empty.csv", ["empty.csv: empty file", "expected a header line"]),
    ("header_only.csv", ["header_only.csv: header only, no track rows"]),
    ("missing_column.csv", ["missing_column.csv", "missing required column 'tempo'"]),
    ("misspelt_column.csv", ["missing required column 'tempo' (did you mean 'temp'?",
                             "data.columns.tempo=temp"]),
    ("identical_rows.csv", ["identical_rows.csv: 1 usable tracks (kept 1 of 6 rows); at least 5 needed"]),
    ("too_few_tracks.csv", ["too_few_tracks.csv: 4 usable tracks", "at least 5 needed (env.k + 1)"]),
    ("latin1.csv", ["latin1.csv: not UTF-8 text", "re-save it as UTF-8"]),
    ("unterminated_quote.csv", ["unterminated_quote.csv: cannot parse as CSV", "EOF inside string"]),
    ("no_such_file.csv", ["no_such_file.csv: no such file", "data.path="]),
])
def test_a_catalog_that_cannot_be_used_is_one_line_and_exit_2(entry, name, fragments):
    one_error_line(*entry(catalog, name), *fragments)


@pytest.mark.parametrize("name, kept, fragments", [
    ("text_in_numeric.csv", 7, ["column 'tempo': 1 row with a non-numeric value dropped (line 4: 'fast')"]),
    ("empty_cells.csv", 6, ["column 'energy': 1 row with a missing value (empty, NA, NaN or null) dropped "
                            "(line 3)"]),
    ("duplicate_ids.csv", 7, ["column 'track_id': 1 row with an already seen track id dropped",
                              "(line 6: 'trk001')"]),
    ("tempo_zero.csv", 7, ["column 'tempo': 1 row with a value outside 0 < tempo <= 300 BPM dropped",
                           "(line 5: '0')"]),
    ("loudness_plus5.csv", 7, ["column 'loudness': 1 row with a value outside -60..3 dB dropped",
                               "(line 8: '+5')"]),
    ("all_features_empty_row.csv", 7, ["1 row with every feature empty dropped (line 5)"]),
])
def test_a_repairable_catalog_loads_with_one_problem_line_and_strict_mode_makes_it_fatal(entry, name, kept,
                                                                                      fragments):
    loaded = catalog(name)
    assert len(loaded.tracks) == kept and loaded.raw.shape == (kept, 11)
    assert np.isfinite(loaded.raw).all()
    assert all(fragment in loaded.problems[0] and name in loaded.problems[0] for fragment in fragments)
    assert all("\n" not in p for p in loaded.problems)
    one_error_line(*entry(catalog, name, strict=True), name, *fragments, "[data.strict=true")


@pytest.mark.parametrize("name", ["crlf.csv", "bom.csv", "semicolon.csv"])
def test_crlf_bom_and_semicolons_read_like_the_plain_file(name):
    plain, other = catalog("good.csv"), catalog(name, strict=True)
    np.testing.assert_array_equal(other.raw, plain.raw)
    assert list(other.tracks.columns) == list(plain.tracks.columns)
    assert other.tracks["track_id"].tolist() == TRACK_IDS


@pytest.mark.parametrize("suffix", [".csv.gz", ".csv.bz2", ".csv.xz", ".zip", ".csv"])
def test_compressed_catalogs_read_like_the_plain_file(tmp_path, suffix):
    """gzip, bz2, xz and zip, known by their first bytes, whatever the name (gzipped.csv is gzip)."""
    import bz2
    import gzip
    import lzma
    import zipfile

    data = (BAD / "good.csv").read_bytes()
    path = tmp_path / f"tracks{suffix}"
    if suffix == ".zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("tracks.csv", data)
    else:
        packer = {".csv.gz": gzip.compress, ".csv.bz2": bz2.compress, ".csv.xz": lzma.compress,
                  ".csv": gzip.compress}[suffix]
        path.write_bytes(packer(data))
    plain = catalog("good.csv")
    packed = load_catalog(DataConfig(source="csv", path=str(path), strict=True), seed=0, min_tracks=5)
    np.testing.assert_array_equal(packed.raw, plain.raw)
    assert packed.tracks["track_id"].tolist() == TRACK_IDS


def _rewrite(tmp_path: Path, name: str, edit: Callable[[str], str]) -> Path:
    path = tmp_path / name
    path.write_text(edit((BAD / "good.csv").read_text()))
    return path


def test_decimal_commas_are_read_consistently_scientific_notation_too(tmp_path):
    def european(text: str) -> str:
        lines = [line.replace(",", ";").replace(".", ",") for line in text.splitlines()]
        lines[1] = lines[1].replace("0,202", "2,02e-1")  # speechiness in scientific notation
        return "\n".join(lines) + "\n"

    plain = catalog("good.csv")
    comma = load_catalog(DataConfig(source="csv", path=str(_rewrite(tmp_path, "eu.csv", european)), strict=True),
                         seed=0, min_tracks=5)
    np.testing.assert_allclose(comma.raw, plain.raw)


def test_a_file_mixing_decimal_commas_and_points_is_refused(entry, tmp_path):
    def mixed(text: str) -> str:
        lines = [line.replace(",", ";") for line in text.splitlines()]
        lines[2] = lines[2].replace("0.207", "0,207")
        return "\n".join(lines) + "\n"

    path = _rewrite(tmp_path, "mixed.csv", mixed)
    one_error_line(*entry(catalog, str(path)), "mixes decimal commas (column 'danceability' line 3: '0,207')",
                   "and decimal points", "one decimal separator")


def test_a_repeated_column_is_refused_when_read_and_reported_when_not(entry, tmp_path):
    used = _rewrite(tmp_path, "dup_tempo.csv", lambda t: "\n".join(
        line + "," + line.split(",")[-1] for line in t.splitlines()) + "\n")  # a second tempo column
    one_error_line(*entry(catalog, str(used)), "column 'tempo' appears 2 times (columns 15, 16)", "ambiguous")
    unused = _rewrite(tmp_path, "dup_note.csv", lambda t: "\n".join(
        line + (",note,note" if i == 0 else ",a,b") for i, line in enumerate(t.splitlines())) + "\n")
    loaded = catalog(str(unused))
    assert any("column 'note' appears 2 times (columns 16, 17); unused" in p for p in loaded.problems)


def test_na_metadata_stays_a_string():
    tracks = catalog("na_metadata.csv", strict=True).tracks
    assert tracks.loc[2, "artist"] == "NA" and tracks.loc[2, "name"] == "NA"
    assert tracks.loc[5, "genre"] == "N/A"
    assert len(tracks) == 8


# ------------------------------------------------------------------------------------------- feedback

@pytest.mark.parametrize("name, fragments", [
    ("feedback_pct_above_one.csv", ["column percentage_listened, row 3: must be a number in [0, 1]",
                                    "(got '1.7')"]),
    ("feedback_pct_negative.csv", ["column percentage_listened, row 2: must be a number in [0, 1]",
                                   "(got '-0.2')"]),
    ("feedback_liked_two.csv", ["column liked, row 4: must be 0 or 1 (got '2')"]),
    ("feedback_unknown_track.csv", ["column track_id, row 3: unknown track id", "(got 'trk404')"]),
    ("feedback_missing_columns.csv", ["missing column(s) position, percentage_listened"]),
    ("feedback_torn_last_line.csv", ["column liked, row 5: must be 0 or 1 (got '')"]),
    ("feedback_empty.csv", ["feedback_empty.csv: empty file"]),
    ("feedback.txt", ["feedback.txt: suffix '.txt' not supported"]),
])
def test_a_bad_feedback_log_is_one_line_and_exit_2(entry, name, fragments):
    one_error_line(*entry(read_feedback, BAD / name, known_track_ids=TRACK_IDS), name, *fragments)


def test_a_torn_last_line_of_the_run_feedback_store_is_skipped_not_fatal(tmp_path, caplog):
    log = tmp_path / "feedback.csv"  # a copy: the store keeps its lock file next to the log
    shutil.copy(BAD / "feedback_torn_last_line.csv", log)
    rows = FeedbackStore(log).read(known_track_ids=TRACK_IDS)
    assert rows["track_id"].tolist() == TRACK_IDS[:4]
    assert "skipped 1 torn line(s) at line(s) 6" in caplog.text


# ------------------------------------------------------------------------------------------- configs


@pytest.mark.parametrize("override, fragments", [
    ("reward.like_weight=-1", ["reward.like_weight=-1.0"]),
    ("env.k=64", ["env.n_neighbours=32: must be an integer >= env.k (64)"]),
    ("env.session_length=0", ["env.session_length=0"]),
    ("reward.n_clusters=30000", ["reward.n_clusters=30000", "20000"]),
])
def test_a_bad_config_value_is_one_line_and_exit_2(entry, override, fragments):
    one_error_line(*entry(lambda: load_config(compose(override))), *fragments)


def test_cli_bad_config_values_name_the_key_before_any_work(tmp_path, capsys):
    out = tmp_path / "run"
    proc = train_here(capsys, out, "vae.latent_dim=0")
    assert cli_error(proc, "vae.latent_dim=0: must be an integer >= 1") == proc.stderr.strip()
    assert not (out / "vae.pt").exists() and not (out / "world").exists()


@pytest.mark.parametrize("override, fragments", [
    ("vae.latnt_dim=3", ["vae.latnt_dim: no such config key (did you mean vae.latent_dim?)"]),
    ("vae.latent_dim=[1", ["override 'vae.latent_dim=[1'", "Hydra's override grammar"]),
    ("data=nosuch", ["no config 'data/nosuch'; available: csv, parquet, synthetic"]),
    ("vae.latent_dim=abc", ["vae.latent_dim: Value 'abc'", "could not be converted to Integer"]),
    ("reward.decay=cubic", ["reward.decay: Invalid value 'cubic', expected one of [linear, exponential"]),
    ("+vae.latent_dim=3", ["Could not append to config. An item is already at 'vae.latent_dim'"]),
])
def test_cli_hydra_errors_are_one_line_and_exit_2(tmp_path, capsys, override, fragments):
    proc = train_here(capsys, tmp_path / "run", override)
    assert cli_error(proc, *fragments) == proc.stderr.strip()  # nothing else printed
    assert not (tmp_path / "run").exists()


def test_cli_csv_catalog_smaller_than_n_clusters_fails_before_the_vae(tmp_path, capsys):
    out = tmp_path / "run"
    proc = train_here(capsys, out, "data=csv", f"data.path={BAD / 'good.csv'}", "env.session_length=2",
                      "env.n_neighbours=4", "reward.n_clusters=20")
    cli_error(proc, "reward.n_clusters=20: must be <= the catalog size (8 tracks)")
    assert not (out / "vae.pt").exists() and not temporaries(out)


def test_cli_bad_catalog_file_is_one_line(tmp_path, capsys):
    proc = train_here(capsys, tmp_path / "run", "data=csv", f"data.path={BAD / 'misspelt_column.csv'}")
    cli_error(proc, "misspelt_column.csv", "missing required column 'tempo' (did you mean 'temp'?")


# ------------------------------------------------------------------------------------------- run folders

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished tiny run (trained in this process), damaged in copies by the tests below."""
    out = tmp_path_factory.mktemp("reliability") / "run"
    train_in_process(out)
    return out


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def other_version_config(run: Path) -> None:
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    cfg.vae = OmegaConf.merge(cfg.vae, {"dropout": 0.1})
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")
    info = json.loads((run / "run_info.json").read_text())
    info["versions"]["music-rl"] = "0.0.1"
    (run / "run_info.json").write_text(json.dumps(info))


def other_version_meta(run: Path) -> None:
    meta = json.loads((run / "world" / "meta.json").read_text())
    (run / "world" / "meta.json").write_text(json.dumps(dict(meta, format_version=0)))


def other_version_vae(run: Path) -> None:
    ckpt = torch.load(run / "vae.pt", weights_only=True)
    torch.save(dict(ckpt, format_version=99), run / "vae.pt")


def pickled_vae(run: Path) -> None:
    torch.save({"code": os.system}, run / "vae.pt")  # weights_only refuses to unpickle a callable


def foreign_vae(run: Path) -> None:
    ckpt = torch.load(run / "vae.pt", weights_only=True)
    ckpt["latent_min"] = ckpt["latent_min"] + 0.5
    torch.save(ckpt, run / "vae.pt")


@pytest.mark.slow
@pytest.mark.parametrize("damage, fragments", [
    (lambda run: (run / "world" / "latents.npy").unlink(), ["world/latents.npy: missing"]),
    (lambda run: (run / "ppo.zip").unlink(), ["ppo.zip: missing"]),
    (lambda run: (run / "vae.pt").unlink(), ["vae.pt: missing"]),
    (lambda run: (run / ".hydra" / "config.yaml").unlink(), [".hydra/config.yaml: missing",
                                                             "a music-rl run folder?"]),
    (lambda run: shutil.rmtree(run / "world"), ["world: no world folder here"]),
    (lambda run: (run / "vae.pt").write_text("not a model\n"), ["vae.pt: not a valid VAE checkpoint of this project",
                                                                 "rebuild the run", "--config-name config"]),
    (pickled_vae, ["vae.pt: not a valid VAE checkpoint of this project (not a torch file of tensors and plain data)"]),
    (foreign_vae, ["vae.pt: does not encode world/features.npy to world/latents.npy"]),
    (lambda run: truncate(run / "ppo.zip"), ["ppo.zip: not a loadable SB3 PPO model for this run"]),
    (lambda run: truncate(run / "world" / "neighbours.npy"),
     ["world/neighbours.npy: not a readable .npy array"]),
    (lambda run: (run / ".hydra" / "config.yaml").write_text("vae: [unclosed\n"),
     [".hydra/config.yaml: unreadable YAML"]),
    (lambda run: (run / ".hydra" / "config.yaml").write_text("- vae\n- ppo\n"),
     [".hydra/config.yaml: a YAML list, not a run's config keys"]),
    (other_version_config, [".hydra/config.yaml: vae.dropout: Key 'dropout' not in 'VAEConfig'",
                            "the run was made by music-rl 0.0.1 (this is "]),
    (other_version_meta, ["world/meta.json: format_version=0, this code reads format_version=1"]),
    (other_version_vae, ["vae.pt: not a valid VAE checkpoint of this project (VAE checkpoint format_version=99: "
                         "this version reads only 1)"]),
], ids=["missing-latents", "missing-ppo", "missing-vae", "missing-config", "missing-world", "vae-text",
        "vae-pickled-code", "vae-of-another-run", "truncated-ppo", "truncated-npy", "config-bad-yaml", "config-a-list",
        "config-other-version", "world-other-version", "vae-other-version"])
def test_a_broken_run_folder_is_one_line_and_exit_2(finished_run, tmp_path, capsys, damage, fragments):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    damage(run)
    capsys.readouterr()
    code = run_cli("evaluate", f"run_dir={run}", "n_episodes=4")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    one_error_line(code, lines, *fragments)


@pytest.mark.slow
def test_the_intact_run_folder_evaluates(finished_run, capsys):
    assert run_cli("evaluate", f"run_dir={finished_run}", "n_episodes=4") == 0
    out = capsys.readouterr().out
    assert "normalized_score (ppo)" in out and "| oracle |" in out


@pytest.mark.slow
@pytest.mark.parametrize("args, fragments", [
    (["run_dir=/nowhere/run"], ["run_dir='/nowhere/run': no such folder"]),
    (["n_episodes=4"], ["run_dir: required: give run_dir=..."]),
    (["run_dir=.", "n_episodes=abc"], ["n_episodes: Value 'abc'"]),
    (["run_dir", "x"], ["override 'run_dir'", "Hydra's override grammar"]),
    (["{run}", "n_episodes=1"], ["eval.n_episodes=1: must be an integer >= 2"]),
    (["{run}", "protocol=team"], ["protocol: Invalid value 'team', expected one of [personal, population]"]),
    (["{run}", "episodes=4"], ["episodes: no such config key (did you mean n_episodes?)"]),
    (["-m", "{run}"], ["music-rl evaluate: -m/--multirun is not supported"]),
])
def test_bad_evaluate_arguments_are_one_line(finished_run, capsys, args, fragments):
    argv = [f"run_dir={finished_run}" if a == "{run}" else a for a in args]
    code = run_cli("evaluate", *argv)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    one_error_line(code, lines, *fragments)


# ------------------------------------------------------------------------------------------- output folders

@contextlib.contextmanager
def tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A small tmpfs mounted on ``where`` (root only; skips the test where mounting is not permitted)."""
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.slow
def test_a_read_only_output_folder_is_one_line(tmp_path):
    with tmpfs(tmp_path / "ro", "ro,size=64k") as ro:
        proc = train_cli(ro / "run")
    cli_error(proc, f"{ro / 'run'}: Read-only file system", "choose another folder")


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(tmp_path):
    with tmpfs(tmp_path / "full", "size=256k") as full:
        proc = train_cli(full / "run")
        cli_error(proc, f"{full / 'run'}", "the disk is", "full: free some space or write elsewhere")
        assert not temporaries(full / "run")
        if (full / "run" / "vae.pt").exists():  # what was written is whole
            torch.load(full / "run" / "vae.pt", weights_only=True)


def _file_size_limit() -> None:
    """In the child: files may not grow past 128 KiB; writing more fails with EFBIG (SIGXFSZ ignored)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (128 * 1024, 128 * 1024))


@pytest.mark.slow
def test_a_file_size_limit_is_one_line_and_leaves_no_temporary_file(tmp_path):
    """The unprivileged stand-in for a full disk: every write past the limit fails mid-artifact."""
    proc = train_cli(tmp_path / "run", "data.n_tracks=4000", preexec=_file_size_limit)
    cli_error(proc, "File too large", "the file size limit was reached")
    assert not temporaries(tmp_path / "run")
    assert not (tmp_path / "run" / "ppo.zip").exists() and not (tmp_path / "run" / "metrics.json").exists()
