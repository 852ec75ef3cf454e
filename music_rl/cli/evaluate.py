"""``music-rl evaluate``: evaluate a saved run again, against ground-truth simulated listeners.

    music-rl evaluate run_dir=outputs/runs/<date>/<time> [n_episodes=500] [protocol=population] [out=m.json]

Uses the run's saved config (``.hydra/config.yaml``), world and ``<algo>.zip`` (``vae.pt`` is checked against the
world); prints the per-policy table and writes the metrics JSON to ``out`` when given (the run's own
``metrics.json`` is left untouched). A missing, corrupt or foreign artifact is one ``error:`` line, exit 2.
"""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import hydra
from omegaconf import MISSING, DictConfig

from music_rl.cli.app import App
from music_rl.cli.errors import user_errors_exit
from music_rl.evaluation.evaluate import Protocol


@dataclass
class EvaluateConfig:
    """Arguments of ``music-rl evaluate``."""

    run_dir: str = MISSING
    """the run folder to evaluate (outputs/runs/<date>/<time>)"""
    n_episodes: int | None = None
    """evaluation sessions per policy; null: the run's eval.n_episodes"""
    protocol: Protocol | None = None
    """personal | population; null: the run's eval.protocol"""
    log: str | None = None
    """estimate the run's policies off-policy on this log instead (CSV or Parquet with from_track_id, candidates
    and action_prob, as music-rl writes them), with no simulator; the JSON goes to out (default
    <run_dir>/ope.json)"""
    out: str | None = None
    """write the metrics JSON to this file; null: print the table only (with log=: <run_dir>/ope.json)"""
    lock_timeout: float = 600.0
    """an out= inside the run folder is written under its lock: seconds to wait for it"""


app = App("evaluate", EvaluateConfig)


@hydra.main(version_base="1.3", config_path=app.config_path, config_name=app.name)
@user_errors_exit
def main(raw: DictConfig) -> None:
    """Load the run, evaluate every policy, print and optionally save the metrics."""
    from music_rl.config import load_run_config
    from music_rl.core.atomic import output_problem, write_json_atomic
    from music_rl.core.errors import ConfigError, RunFolderError, not_a
    from music_rl.reports.report import metrics_table, ope_table
    from music_rl.runs.run_folder import check_output, hold
    from music_rl.training.scoring import estimate_run_log, reevaluate

    args: EvaluateConfig = app.typed(raw)
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise RunFolderError(f"run_dir={args.run_dir!r}: {not_a(run_dir, 'folder')}")
    if args.out and output_problem(args.out):
        raise ConfigError(f"out={args.out!r}: {output_problem(args.out)}; give the path of the JSON file to write")
    if args.out:
        check_output(Path(args.out), own=("ope.json",))  # refused before the work, not after
    cfg = load_run_config(run_dir)
    check_trained(run_dir, cfg.algo)
    if args.n_episodes is not None:
        cfg.eval = dataclasses.replace(cfg.eval, n_episodes=args.n_episodes)
    if args.protocol is not None:
        cfg.eval = dataclasses.replace(cfg.eval, protocol=args.protocol)
    cfg.eval.validate()
    if args.log:
        metrics = estimate_run_log(run_dir, cfg, args.log)
        print(ope_table(metrics))
        args.out = args.out or str(run_dir / "ope.json")
    else:
        metrics = reevaluate(run_dir, cfg)
        print(metrics_table(metrics))
    if args.out:
        folder = check_output(Path(args.out), own=("ope.json",))
        with hold(folder, wait=args.lock_timeout, command="music-rl evaluate") if folder else nullcontext():
            write_json_atomic(args.out, metrics)


def check_trained(run_dir: Path, algo: str) -> None:
    """Refuse a run folder without its trained model (``<algo>.zip``) in one line saying why: a run still training
    (its lock's holder), or an interrupted one (to resume); a folder that is neither is left to the loader's line."""
    from music_rl.core.errors import RunFolderError
    from music_rl.learners.models import model_path
    from music_rl.runs.run_folder import active_holder, held_run

    path = model_path(run_dir, 1, algo)
    if path.is_file():
        return
    busy = active_holder(run_dir)
    if busy:
        raise RunFolderError(f"{path}: missing: the run is still in progress (in use by {busy}); evaluate it once it "
                             "has finished")
    what = held_run(run_dir)
    if what and what.startswith("an interrupted run"):
        raise RunFolderError(f"{path}: missing: {run_dir} holds {what}; finish it first: music-rl train "
                             f"hydra.run.dir={run_dir} resume=true")


if __name__ == "__main__":
    app.run(main)
