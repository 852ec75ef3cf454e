"""The candidate-scoring policy: permutation-equivariant logits, SB3 save/load, shape checks."""

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from music_rl.learners.policies import CandidateScorerPolicy, candidate_probabilities

D, K, H, F = 3, 4, 2, 5


def make_policy(history: int = 0, n_features: int = 0) -> CandidateScorerPolicy:
    obs_dim = (1 + K) * (D + n_features) + history * (D + 1)
    torch.manual_seed(0)
    return CandidateScorerPolicy(
        spaces.Box(0, 1, (obs_dim,), np.float32),
        spaces.Discrete(K),
        lambda _: 1e-3,
        latent_dim=D,
        k=K,
        history=history,
        n_features=n_features,
        scorer_arch=[16],
        net_arch=[16],
    )


def permute_candidates(obs: np.ndarray, perm: np.ndarray, n_features: int) -> np.ndarray:
    n = len(obs)
    cands = obs[:, D : (1 + K) * D].reshape(n, K, D)[:, perm]
    start, end = (1 + K) * D + n_features, (1 + K) * (D + n_features)
    feats = obs[:, start:end].reshape(n, K, n_features)[:, perm]
    return np.concatenate(
        [obs[:, :D], cands.reshape(n, -1), obs[:, (1 + K) * D : start], feats.reshape(n, -1), obs[:, end:]],
        axis=1,
    )


@pytest.mark.parametrize("history, n_features", [(0, 0), (H, 0), (0, F), (H, F)])
def test_logits_follow_the_candidates_not_their_slots(history, n_features):
    policy = make_policy(history, n_features)
    # make the scorer non-trivial (SB3 initialises the score head near zero)
    torch.nn.init.normal_(policy.mlp_extractor.score_head.weight, std=1.0)
    obs = np.random.default_rng(0).random((5, policy.observation_space.shape[0])).astype(np.float32)
    perm = np.array([2, 0, 3, 1])
    with torch.no_grad():
        logits = policy.mlp_extractor.forward_actor(torch.as_tensor(obs))
        logits_perm = policy.mlp_extractor.forward_actor(
            torch.as_tensor(permute_candidates(obs, perm, n_features))
        )
    np.testing.assert_allclose(logits_perm.numpy(), logits.numpy()[:, perm], rtol=1e-5, atol=1e-6)
    assert not np.allclose(logits.numpy()[:, 0], logits.numpy()[:, 1])


def test_initial_policy_is_near_uniform():
    policy = make_policy()
    obs = np.random.default_rng(1).random(policy.observation_space.shape[0]).astype(np.float32)
    probs, value = candidate_probabilities(policy, obs)
    assert probs.shape == (K,) and np.isclose(probs.sum(), 1.0)
    assert np.all(np.abs(probs - 1 / K) < 0.05)
    assert np.isfinite(value)


def test_rejects_an_observation_of_the_wrong_layout():
    with pytest.raises(ValueError, match="flat observation"):
        CandidateScorerPolicy(
            spaces.Box(0, 1, (7,), np.float32), spaces.Discrete(K), lambda _: 1e-3, latent_dim=D, k=K
        )


def test_learns_to_score_candidates_and_survives_save_load(tmp_path):
    import gymnasium as gym

    class Env(gym.Env):
        observation_space = spaces.Box(0, 1, ((1 + K) * D,), np.float32)
        action_space = spaces.Discrete(K)

        def reset(self, seed=None, options=None):
            super().reset(seed=seed)
            self.t = 0
            self.obs = self.np_random.random((1 + K) * D).astype(np.float32)
            return self.obs, {}

        def step(self, action):
            cands = self.obs[D:].reshape(K, D)
            reward = float(cands[action, 0] == cands[:, 0].max())
            self.t += 1
            self.obs = self.np_random.random((1 + K) * D).astype(np.float32)
            return self.obs, reward, False, self.t >= 10, {}

    venv = make_vec_env(Env, n_envs=2, seed=0)
    model = PPO(
        CandidateScorerPolicy,
        venv,
        n_steps=128,
        batch_size=64,
        seed=0,
        learning_rate=3e-3,
        policy_kwargs={"latent_dim": D, "k": K, "scorer_arch": [32], "net_arch": [32]},
    )
    model.learn(6000)
    model.save(tmp_path / "m.zip")
    loaded = PPO.load(tmp_path / "m.zip", device="cpu")
    env = Env()
    obs, _ = env.reset(seed=123)
    hits = 0
    for _ in range(400):
        action, _ = loaded.predict(obs, deterministic=True)
        cands = obs[D:].reshape(K, D)
        hits += int(cands[int(action), 0] == cands[:, 0].max())
        obs, *_ = env.step(action)
    assert hits / 400 > 0.6  # random: 0.25


@pytest.mark.parametrize("observation", ["candidates", "history", "listener"])
@pytest.mark.parametrize("features", [True, False])
def test_the_scorer_reads_the_parts_the_env_writes(observation, features):
    """Changing candidate 2's latent and features in the env's observation (through the env's layout) moves
    candidate 2's logit only: the policy finds each part where the env put it."""
    from envs.music_env import EnvConfig, MusicRecEnv
    from envs.world import synthetic_world
    from music_rl.learners.ppo import PPOConfig, policy_spec

    world = synthetic_world(400, latent_dim=D, seed=0, n_clusters=4, population=3)
    env = MusicRecEnv(world, EnvConfig(observation=observation, k=K, history=H, candidate_features=features))
    cls, kwargs = policy_spec(PPOConfig(scorer_arch=[16], net_arch=[16]), env.cfg, D, world.features.shape[1])
    torch.manual_seed(0)
    policy = cls(env.observation_space, env.action_space, lambda _: 1e-3, **kwargs)
    assert policy.layout == env.setup.layout
    torch.nn.init.normal_(policy.mlp_extractor.score_head.weight, std=1.0)
    obs, _ = env.reset(seed=1)
    obs, *_ = env.step(1)
    moved = obs.copy()
    views = env.setup.layout.views(moved)
    views.z_cands[2] += 0.3
    if features:
        views.x_cands[2] = 1.0 - views.x_cands[2]
    with torch.no_grad():
        before, after = (policy.mlp_extractor.forward_actor(torch.as_tensor(o[None]))[0].numpy() for o in (obs, moved))
    others = [0, 1, 3]
    np.testing.assert_allclose(after[others], before[others], rtol=1e-5, atol=1e-6)
    assert abs(after[2] - before[2]) > 1e-4


def test_learners_do_not_import_evaluation():
    """The evaluation policy type lives in learners: importing the learners loads no evaluation module."""
    import subprocess
    import sys

    code = ("import sys, music_rl.learners.algos, music_rl.learners.ppo; "
            "print([m for m in sys.modules if m.startswith('music_rl.evaluation')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
