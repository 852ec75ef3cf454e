"""Model files saved before the layout by role still load: SB3 pickled their classes under the old module paths
(``agents.policies.CandidateScorerPolicy``, ``agents.ppo.LinearDecay``), which the model loaders of
music_rl/learners/models.py map to the new modules (``LEGACY_MODULES``)."""

from __future__ import annotations

import base64
import json
import pickle
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import PPO

from music_rl.learners.models import LEGACY_MODULES, load_model, load_policy
from music_rl.learners.policies import CandidateScorerPolicy
from music_rl.learners.ppo import LinearDecay

D, K = 3, 4


class _Env(gym.Env):
    """Random observations of the candidate scorer's layout (a current latent and K candidates)."""

    observation_space = spaces.Box(0, 1, ((1 + K) * D,), np.float32)
    action_space = spaces.Discrete(K)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, True, {}


def _save_under_the_old_paths(path: Path, monkeypatch: pytest.MonkeyPatch) -> PPO:
    """A PPO model saved while its classes live in ``agents.*`` (as before the move); the old modules are gone
    again when it returns."""
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "agents", ModuleType("agents"))
        for old, new in LEGACY_MODULES.items():
            m.setitem(sys.modules, old, sys.modules[new])
        m.setattr(CandidateScorerPolicy, "__module__", "agents.policies")
        m.setattr(LinearDecay, "__module__", "agents.ppo")
        model = PPO(CandidateScorerPolicy, _Env(), n_steps=16, batch_size=16, learning_rate=LinearDecay(1e-3),
                    policy_kwargs={"latent_dim": D, "k": K, "scorer_arch": [8], "net_arch": [8]}, seed=0,
                    device="cpu")
        model.save(path)
    return model


def _serialized(path: Path, key: str) -> bytes:
    """The pickle SB3 wrote for ``key`` of the model file's data."""
    with zipfile.ZipFile(path) as archive:
        data = json.loads(archive.read("data"))
    return base64.b64decode(data[key][":serialized:"])


def test_a_model_saved_under_the_old_module_paths_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ppo.zip"
    saved = _save_under_the_old_paths(path, monkeypatch)
    assert "agents" not in sys.modules and "agents.policies" not in sys.modules
    old_class = _serialized(path, "policy_class")
    assert b"agents.policies" in old_class
    with pytest.raises(ModuleNotFoundError, match="agents"):  # what loading did before the alias map
        pickle.loads(old_class)

    model = load_model(path)
    policy = load_policy(path)

    assert type(model.policy) is CandidateScorerPolicy and type(policy) is CandidateScorerPolicy
    assert type(model.learning_rate) is LinearDecay and model.learning_rate.initial == 1e-3
    for loaded in (model.policy, policy):
        for name, tensor in saved.policy.state_dict().items():
            torch.testing.assert_close(loaded.state_dict()[name], tensor)
    assert not {"agents", *LEGACY_MODULES} & set(sys.modules)  # the aliases live only while a file is read
