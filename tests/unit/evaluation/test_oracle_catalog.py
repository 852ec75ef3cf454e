"""The catalog oracle: the parametric listener's whole-catalog path, the track it plays (the listener's search, the
full scan's track: along rollouts, a whole evaluation and a trained run's), how rollout plays it in either action
space, normalized_score_catalog, and the oracle over a bounded subset (eval.oracle_catalog_tracks)."""

import numpy as np
import pytest

import envs.listeners.parametric as parametric
import music_rl.evaluation.baselines as baselines
from envs.listeners import ParametricSession
from envs.music_env import EnvConfig, MusicRecEnv
from envs.world import synthetic_world
from music_rl.config import load_run_config
from music_rl.core.errors import ConfigError
from music_rl.evaluation.baselines import (
    baseline_policies,
    best_unplayed,
    merged,
    oracle_catalog_policy,
    oracle_catalog_subset,
    oracle_catalog_tracks,
    oracle_policy,
    oracle_subset_policy,
)
from music_rl.evaluation.evaluate import EvalConfig, evaluate_policies, rollout
from music_rl.learners.policies import CatalogTrack

N = 600


@pytest.fixture(scope="module")
def world():
    return synthetic_world(N, latent_dim=3, seed=0, n_clusters=4, population=3, early_skip_penalty=0.5)


def test_the_catalog_path_is_the_scalar_path(world):
    """The array path over the whole catalog gives each track's scalar expected reward (1e-12), along a session
    whose state moves (mixture, boredom window, repeats)."""
    env = MusicRecEnv(world, EnvConfig(no_repeat=2))
    env.reset(seed=4)
    rng = np.random.default_rng(0)
    tracks, definition = np.arange(N), env.reward_definition
    args = (definition.like_weight, definition.early_skip_penalty, definition.early_skip_threshold)
    for _ in range(8):
        whole = env.session.expected_reward(tracks, *args)
        one_by_one = np.concatenate([env.session.expected_reward(tracks[i:i + 8], *args) for i in range(0, N, 8)])
        np.testing.assert_allclose(whole, one_by_one, rtol=0, atol=1e-12)
        env.step(int(rng.integers(4)))
    assert env.session.n_played == 8


@pytest.mark.parametrize("action", ["discrete", "latent"])
def test_it_plays_the_best_unplayed_track_of_the_catalog(world, action):
    env = MusicRecEnv(world, EnvConfig(action=action))
    obs, _ = env.reset(seed=2)
    for _ in range(3):
        obs, *_ = env.step(env.candidate_action(0))
    choice = oracle_catalog_policy(obs, env)
    assert isinstance(choice, CatalogTrack) and choice.row not in env.excluded_tracks()
    definition = env.reward_definition
    values = env.session.expected_reward(np.arange(N), definition.like_weight, definition.early_skip_penalty,
                                         definition.early_skip_threshold)
    unplayed = np.setdiff1d(np.arange(N), env.excluded_tracks())
    assert values[choice.row] == values[unplayed].max() >= env.candidate_expected_rewards().max()
    episode = rollout(env, oracle_catalog_policy, 2, seed=7)[0]
    assert len(set(episode.tracks.tolist())) == len(episode.tracks)  # never a track twice
    assert (episode.expected >= episode.oracle_expected - 1e-12).all()  # at least the candidates' best, each step
    if action == "latent":
        assert episode.outside is not None and episode.distance is not None and (episode.distance == 0).all()


def test_rollout_plays_a_catalog_track_as_the_env_would_play_it(world):
    """A catalog track that is a candidate gives the same session as choosing that candidate."""
    env = MusicRecEnv(world, EnvConfig())

    def as_track(obs, env):
        return CatalogTrack(int(env.current_candidates[oracle_policy(obs, env)]))

    by_track, by_index = (rollout(env, policy, 3, seed=11) for policy in (as_track, oracle_policy))
    for a, b in zip(by_track, by_index, strict=True):
        np.testing.assert_array_equal(a.tracks, b.tracks)
        np.testing.assert_array_equal(a.rewards, b.rewards)
        np.testing.assert_array_equal(a.expected, b.expected)


def test_normalized_score_catalog_reads_every_policy_on_one_scale(world):
    policies = baseline_policies(0)
    metrics = evaluate_policies(world, EnvConfig(), policies, "personal", 6, seed=3, learnt="oracle")
    results = metrics["policies"]
    random, ceiling = results["random"]["mean_expected_reward"], results["oracle_catalog"]["mean_expected_reward"]
    assert ceiling > results["oracle"]["mean_expected_reward"] > random
    assert metrics["normalized_score_catalog"] == pytest.approx(
        (results["oracle"]["mean_expected_reward"] - random) / (ceiling - random))
    assert 0 < metrics["normalized_score_catalog"] < 1 == metrics["normalized_score"]


def test_the_subset_is_drawn_once_from_the_seed():
    """eval.oracle_catalog_tracks: n distinct sorted rows, the same for a seed, another for another seed; none
    (the whole catalog) when unset or covering the catalog."""
    subset = oracle_catalog_subset(N, 50, seed=5)
    assert subset is not None and len(subset) == len(np.unique(subset)) == 50
    assert (np.diff(subset) > 0).all() and 0 <= subset[0] and subset[-1] < N
    np.testing.assert_array_equal(subset, oracle_catalog_subset(N, 50, seed=5))
    assert not np.array_equal(subset, oracle_catalog_subset(N, 50, seed=6))
    assert oracle_catalog_subset(N, None, seed=5) is None and oracle_catalog_subset(N, N, seed=5) is None
    assert oracle_catalog_tracks(N, subset) == 50 and oracle_catalog_tracks(N, None) == N


