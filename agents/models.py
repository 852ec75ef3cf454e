"""The SB3 models of a run folder: saved atomically, loaded checked, versioned.

``ppo.zip`` is version 1 (the trained model); every fine-tune writes ``ppo-v<N>.zip`` and the reward table it
learnt from, ``world/reward_table-v<N>.npy``, next to the old ones, which are never overwritten. While
training, ``checkpoints/ppo_<n>_steps.zip`` hold the policy after ``n`` timesteps.

:func:`load_model` loads a whole PPO model (to train it further, or as a checkpoint to resume);
:func:`load_policy` only its policy network, for inference (no optimizer: loading stays fast).
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

from stable_baselines3 import PPO
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.vec_env import VecEnv

from envs.atomic import atomic_path
from envs.errors import RunFolderError

MODEL_RE = re.compile(r"^ppo(?:-v(\d+))?\.zip$")
CHECKPOINT_RE = re.compile(r"^ppo_(\d+)_steps\.zip$")
# What SB3's loader raises for a file that is truncated, corrupt or not an SB3 model at all.
LOAD_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile, EOFError, KeyError, ValueError, RuntimeError, OSError, AssertionError,
    pickle.UnpicklingError, TypeError, AttributeError, ImportError, IndexError)


def model_path(run_dir: Path, version: int) -> Path:
    """``ppo.zip`` for version 1, ``ppo-v<N>.zip`` after that."""
    return run_dir / ("ppo.zip" if version == 1 else f"ppo-v{version}.zip")


def reward_table_path(run_dir: Path, version: int) -> Path:
    """The reward table a model version learnt from."""
    return run_dir / "world" / ("reward_table.npy" if version == 1 else f"reward_table-v{version}.npy")


def model_versions(run_dir: Path) -> list[int]:
    """The model versions present in a run folder, ascending."""
    return sorted(int(m.group(1) or 1) for p in run_dir.glob("ppo*.zip") if (m := MODEL_RE.match(p.name)))


def latest_checkpoint(folder: Path) -> Path | None:
    """The checkpoint with the most timesteps in ``folder`` (``ppo_<n>_steps.zip``), or None."""
    found = [(int(m.group(1)), p) for p in folder.glob("ppo_*_steps.zip") if (m := CHECKPOINT_RE.match(p.name))]
    return max(found)[1] if found else None


def save_model_atomic(model: PPO, path: Path) -> None:
    """Save an SB3 model to ``path`` atomically (a crash never leaves a torn zip under that name)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            model.save(fh)


def _first_line(err: BaseException) -> str:
    """``<type>: <first line of the message>`` of an exception."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:200]}" if text else f"{type(err).__name__} (truncated?)"


def load_model(path: Path, env: VecEnv | None = None) -> PPO:
    """A whole SB3 PPO model (``ppo.zip``, a version or a checkpoint) through SB3's own loader, on the CPU.

    Raises :class:`RunFolderError` naming the file when it is missing, truncated, corrupt or does not fit
    ``env`` (another observation or action space).
    """
    if not path.is_file():
        raise RunFolderError(f"{path}: missing")
    try:
        return PPO.load(path, env=env, device="cpu")
    except LOAD_ERRORS as err:
        raise RunFolderError(f"{path}: not a loadable SB3 PPO model for this run ({_first_line(err)})") from None


class _NoOptimizer:
    """The optimizer of a policy that is only evaluated. Creating a torch optimizer imports torch._dynamo on
    first use, a second or more: most of what loading a run would cost otherwise."""

    def __init__(self, params: Any, **kwargs: Any) -> None:
        del params, kwargs


def load_policy(path: Path) -> ActorCriticPolicy:
    """The policy network of an SB3 PPO model file, for inference (no optimizer, evaluation mode).

    A missing, truncated or foreign file is a :class:`RunFolderError`.
    """
    if not path.is_file():
        raise RunFolderError(f"{path}: missing")
    try:
        data, params, _ = load_from_zip_file(path, device="cpu")
        kwargs = dict(data["policy_kwargs"], optimizer_class=_NoOptimizer, ortho_init=False)
        policy = data["policy_class"](data["observation_space"], data["action_space"], data["lr_schedule"],
                                      **kwargs)
        policy.load_state_dict(params["policy"])
    except LOAD_ERRORS as err:
        raise RunFolderError(f"{path}: not a loadable SB3 PPO model for this run ({_first_line(err)})") from None
    policy.set_training_mode(False)
    return policy
