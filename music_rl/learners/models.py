"""The SB3 models of a run folder: saved atomically, loaded checked, versioned.

A run's model files are named by its ``algo`` (:data:`MODEL_CLASSES`; ``<algo>`` below); a file another
algorithm saved is refused (:func:`check_algo`: a model copied from another run). ``<algo>.zip`` is version 1
(the trained model); every fine-tune writes ``<algo>-v<N>.zip`` and the reward table it learnt from,
``world/reward_table-v<N>.npy``, next to the old ones, which are never overwritten. While training,
``checkpoints/<algo>_<n>_steps.zip`` hold the policy after ``n`` timesteps. An off-policy model's file holds no
replay buffer (SB3 saves it apart; a loaded SAC or TD3 starts with an empty one).

:func:`load_model` loads a whole model (to train it further, or as a checkpoint to resume);
:func:`load_policy` only its policy network, for inference (no optimizer: loading stays fast);
:func:`load_encoder` the run's VAE (``vae.pt``). A model file saved before the modules moved into ``music_rl``
names its classes by their old module paths; both loaders map them (:data:`LEGACY_MODULES`).
"""

from __future__ import annotations

import importlib
import pickle
import re
import shlex
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from sb3_contrib import QRDQN, RecurrentPPO
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from sb3_contrib.qrdqn.policies import QRDQNPolicy
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.dqn.policies import DQNPolicy
from stable_baselines3.sac.policies import SACPolicy
from stable_baselines3.td3.policies import TD3Policy

from music_rl.core.atomic import atomic_path
from music_rl.core.errors import RunFolderError, not_a
from vae.encoder import LatentEncoder

MODEL_CLASSES: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "sac": SAC, "td3": TD3, "dqn": DQN, "qrdqn": QRDQN,
                                                  "recurrent_ppo": RecurrentPPO, "a2c": A2C}
MODEL_FILES = tuple(f"{algo}.zip" for algo in MODEL_CLASSES)  # version 1 of a run of each algorithm
CHECKPOINT_RE = re.compile(rf"^(?:{'|'.join(MODEL_CLASSES)})_(\d+)_steps\.zip$")
# The policy class each algorithm saves (the most specific first): what tells a model file's algorithm.
POLICY_BASES: tuple[tuple[type[BasePolicy], str], ...] = (
    (RecurrentActorCriticPolicy, "recurrent_ppo"), (ActorCriticPolicy, "ppo or a2c"), (QRDQNPolicy, "qrdqn"),
    (DQNPolicy, "dqn"), (SACPolicy, "sac"), (TD3Policy, "td3"))
# What SB3's loader raises for a file that is truncated, corrupt or not an SB3 model at all.
LOAD_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile, EOFError, KeyError, ValueError, RuntimeError, OSError, AssertionError,
    pickle.UnpicklingError, TypeError, AttributeError, ImportError, IndexError)
# SB3 pickles classes by module path (a model's policy class, PPO's linear learning-rate schedule): the module paths
# model files saved before the layout by role name, and where those modules are now.
LEGACY_MODULES: dict[str, str] = {
    "agents.policies": "music_rl.learners.policies",
    "agents.ppo": "music_rl.learners.ppo",
}


def model_path(run_dir: Path, version: int, algo: str = "ppo") -> Path:
    """``<algo>.zip`` for version 1, ``<algo>-v<N>.zip`` after that."""
    return run_dir / (f"{algo}.zip" if version == 1 else f"{algo}-v{version}.zip")


def reward_table_path(run_dir: Path, version: int) -> Path:
    """The reward table a model version learnt from."""
    return run_dir / "world" / ("reward_table.npy" if version == 1 else f"reward_table-v{version}.npy")


def model_versions(run_dir: Path, algo: str = "ppo") -> list[int]:
    """The model versions of ``algo`` present in a run folder, ascending."""
    pattern = re.compile(rf"^{algo}(?:-v(\d+))?\.zip$")
    return sorted(int(m.group(1) or 1) for p in run_dir.glob(f"{algo}*.zip") if (m := pattern.match(p.name)))


