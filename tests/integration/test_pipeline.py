"""End to end on a tiny budget: the run folder, alignment, determinism, reproduce, TensorBoard, CLI errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, train_here, train_in_process

pytestmark = pytest.mark.slow  # trains (a tiny budget, still seconds per test)

PERIODIC = ("ppo.total_timesteps=2048", "eval.eval_freq=1024", "eval.n_episodes=10", "eval.periodic_episodes=4",
            "ppo.checkpoint_freq=1024")  # two rollouts: a periodic evaluation and a checkpoint in between


def train(run_dir: Path, *overrides: str) -> None:
    """Train a tiny run with a periodic evaluation into ``run_dir``, in this process (:func:`train_in_process`: the
    reproduce command below is a fresh process, the same bytes expected)."""
    train_in_process(run_dir, *PERIODIC, *overrides)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "a"
    train(out)
    return out


def test_run_folder_holds_every_artifact(run_dir):
    for name in (
        ".hydra/config.yaml",
        ".hydra/overrides.yaml",
        ".hydra/hydra.yaml",
        "vae.pt",
        "ppo.zip",
        "feedback.csv",
        "metrics.json",
        "run_info.json",
        "world/tracks.csv",
        "world/features.npy",
        "world/latents.npy",
        "world/neighbours.npy",
        "world/clusters.npy",
        "world/reward_table.npy",
    ):
        assert (run_dir / name).exists(), name
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    assert list((run_dir / "checkpoints").glob("ppo_*_steps.zip"))
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["seed"] == 0 and set(info["wall_time_s"]) >= {"catalog", "vae", "world", "ppo", "evaluation"}
    assert info["versions"]["torch"] and info["git_commit"]


def test_metrics_json_has_every_policy_and_metric(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["policies"]) == {"ppo", "ppo_sample", "random", "nearest", "greedy", "oracle", "oracle_catalog",
                                        "planner"}
    for values in metrics["policies"].values():
        for key in (
            "mean_reward",
            "mean_return",
            "like_rate",
            "mean_pct_listened",
            "skip_rate",
            "early_skip_rate",
            "coverage",
            "diversity",
        ):
            assert np.isfinite(values[key]), key
        assert values["mean_reward_ci95"] > 0
    assert np.isfinite(metrics["normalized_score"])
    # the oracle is the best myopic policy in expectation (PPO and the planner plan: they may do better)
    oracle = metrics["policies"]["oracle"]["mean_expected_reward"]
    assert all(v["mean_expected_reward"] <= oracle + 1e-9 for k, v in metrics["policies"].items()
               if k in ("random", "nearest", "greedy"))
    assert metrics["normalized_score_planner"] is not None and "planner_minus_oracle" in metrics


def test_encoding_saved_features_with_saved_vae_gives_saved_latents(run_dir):
    from vae.encoder import LatentEncoder

    ckpt = torch.load(run_dir / "vae.pt", weights_only=True)
    encoder = LatentEncoder.from_checkpoint(ckpt)
    features = np.load(run_dir / "world" / "features.npy")
    latents = np.load(run_dir / "world" / "latents.npy")
    np.testing.assert_array_equal(encoder.transform(features), latents)
    assert latents.min() >= 0 and latents.max() <= 1


def test_tensorboard_events_hold_scalars_and_hparams(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in (
        "vae/train/loss",
        "vae/val/loss",
        "propagation/spearman",
        "rollout/like_rate",
        "rollout/skip_rate",
        "rollout/mean_pct_listened",
        "eval/mean_reward",
        "eval/normalized_score",
        "train/value_loss",
        "hparams/normalized_score",
    ):
        assert tag in tags, tag
    plugin = acc.PluginTagToContent("hparams")
    assert "_hparams_/session_start_info" in plugin and "_hparams_/experiment" in plugin
    from tensorboard.plugins.hparams import plugin_data_pb2

    start = plugin_data_pb2.HParamsPluginData.FromString(
        plugin["_hparams_/session_start_info"]
    ).session_start_info
    assert {
        "latent_dim",
        "like_weight",
        "decay",
        "observation",
        "reward_source",
        "n_clusters",
        "seed",
        "total_timesteps",
    } <= set(start.hparams)


def test_same_seed_same_metrics_and_reproduce_command(run_dir, tmp_path):
    again = tmp_path / "reproduced"
    cmd = [
        sys.executable,
        str(ROOT / "scripts" / "train.py"),
        "--config-dir",
        str(run_dir / ".hydra"),
        "--config-name",
        "config",
        f"hydra.run.dir={again}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (again / "metrics.json").read_bytes() == (run_dir / "metrics.json").read_bytes()


def test_another_seed_gives_other_results(run_dir, tmp_path):
    other = tmp_path / "seed1"
    train(other, "seed=1")
    assert (other / "metrics.json").read_bytes() != (run_dir / "metrics.json").read_bytes()
    assert not np.array_equal(
        np.load(other / "world" / "latents.npy"), np.load(run_dir / "world" / "latents.npy")
    )


@pytest.mark.parametrize(
    "override, message",
    [
        ("vae.latent_dim=0", "vae.latent_dim=0"),
        ("vae.latent_dim=abc", "vae.latent_dim"),
        ("reward.decay=cubic", "reward.decay: Invalid value 'cubic', expected one of [linear, exponential"),
    ],
)
def test_cli_bad_config_is_one_line_and_exit_2_before_any_work(tmp_path, capsys, override, message):
    out = tmp_path / "bad"
    proc = train_here(capsys, out, override)
    assert proc.returncode == 2
    err_lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(err_lines) == 1 and message in err_lines[0] and err_lines[0].startswith("error:")
    assert not (out / "world").exists() and not (out / "vae.pt").exists()
