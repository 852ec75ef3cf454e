"""``music-rl <command> [key=value ...]``: the one console command in front of every entry point.

Each command is a Hydra app of this package (``music_rl/cli/<module>.py``, also runnable as ``scripts/<script>.py``):
``music-rl <command> --help`` lists its keys. The interrupt handler is installed first, before any heavy
import: SIGINT or SIGTERM at any moment ends in one line and exit 128 + signal (:mod:`music_rl.cli.errors`).
"""

from __future__ import annotations

import difflib
import importlib
import os
import signal
import sys
from types import FrameType

# each command's module and its one-line summary (music-rl --help, music-rl <command> --help): written here only
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("music_rl.cli.train", "train a run: catalog -> VAE -> world -> PPO -> evaluation, into a run folder"),
    "evaluate": ("music_rl.cli.evaluate", "evaluate a saved run again against ground-truth simulated listeners"),
    "compare": ("music_rl.cli.compare", "the jobs of a sweep side by side, replicates aggregated with intervals"),
    "recommend": ("music_rl.cli.recommend", "a session of next tracks from a saved run (cold start, fine-tune)"),
    "finetune": ("music_rl.cli.finetune", "fine-tune a saved run from new feedback (writes the next model version)"),
    "simulate": ("music_rl.cli.simulate", "the online-learning loop against a frozen policy, for a simulated listener"),
    "bench": ("music_rl.cli.bench", "speed, memory and scale benchmarks -> bench.json"),
    "tables": ("music_rl.cli.tables", "the result tables of README.md and docs/ from the result files in results/"),
}


def usage() -> str:
    """The list of commands."""
    width = max(map(len, COMMANDS))
    lines = ["usage: music-rl <command> [key=value ...]   (music-rl <command> --help: its keys)", "", "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines)


def _interrupted_early(signum: int, frame: FrameType | None) -> None:
    """SIGTERM or SIGINT before the error layer is loaded: its line, exit 128 + signal (nothing written yet)."""
    os.write(2, f"error: interrupted by {signal.Signals(signum).name}; nothing was written yet\n".encode())
    os._exit(128 + signum)


def main(command: str | None = None) -> None:
    """Dispatch ``music-rl <command> ...`` to the command's Hydra app (``command``: the wrapper
    ``scripts/<command>.py`` names it, the command line holds only its keys)."""
    for sig in (signal.SIGTERM, signal.SIGINT):  # first, before any import of the project's: its one line
        signal.signal(sig, _interrupted_early)
    from music_rl.cli.errors import fail, install_interrupt_handlers  # light: no numpy, no torch
    from music_rl.core.errors import Interrupted

    install_interrupt_handlers()  # the commands' modules load numpy, torch, Hydra
    try:
        dispatch(sys.argv[1:] if command is None else [command, *sys.argv[1:]])
    except Interrupted as stop:  # between two imports or before Hydra runs (inside, the command's policy)
        fail(str(stop), 128 + stop.signum)


def dispatch(argv: list[str]) -> None:
    """Run the command ``argv[0]`` with the arguments ``argv[1:]``."""
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        sys.exit(0 if argv else 2)
    name = argv[0]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        from music_rl.cli.errors import fail

        fail(f"music-rl: no command {name!r}{hint}; one of {', '.join(COMMANDS)}")
    module = importlib.import_module(COMMANDS[name][0])
    sys.argv = [f"music-rl {name}", *argv[1:]]
    module.app.run(module.main)


if __name__ == "__main__":
    main()
