"""A new listener (issue #12): the listener observation, the adaptive baselines, the new_listener protocol and
serving a user from their answers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli, run_in_process
from gymnasium import spaces

from envs.listener_log import AnswerLog, Estimator, random_answers, track_features
from envs.music_env import EnvConfig, MusicRecEnv
from envs.rewards import RewardConfig
from envs.world import synthetic_world
from music_rl.core.errors import FeedbackError
from music_rl.evaluation.adaptive import Fixed, GreedyEstimate, LinUCB, SessionAffinity
from music_rl.evaluation.baselines import random_policy
from music_rl.evaluation.evaluate import rollout
from music_rl.evaluation.new_listener import NewListenerConfig, evaluate_new_listener
from music_rl.learners.policies import HISTORY_ENCODERS, CandidateScorerPolicy

LISTENER = EnvConfig(observation="listener", reward_source="simulator", log_answers=50)


@pytest.fixture(scope="module")
def world():
    """A small world of 20 listeners (4 held out), one taste centre each, no drift (simple listeners)."""
    return synthetic_world(n_tracks=1500, population=20, n_taste_centres=1, drift=0.0, n_clusters=8)


def mean_expected(env: MusicRecEnv, policy, log: AnswerLog, estimator: Estimator, n: int = 30) -> float:
    """Per-step expected reward of ``policy`` (a ListenerPolicy) over ``n`` sessions, after ``start(log)``."""
    policy.start(log, estimator(log))
    episodes = rollout(env, policy, n, seed=100)
    return float(np.concatenate([e.expected for e in episodes]).mean())


def test_linucb_and_greedy_learn_from_many_answers(world):
    env = MusicRecEnv(world, EnvConfig(reward_source="simulator"), listener_ids=[3])
    estimator = Estimator.of(world, RewardConfig(n_clusters=8), 4, 20)
    log = random_answers(world.listeners(), 3, world.candidate_index(4, 32), 2000, 20, np.random.default_rng(0))
    assert len(log) == 2000
    linucb = LinUCB(track_features(world.latents, world.features), RewardConfig(), env.reward_scale, 0.1, 1.0)
    chance = mean_expected(env, Fixed(random_policy(np.random.default_rng(0))), log, estimator)
    assert mean_expected(env, linucb, log, estimator) > chance * 1.1
    assert mean_expected(env, GreedyEstimate(), log, estimator) > chance
    assert mean_expected(env, GreedyEstimate("r_fit"), log, estimator) > chance * 1.1


def test_b0_behaviour_is_defined(world):
    """No answers: r̂ flat at 0 with no evidence, greedy and session affinity play the nearest candidate."""
    estimator = Estimator.of(world, RewardConfig(), 4, 20)
    estimate = estimator(AnswerLog.empty())
    assert not estimate.r_hat.any() and not estimate.evidence.any() and estimate.n_answers == 0
    env = MusicRecEnv(world, LISTENER, listener_ids=[0])
    env.set_listener_estimate(estimate)
    obs, _ = env.reset(seed=0)
    rows = env.setup.views(obs).estimate
    assert not rows[:3].any()  # r_hat, evidence, r_fit: nothing
    prior_mean, prior_sd = estimate.pop.at(Estimator.of(world, RewardConfig(), 4, 20).basis[[env.track,
                                                                                           *env.current_candidates]])
    np.testing.assert_allclose(rows[3], np.clip(prior_mean, 0, 1.5), rtol=1e-5)  # pop: the population's prior
    np.testing.assert_allclose(rows[4], np.clip(prior_sd, 0, 1), rtol=1e-5)
    assert rows[4].min() > 0
    greedy = GreedyEstimate()
    greedy.start(AnswerLog.empty(), estimate)
    assert greedy(obs, env) == 0
    assert SessionAffinity(world.features)(obs, env) == 0


def test_listener_observation_carries_the_log_and_the_answers(world):
    env = MusicRecEnv(world, LISTENER, listener_ids=[1, 2])
    obs, _ = env.reset(seed=3)
    assert env.observation_space.contains(obs) and env.estimate is not None
    views = env.setup.views(obs)
    tracks = np.concatenate([[env.track], env.current_candidates])
    np.testing.assert_allclose(views.estimate[0], env.estimate.r_hat[tracks] * env.reward_scale, rtol=1e-6)
    np.testing.assert_allclose(views.estimate[1], env.estimate.evidence[tracks], rtol=1e-6)
    np.testing.assert_allclose(views.estimate[2], np.clip(env.estimate.r_fit[tracks] * env.reward_scale, 0, 1),
                               rtol=1e-5)
    assert not views.hist.any()
    obs, _, _, _, info = env.step(2)
    row = env.setup.views(obs).hist[0]
    d = world.latents.shape[1]
    np.testing.assert_allclose(row[:d], world.latents[info["track"]])
    np.testing.assert_allclose(row[-3:], [info["percentage_listened"], info["liked"], 1.0], rtol=1e-6)
    assert env.answers == [(info["track"], info["percentage_listened"], info["liked"])]


@pytest.mark.parametrize("encoder", HISTORY_ENCODERS)
def test_listener_scorer_is_permutation_equivariant(world, encoder):
    env = MusicRecEnv(world, LISTENER, listener_ids=[0])
    d, f, k = world.latents.shape[1], world.features.shape[1], 4
    torch.manual_seed(0)
    policy = CandidateScorerPolicy(env.observation_space, spaces.Discrete(k), lambda _: 1e-3, latent_dim=d, k=k,
                                   history=LISTENER.history, n_features=f, scorer_arch=[16], net_arch=[16],
                                   listener=True, history_encoder=encoder)
    torch.nn.init.normal_(policy.mlp_extractor.score_head.weight, std=1.0)
    obs, _ = env.reset(seed=0)
    for action in (0, 1):
        obs, *_ = env.step(action)
    perm = np.array([2, 0, 3, 1])
    permuted = obs.copy()
    views, target = env.setup.views(obs), env.setup.views(permuted)
    target.z_cands[:] = views.z_cands[perm]
    target.x_cands[:] = views.x_cands[perm]
    target.estimate[:, 1:] = views.estimate[:, 1 + perm]
    with torch.no_grad():
        logits = policy.mlp_extractor.forward_actor(torch.as_tensor(obs[None]))[0].numpy()
        moved = policy.mlp_extractor.forward_actor(torch.as_tensor(permuted[None]))[0].numpy()
    np.testing.assert_allclose(moved, logits[perm], rtol=1e-5, atol=1e-6)
    assert not np.allclose(logits[0], logits[1])


def test_protocol_json_schema_and_no_nan(world):
    cfg = NewListenerConfig(enabled=True, budgets=[0, 20], n_sessions=2, max_listeners=3, n_bootstrap=50)
    out = evaluate_new_listener(world, LISTENER, RewardConfig(n_clusters=8), cfg, {}, seed=1)
    text = json.dumps(out, allow_nan=False)  # strict JSON
    assert out["budgets"] == [0, 20, "probe32"] and out["n_listeners"] == 3  # 4 probes x 8 clusters
    assert set(out["policies"]) == {"linucb", "linucb_tuned", "segment_ts", "greedy_pop", "pop_ts", "affinity",
                                    "greedy", "greedy_fit", "random", "nearest", "oracle", "taste"}
    assert set(out["comparisons"]) == {"linucb - random", "segment_ts - linucb", "greedy_pop - linucb_tuned",
                                       "pop_ts - greedy_pop"}  # no ppo here
    parts = out["decomposition"]  # without ppo: what the estimate identifies and what is left to the ceiling
    assert parts["estimate"] == "greedy_pop" and "policy_adds" not in parts
    assert parts["identified"]["score"] == out["policies"]["greedy_pop"]["normalized_score"]
    for r in range(3):
        taste, found = out["policies"]["taste"]["normalized_score"][r], parts["identified"]["score"][r]
        assert parts["left"]["difference"][r] == pytest.approx(taste - found)
        assert parts["identified_share"][r] == pytest.approx(found / taste)
    for name, entry in out["policies"].items():
        assert len(entry["normalized_score"]) == len(entry["ci95"]) == 3, name
        for value, (lo, hi) in zip(entry["normalized_score"], entry["ci95"], strict=True):
            assert math.isfinite(value) and lo <= hi
    assert out["policies"]["oracle"]["normalized_score"] == [1.0, 1.0, 1.0]
    assert out["policies"]["random"]["normalized_score"] == [0.0, 0.0, 0.0]
    assert "NaN" not in text and out["policies"]["linucb"]["online"] and not out["policies"]["affinity"]["online"]


def test_bad_keys_are_one_line_errors(tmp_path, capsys):
    for bad, key in (("new_listener.budgets=[0,-3]", "new_listener.budgets"),
                     ("new_listener.history_encoder=lstm", "new_listener.history_encoder"),
                     ("env.log_answers=-1", "env.log_answers")):
        code = run_cli("train", "+experiment=new_listener", bad, f"hydra.run.dir={tmp_path / 'run'}")
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("error: ") and "\n" not in err and key in err, err


@pytest.fixture(scope="module")
def listener_run(tmp_path_factory) -> Path:
    """A tiny +experiment=new_listener run (3 held-out listeners, 2 sessions each), trained in this process (what is
    checked is the run it leaves, not the process)."""
    run = tmp_path_factory.mktemp("new_listener") / "run"
    run_in_process("train", "+experiment=[new_listener,tiny]", "new_listener.max_listeners=3",
                   "new_listener.n_sessions=2", "new_listener.budgets=[0,20]", "new_listener.n_bootstrap=20",
                   "listeners.population=20", f"hydra.run.dir={run}")
    return run


def test_run_writes_new_listener_metrics(listener_run):
    metrics = json.loads((listener_run / "metrics.json").read_text())
    assert metrics["new_listener"]["budgets"] == [0, 20, "probe32"]  # tiny: 8 clusters
    assert len(metrics["new_listener"]["policies"]["ppo"]["normalized_score"]) == 3
    assert metrics["new_listener"]["policies"]["ppo"]["online"]
    parts, policies = metrics["new_listener"]["decomposition"], metrics["new_listener"]["policies"]
    for r in range(3):  # identified + what the policy adds + what is left = the ceiling of taste
        total = (parts["identified"]["score"][r] + parts["policy_adds"]["difference"][r]
                 + parts["left"]["difference"][r])
        assert total == pytest.approx(policies["taste"]["normalized_score"][r])
    assert "ppo - greedy_pop" in metrics["new_listener"]["comparisons"]
    assert (listener_run / "world" / "population_prior.npz").is_file()


def test_recommend_serves_a_user_from_their_answers(listener_run, tmp_path, capsys):
    served = json.loads((listener_run / "world" / "meta.json").read_text())["served_listener"]
    user = f"listener-{served}"  # the run's feedback.csv holds this listener's probe answers
    base = [f"run_dir={listener_run}", "length=4", "format=json"]
    assert run_cli("recommend", *base, f"user={user}") == 0
    out, err = capsys.readouterr()
    served_out = json.loads(out)
    assert served_out["user"]["answers"] == 32 and "32 answer(s)" in err
    start = served_out["steps"][0]["from"]["track_id"]
    assert run_cli("recommend", *base, "user=nobody", f"track_id={start}") == 0  # no answers: B = 0
    out, err = capsys.readouterr()
    cold = json.loads(out)
    assert cold["user"]["answers"] == 0 and "B = 0" in err
    probs = [[c["probability"] for c in s["candidates"]] for s in (served_out["steps"][0], cold["steps"][0])]
    assert probs[0] != probs[1]  # the answers change what the policy sees
    for bad, key in (("feedback=/no/such.csv", "feedback="), ("cold_start=true", "user=")):
        assert run_cli("recommend", *base, f"user={user}", bad) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and key in err, err


def test_table_key_paths_index_lists():
    """results tables read one budget's entry of a list (``normalized_score.2``), in a source and in its excerpt."""
    from music_rl.reports.tables.results import excerpt, lookup

    doc = {"metrics": {"new_listener": {"policies": {"ppo": {"normalized_score": [0.1, 0.2, 0.3]}}}}}
    path = "metrics.new_listener.policies.ppo.normalized_score.2"
    assert lookup(doc, path) == 0.3 and lookup(excerpt(doc, [path]), path) == 0.3
    assert lookup(doc, "metrics.new_listener.policies.ppo.normalized_score.3") is None