def checkpoint_path(folder: Path, algo: str, timesteps: int) -> Path:
    """``<folder>/<algo>_<timesteps>_steps.zip``."""
    return folder / f"{algo}_{timesteps}_steps.zip"


def latest_checkpoint(folder: Path, algo: str = "ppo") -> Path | None:
    """The checkpoint of ``algo`` with the most timesteps in ``folder`` (``<algo>_<n>_steps.zip``), or None."""
    found = [(int(m.group(1)), p) for p in folder.glob(f"{algo}_*_steps.zip") if (m := CHECKPOINT_RE.match(p.name))]
    return max(found)[1] if found else None


def save_model_atomic(model: BaseAlgorithm, path: Path) -> None:
    """Save an SB3 model to ``path`` atomically (a crash never leaves a torn zip under that name)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            model.save(fh)


def _first_line(err: BaseException) -> str:
    """``<type>: <first line of the message>`` of an exception."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:200]}" if text else f"{type(err).__name__} (truncated?)"


def _unloadable(path: Path, algo: str, err: BaseException) -> RunFolderError:
    return RunFolderError(f"{path}: not a loadable SB3 {algo.upper()} model for this run ({_first_line(err)})")


def file_algo(data: dict[str, Any]) -> str:
    """The algorithm that saved a model file, from its data (SB3's ``data`` entry): its policy class, and for an
    actor-critic PPO's own hyperparameters (``n_epochs``: A2C has none); ``unknown`` for another policy."""
    cls = data.get("policy_class")
    for base, algo in POLICY_BASES:
        if isinstance(cls, type) and issubclass(cls, base):
            return algo if algo != "ppo or a2c" else ("ppo" if "n_epochs" in data else "a2c")
    return "unknown"


def check_algo(path: Path, data: dict[str, Any] | None, algo: str) -> None:
    """Refuse a model file that another algorithm saved than the run's ``algo`` (a file copied from another run),
    or one without SB3's ``data`` entry (SB3 reads a truncated zip as one without it): :class:`RunFolderError`,
    one line."""
    if not data:
        raise _unloadable(path, algo, ValueError("no SB3 data entry: truncated or not an SB3 model file"))
    found = file_algo(data)
    if found != algo:
        raise RunFolderError(f"{path}: a model of algo={found}, but the run's algo is {algo} (a model file of "
                             "another run?)")


def check_fits(path: Path, model: Any, env: Any) -> None:
    """Refuse a model (or policy) at ``path`` whose observation or action space is not ``env``'s: a model of
    another run, or of another action formulation (checked before any work by every command that loads one).

    Raises:
        RunFolderError: the spaces differ.
    """
    if model.observation_space.shape != env.observation_space.shape or model.action_space != env.action_space:
        raise RunFolderError(f"{path}: reads observations {model.observation_space.shape} and acts "
                             f"in {model.action_space}, but the run's world and config give "
                             f"{env.observation_space.shape} and {env.action_space} (a model of another run?)")


@contextmanager
def _legacy_modules() -> Iterator[None]:
    """The old module paths of :data:`LEGACY_MODULES` importable (as their new modules) while a model file is
    unpickled; removed again after."""
    added = [name for name in ("agents", *LEGACY_MODULES) if name not in sys.modules]
    for name in added:
        new = LEGACY_MODULES.get(name)  # None: the old package itself, empty (the unpickler imports it first)
        sys.modules[name] = importlib.import_module(new) if new else ModuleType(name)
    try:
        yield
    finally:
        for old in added:
            del sys.modules[old]


