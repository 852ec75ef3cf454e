"""DQN's and QR-DQN's candidate-scoring Q-networks, the recurrent candidate scorer, a model file's algorithm and
each policy's architecture name."""

import numpy as np
import pytest
import torch
from gymnasium import spaces
from test_policies import D, F, K, permute_candidates

from envs.music_env import EnvConfig, MusicRecEnv
from envs.world import synthetic_world
from music_rl.core.errors import RunFolderError
from music_rl.learners.algos import model_policy, policy_architecture
from music_rl.learners.models import load_model, load_policy, save_model_atomic
from music_rl.learners.q_learning import CandidateQNetwork, DQNConfig, QRDQNConfig, build_q_model
from music_rl.learners.recurrent import RecurrentPPOConfig, build_recurrent_model
from music_rl.learners.vec_env import session_vec_env

N = 400


@pytest.fixture(scope="module")
def world():
    return synthetic_world(N, latent_dim=D, seed=0, n_clusters=4, population=3)


def venv_of(world, n_envs=2):
    return session_vec_env(world, EnvConfig(k=K), None, n_envs, seed=0)


@pytest.mark.parametrize("n_quantiles", [None, 5])
def test_q_values_follow_the_candidates_not_their_slots(n_quantiles):
    """The Q-network (DQN) and the quantile network (QR-DQN) score each candidate with one shared network."""
    from stable_baselines3.common.torch_layers import FlattenExtractor

    width = (1 + K) * (D + F)
    space = spaces.Box(0, 1, (width,), np.float32)
    torch.manual_seed(0)
    net = CandidateQNetwork(space, spaces.Discrete(K), FlattenExtractor(space), width, n_quantiles=n_quantiles,
                            latent_dim=D, k=K, n_features=F, scorer_arch=[16])
    obs = np.random.default_rng(0).random((5, width)).astype(np.float32)
    perm = np.array([2, 0, 3, 1])
    with torch.no_grad():
        q, q_perm = (net(torch.as_tensor(o)).numpy() for o in (obs, permute_candidates(obs, perm, F)))
    assert q.shape == ((5, K) if n_quantiles is None else (5, n_quantiles, K))
    np.testing.assert_allclose(q_perm, q[..., perm], rtol=1e-5, atol=1e-6)
    assert not np.allclose(q[..., 0], q[..., 1])


@pytest.mark.parametrize("algo, cfg", [("dqn", DQNConfig(scorer_arch=[16])),
                                       ("qrdqn", QRDQNConfig(scorer_arch=[16], n_quantiles=5)),
                                       ("dqn", DQNConfig(policy="mlp", net_arch=[16]))])
def test_q_models_learn_save_load_and_play(world, tmp_path, algo, cfg):
    cfg.learning_starts, cfg.batch_size, cfg.train_freq = 32, 32, 1
    model = build_q_model(algo, cfg, EnvConfig(k=K), venv_of(world), world, seed=0)
    model.learn(128)
    path = tmp_path / f"{algo}.zip"
    save_model_atomic(model, path)
    loaded, policy = load_model(path, algo=algo), load_policy(path, algo)
    expected = "candidate_scorer" if cfg.policy == "candidate_scorer" else "mlp"
    assert policy_architecture(model.policy) == policy_architecture(policy) == expected
    env = MusicRecEnv(world, EnvConfig(k=K))
    obs, _ = env.reset(seed=3)
    assert model_policy(loaded)(obs, env) == model_policy(model)(obs, env) == int(model.predict(obs, True)[0])


def test_a_model_file_of_another_algo_is_one_line(world, tmp_path):
    model = build_q_model("dqn", DQNConfig(scorer_arch=[16]), EnvConfig(k=K), venv_of(world), world, seed=0)
    path = tmp_path / "ppo.zip"
    save_model_atomic(model, path)
    for load in (lambda: load_model(path, algo="ppo"), lambda: load_policy(path, "qrdqn")):
        with pytest.raises(RunFolderError, match=r"ppo\.zip: a model of algo=dqn, but the run's algo is"):
            load()


def test_the_recurrent_scorer_carries_its_state_through_a_session_and_resets_it(world, tmp_path):
    """Evaluation passes the LSTM state from step to step and starts every session afresh: a session played
    twice picks the same tracks; the state matters (the same observation mid-session and at a start differ)."""
    from music_rl.evaluation.evaluate import rollout

    cfg = RecurrentPPOConfig(n_steps=16, batch_size=32, n_epochs=1, scorer_arch=[16], net_arch=[16],
                             lstm_hidden_size=8)
    model = build_recurrent_model(cfg, EnvConfig(k=K), venv_of(world), world, seed=0)
    model.learn(64)
    assert policy_architecture(model.policy) == "candidate_scorer"
    torch.nn.init.normal_(model.policy.mlp_extractor.score_head.weight, std=3.0)  # scores far apart
    env = MusicRecEnv(world, EnvConfig(k=K))
    policy = model_policy(model)
    first, again = (rollout(env, policy, 3, seed=5) for _ in range(2))
    assert [e.tracks.tolist() for e in first] == [e.tracks.tolist() for e in again]
    obs = env.reset(seed=1)[0]
    dist = model.policy.get_distribution
    zeros = (torch.zeros(model.policy.lstm_hidden_state_shape),) * 2
    with torch.no_grad():
        _, state = dist(torch.as_tensor(obs[None]), zeros, torch.ones(1))
        fresh = dist(torch.as_tensor(obs[None]), zeros, torch.ones(1))[0].distribution.probs
        later = dist(torch.as_tensor(obs[None]), state, torch.zeros(1))[0].distribution.probs
    assert not torch.allclose(fresh, later)
    path = tmp_path / "recurrent_ppo.zip"
    save_model_atomic(model, path)
    assert policy_architecture(load_policy(path, "recurrent_ppo")) == "candidate_scorer"
    reloaded = rollout(env, model_policy(load_model(path, algo="recurrent_ppo")), 3, seed=5)
    assert [e.tracks.tolist() for e in reloaded] == [e.tracks.tolist() for e in first]


def test_the_stock_recurrent_policy_is_named_mlp_lstm(world):
    cfg = RecurrentPPOConfig(policy="mlp", n_steps=16, batch_size=32, net_arch=[16], lstm_hidden_size=8)
    model = build_recurrent_model(cfg, EnvConfig(k=K), venv_of(world), world, seed=0)
    assert policy_architecture(model.policy) == "mlp_lstm"
