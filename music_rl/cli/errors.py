"""The error policy of every command: an error a user can cause ends in ONE line and exit status 2.

- :class:`music_rl.core.errors.MusicRLError` (bad file, column, config key, run folder, unknown track) →
  ``error: <message>``, exit 2;
- an output that cannot be written (read-only folder, permission denied, disk full, file too large) →
  ``error: <path>: <why>; <what to do>``, exit 2;
- Hydra's own errors before the job starts (an unknown key such as ``vae.latnt_dim=3``, malformed override
  syntax, a config group option that does not exist, a value of the wrong type) → one line built from the
  exception's own fields (the key, the override), exit 2; ``HYDRA_FULL_ERROR=1`` in the environment shows
  Hydra's full report instead;
- a launcher or sweeper plugin that is not installed (``hydra/launcher=ray_local`` without hydra-ray-launcher,
  or without the ray it imports) → one line naming it and ``pip install -e ".[sweeps]"``, exit 2; a launcher
  that cannot reach its cluster (``hydra/launcher=ray_cluster`` with no Ray running there) → one line, exit 2;
- SIGTERM / SIGINT → ``error: interrupted by ...`` and exit ``128 + signal`` (PPO training saves a checkpoint
  first: :class:`music_rl.training.callbacks.CheckpointCallback`); files already written are complete, being atomic. One
  handler (:func:`install_interrupt_handlers`) from the program's first line (:mod:`music_rl.cli.main`): while modules
  are being imported it ends the process at once (an exception raised there can surface as another one, such
  as numpy's "not a valid PEP 3118 buffer format"), elsewhere it raises :class:`Interrupted`.

Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import atexit
import contextlib
import difflib
import errno
import functools
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, NoReturn, TypeVar

# nothing heavy here: this module is imported first, to install the interrupt handler before numpy or torch load

T = TypeVar("T")
EXIT_USER_ERROR = 2

# errno of an environment the user must fix (where the output goes, free space) rather than of a bug
_WHY: dict[int, str] = {
    errno.EACCES: "choose a folder you can write to",
    errno.EPERM: "choose a folder you can write to",
    errno.EROFS: "the file system is read-only: choose another folder",
    errno.ENOSPC: "the disk is full: free some space or write elsewhere",
    errno.EDQUOT: "the disk quota is exhausted: free some space or write elsewhere",
    errno.EFBIG: "the file size limit was reached: raise it (ulimit -f) or write elsewhere",
    errno.ENAMETOOLONG: "the name is too long for the file system: shorten it (for a sweep with many "
                        "overrides: hydra.sweep.subdir='${hydra.job.num}')",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EEXIST: "a part of the path is a file, not a folder: choose another path",
    errno.EISDIR: "it is a folder: give a file's path",
    errno.ENOENT: "no such file or folder: check the path",
}


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived (a BaseException like KeyboardInterrupt: no ``except Exception`` eats it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


INTERRUPTS = (signal.SIGTERM, signal.SIGINT)


def _on_interrupt(signum: int, frame: FrameType | None) -> None:
    """The one handler of SIGTERM and SIGINT: raise :class:`Interrupted`, or, while a module is being imported
    (nothing is written then, and an exception raised inside an import can turn into another one on its way
    out), print the line and end the process now, running the exit handlers (a run folder's lock is released)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            os.write(2, f"error: interrupted by {signal.Signals(signum).name} while modules were loading; the files "
                     "written so far are complete\n".encode())
            with contextlib.suppress(BaseException):
                atexit._run_exitfuncs()
            os._exit(128 + signum)
        frame = frame.f_back
    raise Interrupted(signum)


def install_interrupt_handlers() -> None:
    """Make SIGTERM and SIGINT end a command in one line, exit 128 + signal (the module docstring); called at
    the program's first line and by :func:`run_hydra` (the main thread only: Python's rule)."""
    if threading.current_thread() is threading.main_thread():
        for sig in INTERRUPTS:
            signal.signal(sig, _on_interrupt)


@contextlib.contextmanager
def signals_raise_interrupted() -> Iterator[None]:
    """Inside, the handler of :func:`install_interrupt_handlers`; the previous handlers are restored after
    (a command run inside another program, as the tests do). Code that must finish a step first (PPO's
    checkpoint callback) installs its own handlers meanwhile."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in INTERRUPTS}
    install_interrupt_handlers()
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def fail(message: str, status: int = EXIT_USER_ERROR) -> NoReturn:
    """Print ``error: <message>`` (one line) to stderr and exit with ``status``."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    sys.exit(status)