@pytest.mark.parametrize("action", ["discrete", "latent"])
def test_the_subset_oracle_plays_the_best_unplayed_track_of_the_subset_and_the_candidates(world, action):
    subset = oracle_catalog_subset(N, 20, seed=1)
    policy = oracle_subset_policy(subset)
    env = MusicRecEnv(world, EnvConfig(action=action))
    obs, _ = env.reset(seed=2)
    definition = env.reward_definition
    args = (definition.like_weight, definition.early_skip_penalty, definition.early_skip_threshold)
    for _ in range(6):
        choice = policy(obs, env)
        searched = np.setdiff1d(np.union1d(subset, env.current_candidates), env.excluded_tracks())
        values = env.session.expected_reward(searched, *args)
        assert isinstance(choice, CatalogTrack) and choice.row == searched[np.argmax(values)]
        assert values.max() >= env.candidate_expected_rewards().max()
        obs, *_ = env.step(env.candidate_action(0))
    episodes = rollout(env, policy, 3, seed=7)
    assert all((e.expected >= e.oracle_expected - 1e-12).all() for e in episodes)  # never below the candidates'
    whole = rollout(env, oracle_catalog_policy, 3, seed=7)
    assert sum(e.expected.sum() for e in episodes) < sum(e.expected.sum() for e in whole)  # 20 of 600 tracks


def test_a_subset_of_every_track_is_the_whole_catalog_oracle(world):
    env = MusicRecEnv(world, EnvConfig())
    every = rollout(env, oracle_subset_policy(np.arange(N)), 2, seed=3)
    whole = rollout(env, oracle_catalog_policy, 2, seed=3)
    for a, b in zip(every, whole, strict=True):
        np.testing.assert_array_equal(a.tracks, b.tracks)


@pytest.mark.parametrize("value", [0, -3])
def test_oracle_catalog_tracks_must_be_positive(value):
    with pytest.raises(ConfigError, match=r"^eval\.oracle_catalog_tracks=" + str(value) + ": must be null"):
        EvalConfig(oracle_catalog_tracks=value).validate()


def test_merged_inserts_the_rows_a_subset_lacks_in_order():
    rows = np.array([2, 5, 9])
    np.testing.assert_array_equal(merged(rows, np.array([9, 0, 5, 11, 6])), [0, 2, 5, 6, 9, 11])
    np.testing.assert_array_equal(merged(rows, np.array([5, 2])), rows)


def full_scan_policy(obs, env):
    """The catalog oracle as it was: every track scored, the best unplayed one (ties to the lower row)."""
    return best_unplayed(env, np.arange(env.setup.n_tracks))


@pytest.fixture
def searched(monkeypatch):
    """The listener's search whatever share of the catalog it reads (at the defaults a small catalog often goes to
    the full scan), recording whether each call decided (True) or handed over to the full scan."""
    monkeypatch.setattr(parametric, "_WALK_UNTIL", 2.0)
    decided = []
    search = ParametricSession._search

    def recording(self, *args):
        found = search(self, *args)
        decided.append(found is not None)
        return found

    monkeypatch.setattr(ParametricSession, "_search", recording)
    return decided


@pytest.mark.parametrize("reward", [dict(like_weight=10), dict(like_weight=100, early_skip_penalty=0.5),
                                    dict(like_weight=0, early_skip_penalty=2.0, early_skip_threshold=0.5)])
def test_the_catalog_oracle_plays_the_full_scans_tracks(reward, searched, monkeypatch):
    """Along rollouts and through a whole evaluation (the baselines on fresh sessions, either protocol): the listener's
    search plays the full scan's tracks, every metric the same to the bit."""
    world = synthetic_world(3000, latent_dim=3, seed=1, n_clusters=4, population=4, **reward)
    env = MusicRecEnv(world, EnvConfig(no_repeat=5))
    fast, full = rollout(env, oracle_catalog_policy, 4, seed=3), rollout(env, full_scan_policy, 4, seed=3)
    for a, b in zip(fast, full, strict=True):
        np.testing.assert_array_equal(a.tracks, b.tracks)
        np.testing.assert_array_equal(a.expected, b.expected)
        np.testing.assert_array_equal(a.rewards, b.rewards)
    assert searched and all(searched)
    for protocol in ("personal", "population"):
        fast = evaluate_policies(world, EnvConfig(), baseline_policies(0), protocol, 6, seed=5, learnt="oracle")
        monkeypatch.setattr(baselines, "oracle_catalog_policy", full_scan_policy)
        full = evaluate_policies(world, EnvConfig(), baseline_policies(0), protocol, 6, seed=5, learnt="oracle")
        monkeypatch.setattr(baselines, "oracle_catalog_policy", oracle_catalog_policy)
        assert fast == full


@pytest.mark.slow
def test_a_trained_runs_metrics_are_the_full_scans(pristine, searched, monkeypatch):
    """A tiny trained run evaluated again (music-rl evaluate): the same metrics.json whether its catalog oracle
    searches (its 1500 tracks, searched here whatever share it reads) or scans the whole catalog."""
    from music_rl.training.scoring import reevaluate

    cfg = load_run_config(pristine)
    fast = reevaluate(pristine, cfg)
    assert searched and all(searched)
    monkeypatch.setattr(baselines, "oracle_catalog_policy", full_scan_policy)
    assert reevaluate(pristine, cfg) == fast
