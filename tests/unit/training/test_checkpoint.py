"""The checkpoints of a training run (music_rl/training/callbacks.py, RolloutCheckpointCallback) on a small PPO in
this process: named as ``resume=true`` reads them, holding the policy trained on whole rollouts, written
atomically, pruned to the newest, and one on SIGTERM at the end of the step (the whole command's interruption and
resume: tests/integration/test_interrupt.py)."""

from __future__ import annotations

import signal
from pathlib import Path

import gymnasium as gym
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList

from music_rl.learners.models import latest_checkpoint
from music_rl.training.callbacks import RolloutCheckpointCallback

ROLLOUT = 32  # n_steps x n_envs


def small_ppo() -> PPO:
    return PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=ROLLOUT, batch_size=ROLLOUT, n_epochs=1, seed=0,
               device="cpu")


def saved(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def steps_in(path: Path) -> int:
    return PPO.load(path, device="cpu").num_timesteps


class RaiseAt(BaseCallback):
    """Send this process ``signum`` during the step that reaches ``timesteps``."""

    def __init__(self, timesteps: int, signum: int) -> None:
        super().__init__()
        self.timesteps, self.signum = timesteps, signum

    def _on_step(self) -> bool:
        if self.num_timesteps == self.timesteps:
            signal.raise_signal(self.signum)
        return True


def test_periodic_checkpoints_hold_whole_rollouts_and_only_the_newest_are_kept(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    checkpoints = RolloutCheckpointCallback(tmp_path, save_freq=2 * ROLLOUT, keep=2)
    small_ppo().learn(6 * ROLLOUT, callback=checkpoints)
    # due at 64 and 128 (saved when the rollout ending there has trained), 192 at the end; 64 pruned
    assert saved(tmp_path) == ["ppo_128_steps.zip", "ppo_192_steps.zip"]  # no temporary left either
    assert [steps_in(tmp_path / name) for name in saved(tmp_path)] == [128, 192]
    assert latest_checkpoint(tmp_path, "ppo") == tmp_path / "ppo_192_steps.zip"  # what resume=true continues from
    assert checkpoints.interrupted is None
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is training's only


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_the_trained_rollouts_once_and_stops_training(tmp_path, signum):
    before = signal.getsignal(signum)
    checkpoints = RolloutCheckpointCallback(tmp_path, save_freq=1000)
    model = small_ppo()
    model.learn(10 * ROLLOUT, callback=CallbackList([RaiseAt(ROLLOUT + 8, signum), checkpoints]))
    assert checkpoints.interrupted == signum
    # the second rollout's 8 steps were never trained on: the checkpoint is the first rollout's policy
    assert saved(tmp_path) == [f"ppo_{ROLLOUT}_steps.zip"] and steps_in(tmp_path / saved(tmp_path)[0]) == ROLLOUT
    assert model.num_timesteps == ROLLOUT + 8  # stopped at the end of that step, not at the asked total
    assert signal.getsignal(signum) is before


def test_a_failed_write_leaves_no_checkpoint_and_keeps_the_previous_one(tmp_path):
    model = small_ppo()
    checkpoints = RolloutCheckpointCallback(tmp_path, save_freq=ROLLOUT, keep=1)
    checkpoints.init_callback(model)
    checkpoints.save(ROLLOUT)

    def full_disk(file: object) -> None:
        file.write(b"PK\x03\x04 half a zip")  # type: ignore[attr-defined]
        raise OSError(28, "No space left on device")

    model.save = full_disk  # type: ignore[method-assign]
    with pytest.raises(OSError, match="No space left"):
        checkpoints.save(2 * ROLLOUT)
    assert saved(tmp_path) == [f"ppo_{ROLLOUT}_steps.zip"]  # neither a torn file nor a temporary, none pruned
    assert steps_in(tmp_path / saved(tmp_path)[0]) == ROLLOUT
