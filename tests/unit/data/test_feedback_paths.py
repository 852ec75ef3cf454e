"""A feedback log given as a path that is not a regular file (a FIFO, a folder) is named for what it is, never
opened (a FIFO would block the reader): ``finetune feedback=``, ``recommend user= feedback=``, ``evaluate log=``
and ``feedback.path``, through the one reader of logs."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import run_cli

from music_rl.core.errors import ConfigError, FeedbackError
from music_rl.data.feedback import read_feedback
from music_rl.data.log_import import FeedbackConfig, read_log, read_submission


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    """A FIFO named like a log (``f.csv``): opening it to read would wait for a writer forever."""
    path = tmp_path / "f.csv"
    os.mkfifo(path)
    return path


@contextmanager
def deadline(seconds: int = 20) -> Iterator[None]:
    """Fail instead of hanging when the code under test opens the FIFO (SIGALRM interrupts the blocked open)."""
    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"still blocked after {seconds} s: the FIFO was opened")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def last_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The one non-empty stderr line of a refused command, an ``error:`` line."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_every_reader_of_a_log_names_a_fifo(fifo: Path) -> None:
    expected = rf"^{fifo}: a FIFO, not a log$"
    with deadline():
        with pytest.raises(FeedbackError, match=expected):
            read_feedback(fifo)  # finetune feedback=
        with pytest.raises(FeedbackError, match=expected):
            read_submission(fifo, ["t1"])  # recommend user= feedback=
        for fmt in ("auto", "native", "mssd"):  # evaluate log=, feedback.path
            with pytest.raises(FeedbackError, match=expected):
                read_log(FeedbackConfig(path=str(fifo), format=fmt), ["t1"])


def test_a_folder_and_a_missing_file_keep_their_lines(tmp_path: Path) -> None:
    (tmp_path / "logs.csv").mkdir()
    with pytest.raises(FeedbackError, match=r"logs\.csv: a directory, not a log$"):
        read_feedback(tmp_path / "logs.csv")
    with pytest.raises(FeedbackError, match=r"nowhere\.csv: no such file$"):
        read_feedback(tmp_path / "nowhere.csv")


def test_finetune_names_a_fifo_given_as_feedback(tmp_path: Path, fifo: Path, capsys) -> None:
    with deadline():
        code = run_cli("finetune", f"run_dir={tmp_path}", f"feedback={fifo}")
    assert code == 2
    assert last_error(capsys) == f"error: {fifo}: a FIFO, not a log"


@pytest.mark.slow
def test_recommend_and_evaluate_name_a_fifo(pristine: Path, fifo: Path, capsys) -> None:
    from music_rl.serving.inference import load_run, user_answers

    with deadline(120):
        with pytest.raises(ConfigError, match=rf"feedback='{fifo}': a FIFO, not a regular file"):
            user_answers(load_run(pristine), "u", fifo)
        assert run_cli("recommend", f"run_dir={pristine}", "user=u", f"feedback={fifo}") == 2
        assert "a FIFO, not a regular file" in last_error(capsys)
        assert run_cli("evaluate", f"run_dir={pristine}", f"log={fifo}") == 2
        assert last_error(capsys) == f"error: {fifo}: a FIFO, not a log"
