"""Time to quality: the learning curve against training time, the time to 95% of the final score, the early
stop on a plateau, the learning-rate schedule and the pinned v1 defaults."""

from __future__ import annotations

import json

import pytest
from conftest import compose, train_in_process
from stable_baselines3 import PPO

from music_rl.config import load_config
from music_rl.learners.ppo import LinearDecay
from music_rl.training.callbacks import smoothed, time_to_quality


def test_smoothed_is_a_running_mean_of_the_defined_scores():
    assert smoothed([None, 1.0, 2.0, 3.0, None, 6.0]) == [None, 1.0, 1.5, 2.0, 2.5, 4.5]


def _curve(scores: list[float]) -> list[dict[str, float]]:
    return [{"timesteps": 100 * (i + 1), "train_s": float(i + 1), "normalized_score": s, "smoothed": m}
            for i, (s, m) in enumerate(zip(scores, smoothed(scores), strict=True))]


def test_time_to_quality_is_the_first_evaluation_at_95_percent_of_the_final_smoothed_score():
    curve = _curve([0.2, 0.6, 1.0, 1.0, 1.0, 1.0])  # smoothed: 0.2, 0.4, 0.6, 0.867, 1.0, 1.0
    assert time_to_quality(curve) == {"fraction": 0.95, "final": 1.0, "timesteps": 500, "train_s": 5.0}
    assert time_to_quality(curve, fraction=0.5)["timesteps"] == 300


@pytest.mark.parametrize("scores", [[], [0.3, -0.1, -0.4]])
def test_time_to_quality_is_undefined_without_a_positive_final_score(scores):
    assert time_to_quality(_curve(scores)) is None


def test_the_linear_schedule_decays_to_zero():
    decay = LinearDecay(1e-3)
    assert (decay(1.0), decay(0.5), decay(0.0)) == (1e-3, 5e-4, 0.0)


def test_defaults_v1_pins_the_first_version_and_defaults_v2_is_today():
    v1 = load_config(compose("+experiment=defaults_v1"))
    assert (v1.ppo.total_timesteps, v1.ppo.n_envs, v1.ppo.batch_size, v1.ppo.n_epochs, v1.ppo.learning_rate) == \
        (600_000, 8, 256, 10, 3e-4)
    assert (v1.eval.planner.n_episodes, v1.eval.ope_log_steps) == (0, 0)
    assert load_config(compose("+experiment=defaults_v2")) == load_config(compose())


@pytest.mark.slow
def test_evaluations_fall_between_rollouts_and_when_training_ends(tmp_path):
    """Rollouts of 2 x 256 steps, an evaluation every 256 steps: at the rollout boundaries 512, 1024, 1536 and
    at the end, 2048 (each scores a policy trained on exactly those steps); no plateau, no stop."""
    run = tmp_path / "run"
    train_in_process(run, "ppo.total_timesteps=2048", "eval.eval_freq=256", "ppo.lr_schedule=linear")
    info = json.loads((run / "run_info.json").read_text())
    assert [p["timesteps"] for p in info["learning_curve"]] == [512, 1024, 1536, 2048]
    assert all(p["train_s"] > 0 for p in info["learning_curve"]) and "stopped_on_plateau" not in info
    assert info["time_to_quality"] is None or info["time_to_quality"]["timesteps"] in (512, 1024, 1536, 2048)


@pytest.mark.slow
def test_a_plateau_stops_training_and_is_logged(tmp_path):
    """A rise of 10 is never reached: with patience 1 training stops at the second evaluation (1024 steps of
    2048); the next rollout's steps are dropped, so the saved model and its checkpoint are the 1024-step
    policy; run_info and TensorBoard say where it stopped."""
    run = tmp_path / "run"
    train_in_process(run, "ppo.total_timesteps=2048", "eval.eval_freq=512", "eval.stop_on_plateau=true",
                     "eval.plateau_patience=1", "eval.plateau_delta=10")
    info = json.loads((run / "run_info.json").read_text())
    assert info["stopped_on_plateau"] == 1024 and info["ppo_timesteps"] == 1024
    assert [p["timesteps"] for p in info["learning_curve"]] == [512, 1024]
    assert {p.name for p in (run / "checkpoints").glob("*.zip")} == {"ppo_512_steps.zip", "ppo_1024_steps.zip"}
    assert PPO.load(run / "ppo.zip", device="cpu").num_timesteps == 1024
    scalars = b"".join(p.read_bytes() for p in (run / "tb").rglob("events.out.tfevents.*"))
    assert b"eval/stopped_on_plateau" in scalars
    scalars = b"".join(p.read_bytes() for p in (run / "tb").rglob("events.out.tfevents.*"))
    assert b"eval/stopped_on_plateau" in scalars

    # resume=true goes on from the stop to ppo.total_timesteps (the plateau check starts again from its own
    # evaluations); what came before the resume is kept
    train_in_process(run, "ppo.total_timesteps=2048", "eval.eval_freq=512", "resume=true")
    info = json.loads((run / "run_info.json").read_text())
    assert info["ppo_timesteps"] == 2048 and "stopped_on_plateau" not in info
    assert [p["timesteps"] for p in info["learning_curve"]] == [1536, 2048]
