"""Semi-personalised Thompson sampling over listener segments (the new_listener protocol's ``segment_ts``)."""

from __future__ import annotations

import numpy as np
import pytest

from envs.listener_log import Estimator, random_answers, track_features
from envs.music_env import EnvConfig, MusicRecEnv
from envs.rewards import RewardConfig
from envs.world import synthetic_world
from music_rl.evaluation.adaptive import Fixed
from music_rl.evaluation.baselines import random_policy
from music_rl.evaluation.evaluate import rollout
from music_rl.evaluation.segments import Segments, SegmentThompson, fit_segments

REWARD = RewardConfig(n_clusters=8)


@pytest.fixture(scope="module")
def world():
    """A small world of 40 listeners (8 held out), one taste centre each, no drift."""
    return synthetic_world(n_tracks=1500, population=40, n_taste_centres=1, drift=0.0, n_clusters=8)


@pytest.fixture(scope="module")
def segments(world) -> Segments:
    scale = MusicRecEnv(world, EnvConfig(reward_source="simulator")).reward_scale
    return fit_segments(world, [int(i) for i in world.meta["train_listeners"]], REWARD, scale, n_answers=300,
                        n_segments=4, ridge=1.0, k=4, session_length=20, seed=0)


def test_segments_hold_the_training_listeners(world, segments):
    phi = track_features(world.latents, world.features)
    assert segments.centres.shape == (4, phi.shape[1])
    assert np.exp(segments.log_share).sum() == pytest.approx(1.0)
    assert segments.spread >= segments.noise > 0  # a listener's own taste fits their answers best


def test_the_posterior_finds_the_segment_that_made_the_answers(world):
    phi = track_features(world.latents, world.features)
    centres = np.zeros((2, phi.shape[1]))
    centres[0, -1], centres[1, -1] = 1.0, -1.0  # two segments: every track worth +1, or -1
    policy = SegmentThompson(phi, Segments(centres, np.log([0.5, 0.5]), spread=0.5, noise=0.1), RewardConfig(),
                             1.0, 1.0, np.random.default_rng(0))
    assert policy.posterior() == pytest.approx([0.5, 0.5])  # no answers: the shares
    for track in range(5):
        policy._add(track, 1.0, 0)  # reward(1.0, not liked) = 1: segment 0's prediction
    assert policy.posterior()[0] > 0.99


def test_it_serves_a_new_listener_better_than_chance(world, segments):
    listener = int(world.meta["heldout_listeners"][0])
    env = MusicRecEnv(world, EnvConfig(reward_source="simulator"), listener_ids=[listener])
    estimator = Estimator.of(world, REWARD, 4, 20)
    log = random_answers(world.listeners(), listener, world.candidate_index(4, 32), 80, 20,
                         np.random.default_rng(1))
    phi = track_features(world.latents, world.features)

    def mean_expected(policy) -> float:
        policy.start(log, estimator(log))
        return float(np.concatenate([e.expected for e in rollout(env, policy, 30, seed=100)]).mean())

    chance = mean_expected(Fixed(random_policy(np.random.default_rng(0))))
    segment_ts = SegmentThompson(phi, segments, REWARD, env.reward_scale, 1.0, np.random.default_rng(0))
    assert mean_expected(segment_ts) > chance * 1.1
    assert segment_ts.posterior().shape == (4,) and segment_ts.posterior().max() > 0.5  # 80 answers: one segment