def os_error_line(err: OSError) -> str | None:
    """One line for an OSError the user must fix (unwritable folder, full disk), or None for any other."""
    where = err.filename if err.filename is not None else "writing the output"
    # numpy's tofile() into a real file reports a short write without an errno
    short = re.fullmatch(r"(\d+) requested and (\d+) written", str(err.args[0])) if err.args else None
    if err.errno is None and short:
        return (f"{where}: a write was cut short ({short.group(2)} of {short.group(1)} items written); "
                "the disk is probably full: free some space or write elsewhere")
    hint = _WHY.get(err.errno) if isinstance(err.errno, int) else None
    if hint is None:
        return None
    return f"{where}: {err.strerror or os.strerror(err.errno)}; {hint}"


@contextlib.contextmanager
def quiet_background_errors() -> Iterator[None]:
    """Inside, a full disk met by a background thread or a log handler prints no traceback.

    Restores the previous ``threading.excepthook`` and ``logging.raiseExceptions`` on the way out.
    """
    hook, raise_exceptions = threading.excepthook, logging.raiseExceptions
    threading.excepthook = _quiet_thread_errors
    logging.raiseExceptions = False  # a log file on a full disk must not print a traceback per record
    try:
        yield
    finally:
        threading.excepthook, logging.raiseExceptions = hook, raise_exceptions


def _quiet_thread_errors(args: threading.ExceptHookArgs) -> None:
    """A background thread (TensorBoard's event writer) that hits a full disk logs one line, no traceback;
    the main thread's own write then fails with the error line. Anything else keeps Python's report."""
    line = os_error_line(args.exc_value) if isinstance(args.exc_value, OSError) else None
    if line is None:
        threading.__excepthook__(args)
        return
    name = args.thread.name if args.thread is not None else "a thread"
    logging.getLogger("music-rl").warning("%s stopped: %s", name, line)


def reader_gone() -> NoReturn:
    """stdout's reader stopped early (``| head``): not an error; no second error at exit either."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(0)


class JobFailed(Exception):
    """A job of a sweep ended with a user error (its one line): the other jobs go on, the sweep reports it."""


def _in_sweep() -> bool:
    """Whether this is a job of a Hydra multirun (where exiting would take the other jobs' workers down)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def user_errors_exit(func: Callable[..., T]) -> Callable[..., T]:
    """Run ``func`` with the error policy of the module docstring (MusicRLError, OSError, signals).

    In a job of a sweep, a user error is logged and raised as :class:`JobFailed` instead of exiting, so the
    launcher finishes the other jobs and the sweep reports every failure at its end.
    """

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> T:
        from music_rl.core.errors import MusicRLError  # here: importing envs loads numpy (see the imports above)

        try:  # the handler again: a sweep's job may run in a worker process that did not start in music_rl.cli.main
            with signals_raise_interrupted(), quiet_background_errors():
                return func(*args, **kwargs)
        except MusicRLError as err:
            logging.getLogger("music-rl").debug("user error", exc_info=True)
            if _in_sweep():
                logging.getLogger("music-rl").error("error: %s", " ".join(str(err).split()))
                raise JobFailed(" ".join(str(err).split())) from None
            fail(str(err))
        except Interrupted as stop:
            name = signal.Signals(stop.signum).name
            fail(f"interrupted by {name} before the work was done; the files written so far are complete "
                 "(atomic writes), nothing else was written", 128 + stop.signum)
        except BrokenPipeError:
            reader_gone()
        except OSError as err:
            line = os_error_line(err)
            if line is None:
                raise
            fail(line)
    return wrapper


# ------------------------------------------------------------------------------------------ Hydra's errors

def first_line(text: str) -> str:
    """The first informative line of a message (no link to Hydra's docs, no OmegaConf key dump)."""
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith(("See https://", "full_key:", "object_type=", "reference_type=")):
            return line.rstrip(".")
    return ""


# the Hydra plugins of pyproject.toml's extra "sweeps": the configs each one provides, and the modules it imports
_PLUGINS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "hydra-ray-launcher": (("hydra/launcher/ray",), ("ray", "hydra_plugins.hydra_ray_launcher")),
    "hydra-submitit-launcher": (("hydra/launcher/submitit_local", "hydra/launcher/submitit_slurm"),
                                ("submitit", "hydra_plugins.hydra_submitit_launcher")),
    "hydra-optuna-sweeper": (("hydra/sweeper/optuna",), ("optuna", "hydra_plugins.hydra_optuna_sweeper")),
}
INSTALL_PLUGINS = 'pip install -e ".[sweeps]" (the launcher and sweeper plugins)'