def load_model(path: Path, env: VecEnv | None = None, algo: str = "ppo") -> BaseAlgorithm:
    """A whole SB3 model of ``algo`` (``<algo>.zip``, a version or a checkpoint) through SB3's own loader, on the
    CPU (SAC and TD3 with an empty replay buffer).

    Raises :class:`RunFolderError` naming the file when it is missing, truncated, corrupt or does not fit
    ``env`` (another observation or action space).
    """
    if not path.is_file():
        raise RunFolderError(f"{path}: {'missing' if not path.exists() else not_a(path, 'model file')}")
    try:
        with _legacy_modules():
            data, _, _ = load_from_zip_file(path, device="cpu", load_data=True)
    except LOAD_ERRORS as err:
        raise _unloadable(path, algo, err) from None
    check_algo(path, data, algo)
    try:
        with _legacy_modules():
            return MODEL_CLASSES[algo].load(path, env=env, device="cpu")
    except LOAD_ERRORS as err:
        raise _unloadable(path, algo, err) from None


class _NoOptimizer:
    """The optimizer of a policy that is only evaluated. Creating a torch optimizer imports torch._dynamo on
    first use, a second or more: most of what loading a run would cost otherwise."""

    def __init__(self, params: Any, **kwargs: Any) -> None:
        del params, kwargs


def load_policy(path: Path, algo: str = "ppo") -> BasePolicy:
    """The policy network of an SB3 model file of ``algo``, for inference (no optimizer, evaluation mode): an
    actor-critic (PPO, A2C, RecurrentPPO), DQN's or QR-DQN's Q-networks, SAC's or TD3's actor and critics.

    A missing, truncated or foreign file is a :class:`RunFolderError`.
    """
    if not path.is_file():
        raise RunFolderError(f"{path}: missing")
    try:
        with _legacy_modules():
            data, params, _ = load_from_zip_file(path, device="cpu")
        check_algo(path, data, algo)
        assert data is not None  # check_algo refuses a file without it
        cls = data["policy_class"]
        kwargs = dict(data["policy_kwargs"], optimizer_class=_NoOptimizer)
        if issubclass(cls, ActorCriticPolicy):
            kwargs["ortho_init"] = False
        policy: BasePolicy = cls(data["observation_space"], data["action_space"], data["lr_schedule"], **kwargs)
        # SB3 types the params as a TensorDict; each entry is a module's state dict (SB3 ignores it alike)
        policy.load_state_dict(params["policy"])  # type: ignore[arg-type]
    except LOAD_ERRORS as err:
        raise _unloadable(path, algo, err) from None
    policy.set_training_mode(False)
    return policy


def load_encoder(path: Path) -> LatentEncoder:
    """A run's ``vae.pt`` through ``torch.load(weights_only=True)`` (tensors and plain data only, no code).

    A missing file, or one that is not a VAE checkpoint of this project (damaged, truncated, another file, another
    format version), is a :class:`RunFolderError` saying so and how to rebuild it.
    """
    if not path.is_file():
        raise RunFolderError(f"{path}: missing")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, IndexError, KeyError, UnicodeDecodeError):  # what random bytes give the unpickler
        raise _invalid_vae(path, "not a torch file of tensors and plain data") from None
    except EOFError:
        raise _invalid_vae(path, "empty or truncated") from None
    except (RuntimeError, ValueError, TypeError, OSError):
        raise _invalid_vae(path, "a damaged archive or another kind of file") from None
    try:
        return LatentEncoder.from_checkpoint(ckpt)
    except (ValueError, KeyError, RuntimeError) as err:
        raise _invalid_vae(path, str(err).removeprefix("not a music-rl VAE checkpoint: ")) from None
    except (TypeError, AttributeError) as err:
        raise _invalid_vae(path, f"an entry of the wrong type: {err}") from None


def _invalid_vae(path: Path, why: str) -> RunFolderError:
    """The error line of a ``vae.pt`` that cannot be loaded: why, and how to rebuild it (the run trained again
    from its saved config: the same seed gives the same VAE)."""
    return RunFolderError(f"{path}: not a valid VAE checkpoint of this project ({why[:200]}); rebuild the run into a "
                          f"new folder (the same seed gives the same VAE): music-rl train --config-dir "
                          f"{shlex.quote(str(path.parent / '.hydra'))} --config-name config hydra.run.dir=<new folder>")