@pytest.mark.parametrize("pct", ["nan", "1.7", "-0.2", "inf"])
def test_recommend_refuses_answers_that_are_not_shares(listener_run, tmp_path, capsys, pct):
    """A user's log whose answer is NaN or out of [0, 1]: one line naming the column, exit 2, nothing served."""
    ids = (listener_run / "world" / "tracks.csv").read_text().splitlines()[1:3]  # two tracks of the catalog
    log = tmp_path / "answers.csv"
    log.write_text("user_id,session_id,position,track_id,percentage_listened,liked\n"
                   f"u,s,0,{ids[0].split(',')[0]},0.5,0\nu,s,1,{ids[1].split(',')[0]},{pct},1\n")
    code = run_cli("recommend", f"run_dir={listener_run}", "user=u", f"feedback={log}", "length=2")
    out, err = capsys.readouterr()
    assert code == 2 and not out, out
    err = err.strip()
    assert err.startswith("error: ") and "\n" not in err and "percentage_listened" in err, err


def test_an_estimate_refuses_answers_that_are_not_shares(world):
    """The estimator itself (any caller, not only a checked file): NaN or out-of-range answers are refused."""
    estimator = Estimator.of(world, RewardConfig(n_clusters=8), 4, 20)
    for pct, liked in ((float("nan"), 0), (1.5, 0), (0.5, 2)):
        with pytest.raises(FeedbackError, match="answers"):
            estimator(AnswerLog.of([1, 2], [0.4, pct], [0, liked]))
