"""TensorBoard's first screen is what a user compares: the swept keys first in HParams, the headline scores and
learning curves first in Time Series, the baselines' figures in one table and one readable figure."""

from __future__ import annotations

import json
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import yaml
from conftest import ROOT, TINY
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.util import tensor_util

from music_rl.config import TrainConfig
from music_rl.reports.overrides import swept_overrides
from music_rl.reports.report import results_markdown
from music_rl.training.results_log import hparams
from music_rl.training.tensorboard import log_hparams, open_logger, policies_figure

POLICIES = ("ppo", "ppo_sample", "random", "nearest", "greedy", "oracle", "planner")


def events(folder: Path) -> EventAccumulator:
    """Every event of a TensorBoard folder, loaded whole."""
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0, "images": 0})
    acc.Reload()
    return acc


def experiment(acc: EventAccumulator):
    """The HParams experiment a run's events describe."""
    content = acc.PluginTagToContent("hparams")["_hparams_/experiment"]
    return plugin_data_pb2.HParamsPluginData.FromString(content).experiment


def shown_first(exp, n: int = 5) -> list[str]:
    """The hparams TensorBoard's HParams table shows: its backend sorts them differing first, then by name, and
    its table shows the first five."""
    return [info.name for info in sorted(exp.hparam_infos, key=lambda info: (not info.differs, info.name))][:n]