def _chain(err: BaseException) -> Iterator[BaseException]:
    """``err`` and the exceptions it was raised from or while handling, innermost last."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def missing_plugin_line(err: BaseException) -> str | None:
    """One line for a launcher or sweeper plugin that is not installed (Hydra misses its config, or it misses a
    module it imports), or None when ``err`` is about something else."""
    from hydra.errors import MissingConfigException

    for exc in _chain(err):
        for plugin, (configs, modules) in _PLUGINS.items():
            if isinstance(exc, MissingConfigException) and exc.missing_cfg_file in configs:
                return f"{exc.missing_cfg_file}: the Hydra plugin {plugin} is not installed; {INSTALL_PLUGINS}"
            name = exc.name if isinstance(exc, ImportError) else None
            if name and any(name == m or name.startswith(f"{m}.") for m in modules):
                return f"{plugin}: cannot import {name}, not installed; {INSTALL_PLUGINS}"
    return None


def hydra_error_line(err: BaseException, keys: Callable[[], list[str]]) -> str:
    """One line for a Hydra composition or override error, from the exception's own fields.

    ``keys()`` lists the app's dotted config keys, for a 'did you mean' when a key does not exist.
    """
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

    plugin = missing_plugin_line(err)
    if plugin is not None:
        return plugin
    if isinstance(err, OverrideParseException):
        return (f"override {err.override!r}: {first_line(err.message)} (Hydra's override grammar: key=value; "
                "quote a value holding , = [ ] or spaces: 'key=\"a, b\"'; key=a,b sweeps with -m)")
    if isinstance(err, MissingConfigException) and err.missing_cfg_file:
        options = f"; available: {', '.join(err.options)}" if err.options else ""
        return f"no config {err.missing_cfg_file!r}{options}"
    cause = err.__cause__
    if isinstance(cause, ConfigAttributeError | ConfigKeyError) and cause.full_key:
        close = difflib.get_close_matches(cause.full_key, keys(), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"{cause.full_key}: no such config key{hint}"
    if isinstance(cause, OmegaConfBaseException) and cause.full_key:
        return f"{cause.full_key}: {first_line(str(cause))}"
    lines = [first_line(part) for part in str(err).split("\n") if first_line(part)]
    return "; ".join(lines) if lines else type(err).__name__


def inside_job(err: BaseException) -> bool:
    """Whether ``err`` was raised while Hydra ran the job itself (then it is the job's error, not Hydra's)."""
    tb = err.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "run_job" and "hydra" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def run_hydra(main: Callable[[], Any], keys: Callable[[], list[str]]) -> None:
    """Call a ``@hydra.main`` function; Hydra's own errors and unwritable outputs become one line, exit 2.

    Hydra prints its composition errors over several lines and exits 1; here they are raised (by setting
    ``HYDRA_FULL_ERROR=1``) and reported by :func:`hydra_error_line`. Errors raised while the job runs keep
    the job's own policy (:func:`user_errors_exit`). A user who set ``HYDRA_FULL_ERROR=1`` gets Hydra's report.
    """
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        main()
        return
    from hydra.errors import HydraException

    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        with signals_raise_interrupted():
            main()
    except HydraException as err:
        if inside_job(err):
            raise
        fail(hydra_error_line(err, keys))
    except Interrupted as stop:
        fail(f"interrupted by {signal.Signals(stop.signum).name}", 128 + stop.signum)
    except BrokenPipeError:  # --help or --cfg into a reader that stopped early
        reader_gone()
    except ValueError as err:  # Hydra reading the command line (flags that exclude each other, a number too long)
        if inside_job(err):
            raise
        fail(f"command line: {first_line(str(err))}")
    except ImportError as err:  # a launcher or sweeper plugin importing what is not installed
        line = None if inside_job(err) else missing_plugin_line(err)
        if line is None:
            raise
        fail(line)
    except ConnectionError as err:  # a launcher that cannot reach its cluster (hydra/launcher=ray_cluster)
        if inside_job(err):
            raise
        fail(f"the sweep's launcher cannot reach its cluster: {first_line(str(err))} (hydra/launcher=ray_cluster: "
             "start Ray there, or give hydra.launcher.ray.init.address=<head>:<port>)")
    except OSError as err:  # Hydra creating the output folder or writing .hydra/ and the job's log
        line = os_error_line(err)
        if line is None:
            raise
        fail(line)
    finally:
        del os.environ["HYDRA_FULL_ERROR"]  # the user's choice again (a caller may run another command)
