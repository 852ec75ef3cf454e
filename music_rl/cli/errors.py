"""The error layer of every command: an error the user can fix ends in ONE line ``error: ...``, exit 2: a
:class:`~music_rl.core.errors.MusicRLError`, an output that cannot be written (:func:`os_error_line`), Hydra's error
before the job (:func:`hydra_line`), a sweep plugin not installed, a cluster out of reach. SIGTERM or SIGINT (one
handler) end in :class:`~music_rl.core.errors.Interrupted`'s line, exit 128 + signal. ``HYDRA_FULL_ERROR=1`` shows
Hydra's report. Anything else is a bug and keeps its traceback (what the job raised is marked ``raised_by_job``)."""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, NoReturn

from music_rl.cli.hydra_lines import first_line, hydra_line, plugin_line
from music_rl.core.errors import Interrupted, MusicRLError, os_error_line  # light: imported before numpy loads


def _on_interrupt(signum: int, frame: FrameType | None) -> None:
    """Raise :class:`Interrupted`; while a module is being imported (an exception raised there can turn into
    another one), print the line and end the process at once, running the exit handlers (locks released)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            line = Interrupted(signum, "while modules were loading; the files written so far are complete")
            os.write(2, f"error: {line}\n".encode())
            with contextlib.suppress(BaseException):
                atexit._run_exitfuncs()
            os._exit(128 + signum)
        frame = frame.f_back
    raise Interrupted(signum)


def install_interrupt_handlers() -> None:
    """SIGTERM and SIGINT raise :class:`Interrupted` (from the main thread only: Python's rule)."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _on_interrupt)


@contextlib.contextmanager
def _handlers() -> Iterator[None]:
    """Inside, the interrupt handler (a sweep's worker did not start in main) and a background thread or a log
    handler on a full disk logs one warning, no traceback; the previous handlers are restored after."""
    def quiet(args: threading.ExceptHookArgs) -> None:
        line = os_error_line(args.exc_value) if isinstance(args.exc_value, OSError) else None
        if line is None:
            threading.__excepthook__(args)
            return
        logging.getLogger("music-rl").warning("%s stopped: %s", getattr(args.thread, "name", "a thread"), line)

    main = threading.current_thread() is threading.main_thread()
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)} if main else {}
    hooks = threading.excepthook, logging.raiseExceptions
    install_interrupt_handlers()
    threading.excepthook, logging.raiseExceptions = quiet, False
    try:
        yield
    finally:
        threading.excepthook, logging.raiseExceptions = hooks
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def fail(message: str, status: int = 2) -> NoReturn:
    """Print ``error: <message>`` (one line) to stderr and exit with ``status``."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    sys.exit(status)


class JobFailed(Exception):
    """A job of a sweep ended with a user error (its one line): the other jobs go on, the sweep reports it."""


@contextlib.contextmanager
def one_line_errors(sweep_job: bool = False) -> Iterator[None]:
    """Inside, a user's error exits in one line; in a job of a sweep it is logged and raised as
    :class:`JobFailed` instead, so that the launcher finishes the other jobs and the sweep reports it."""
    try:
        yield
    except BrokenPipeError:  # stdout's reader stopped early (| head): not an error; no second one at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except (Interrupted, MusicRLError, OSError) as err:
        line = os_error_line(err) if isinstance(err, OSError) else " ".join(str(err).split())
        if line is None:
            raise
        if sweep_job and not isinstance(err, Interrupted):
            logging.getLogger("music-rl").error("error: %s", line)
            raise JobFailed(line) from None
        fail(line, 128 + err.signum if isinstance(err, Interrupted) else 2)


def user_errors_exit(func: Callable[..., Any]) -> Callable[..., Any]:
    """The job's wrapper (under ``@hydra.main``): :func:`one_line_errors` with the interrupt handler."""
    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> Any:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        try:
            sweep_job = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
            with _handlers(), one_line_errors(sweep_job):
                return func(*args, **kwargs)
        except Exception as err:
            err.raised_by_job = True  # type: ignore[attr-defined]
            raise
    return wrapper


def run_hydra(main: Callable[[], Any], keys: Callable[[], list[str]]) -> None:
    """Call a ``@hydra.main`` function, Hydra's errors raised (``HYDRA_FULL_ERROR=1``), each turned into one line;
    what the job raised goes on (its wrapper handled its user errors). ``keys()``: the app's keys."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":  # the user asked for Hydra's report
        main()
        return
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        with _handlers(), one_line_errors():
            main()
    except Exception as err:
        if getattr(err, "raised_by_job", False):
            raise
        line = plugin_line(err)
        if line is None and isinstance(err, HydraException | OmegaConfBaseException):
            line = hydra_line(err, keys())
        elif line is None and isinstance(err, ConnectionError):  # hydra/launcher=ray_cluster with no cluster
            line = (f"the sweep's launcher cannot reach its cluster: {first_line(str(err))} (hydra/launcher="
                    "ray_cluster: start Ray there, or give hydra.launcher.ray.init.address=<head>:<port>)")
        elif line is None and isinstance(err, ValueError):  # Hydra's argparse: flags that exclude each other
            line = f"command line: {first_line(str(err))}"
        if line is None:
            raise
        fail(line)
    finally:
        del os.environ["HYDRA_FULL_ERROR"]  # the user's choice again (a caller may run another command)