def test_the_hparams_that_differ_are_marked_and_listed_first(tmp_path):
    logger = open_logger(tmp_path / "tb")
    values = {"action": "discrete", "algo": "ppo", "data_source": "synthetic", "latent_dim": 2, "seed": 1,
              "decay": "exponential", "ent_coef": 0.01}
    log_hparams(logger, values, {"hparams/normalized_score": 0.5, "hparams/ppo_like_rate": 0.1}, 1024,
                differ=["seed", "latent_dim"])
    logger.close()
    acc = events(tmp_path / "tb")
    exp = experiment(acc)
    assert [info.name for info in exp.hparam_infos[:2]] == ["latent_dim", "seed"]
    assert {info.name for info in exp.hparam_infos if info.differs} == {"latent_dim", "seed"}
    assert shown_first(exp)[:2] == ["latent_dim", "seed"]
    assert [(m.name.tag, m.display_name) for m in exp.metric_infos] == [
        ("hparams/normalized_score", "normalized_score"), ("hparams/ppo_like_rate", "ppo_like_rate")]
    start = plugin_data_pb2.HParamsPluginData.FromString(
        acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["latent_dim"].number_value == 2 and start.hparams["algo"].string_value == "ppo"
    assert acc.Scalars("hparams/normalized_score")[0].value == 0.5


def test_without_a_sweep_nothing_is_marked(tmp_path):
    logger = open_logger(tmp_path / "tb")
    log_hparams(logger, {"latent_dim": 2, "seed": 0}, {"hparams/normalized_score": 0.5}, 1)
    logger.close()
    assert not any(info.differs for info in experiment(events(tmp_path / "tb")).hparam_infos)


def job_folder(folder: Path, overrides: list[str], mode: str) -> Path:
    """A job folder as Hydra writes it: ``.hydra/overrides.yaml`` and the mode in ``.hydra/hydra.yaml``."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"mode": mode}}))
    return folder


def test_a_sweep_job_differs_in_its_swept_keys_only(tmp_path):
    sweep = tmp_path / "sweep"
    job = job_folder(sweep / "3_seed-1", ["+experiment=tiny", "vae.latent_dim=4", "seed=1", "resume=true",
                                          "ppo.clip_range=0.3"], "MULTIRUN")
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": [
        "+experiment=tiny", "vae.latent_dim=2,4", "seed=range(2)", "resume=true"]}}}))
    # ppo.clip_range: set by the sweeper (hydra.sweeper.params), absent from the command line
    assert swept_overrides(job) == {"vae.latent_dim": "4", "seed": "1", "ppo.clip_range": "0.3"}


def test_a_single_run_differs_in_its_command_line(tmp_path):
    run = job_folder(tmp_path / "run", ["+experiment=tiny", "vae.latent_dim=4", "overwrite=true"], "RUN")
    assert swept_overrides(run) == {"experiment": "tiny", "vae.latent_dim": "4"}
    assert swept_overrides(tmp_path / "not_hydra") == {}


def test_a_swept_key_without_an_hparams_name_is_added_under_its_own():
    values = hparams(TrainConfig(), {"vae.latent_dim": "5", "ppo.clip_range": "0.2", "experiment": "tiny"})
    assert values["latent_dim"] == 5 and "vae.latent_dim" not in values
    assert values["ppo.clip_range"] == 0.2 and values["experiment"] == "tiny"
    assert set(hparams(TrainConfig())) == set(values) - {"ppo.clip_range", "experiment"}


def metrics_of(names: tuple[str, ...]) -> dict:
    """A metrics.json-like entry: every policy with the figures the table and figure read."""
    keys = ("mean_reward", "mean_expected_reward", "like_rate", "mean_pct_listened", "skip_rate", "coverage")
    policies = {name: {**{k: 0.1 * i for k in keys}, **{f"{k}_ci95": 0.05 for k in keys}}
                for i, name in enumerate(names)}
    return {"policies": policies, "normalized_score": 0.4, "normalized_score_realised": 0.3,
            "ope": {"log_steps": 100, "policies": {n: {"ips": {"value": 0.5, "ci95": 0.1}, "truth": 0.4}
                                                   for n in names},
                    "rank_correlation": {"ips": 0.8}}}


def test_the_policy_names_of_the_figure_never_overlap():
    fig = policies_figure(metrics_of(POLICIES)["policies"])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = [t for ax in fig.axes for t in (*ax.get_xticklabels(), *ax.get_yticklabels())
              if t.get_text() in POLICIES and t.get_visible()]
    assert {t.get_text() for t in labels} == set(POLICIES)
    boxes = [t.get_window_extent(renderer) for t in labels]
    assert not any(a.overlaps(b) for a, b in combinations(boxes, 2))
    plt.close(fig)


def test_every_figure_of_every_policy_is_in_one_table():
    text = results_markdown(metrics_of(POLICIES))
    for name in POLICIES:
        assert f"| {name} | 0." in text
    assert "| policy | mean_reward | mean_expected_reward | like_rate" in text
    assert "| policy | ips | truth |" in text and "ips 0.800" in text


@pytest.mark.slow
def test_a_sweep_opens_on_its_swept_keys_scores_and_curves(tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "-m", *TINY, "seed=0,1",
                           "eval.eval_freq=512", "hydra.launcher.n_jobs=1", f"hydra.sweep.dir={sweep}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if (p / "tb").is_dir())
    assert len(jobs) == 2
    for job in jobs:
        acc = events(job / "tb")
        exp = experiment(acc)
        assert {info.name for info in exp.hparam_infos if info.differs} == {"seed"}  # +experiment, eval: constant
        assert shown_first(exp)[0] == "seed"
        assert [m.display_name for m in exp.metric_infos][:3] == ["normalized_score", "normalized_score_catalog",
                                                                  "normalized_score_planner"]
        tags = acc.Tags()
        # Time Series groups cards by the tag's first part, in name order, and opens the first two groups
        groups = sorted({tag.split("/")[0] for tag in (*tags["scalars"], *tags["images"])})
        assert groups[:2] == ["eval", "hparams"]
        single = {tag for tag in tags["scalars"] if len(acc.Scalars(tag)) == 1}
        assert single <= {f"hparams/{m.name.tag.split('/')[-1]}" for m in exp.metric_infos} | {
            "propagation/pearson", "propagation/spearman", "propagation/rmse"}
        assert "policies/final" in tags["images"]
        table = tensor_util.make_ndarray(acc.Tensors("policies/table/text_summary")[-1].tensor_proto)[0].decode()
        for name in json.loads((job / "metrics.json").read_text())["policies"]:
            assert f"| {name} |" in table
