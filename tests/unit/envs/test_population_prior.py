"""Tests of the population prior: the posterior's algebra, what the answers teach it, and the world/ round trip."""

from __future__ import annotations

import numpy as np
import pytest

from envs.listener_log import AnswerLog, Estimator, random_answers
from envs.population_prior import PopulationPrior
from envs.rewards import RewardConfig
from envs.world import PRIOR_FILE, World, synthetic_world
from music_rl.core.errors import RunFolderError

K, SESSION = 4, 20


@pytest.fixture(scope="module")
def world() -> World:
    """60 listeners (48 training ones teach the prior), 2000 tracks."""
    return synthetic_world(n_tracks=2000, population=60, n_clusters=8, seed=2)


@pytest.fixture(scope="module")
def prior(world: World) -> PopulationPrior:
    return world.population_prior(K, SESSION)[0]


def _log(world: World, listener: int, n: int, seed: int = 0) -> AnswerLog:
    return random_answers(world.listeners(), listener, world.candidate_index(K, world.neighbours.shape[1]), n,
                          SESSION, np.random.default_rng(seed), K)


def test_no_answers_give_the_prior_and_answers_one_at_a_time_give_the_batch_posterior(world, prior):
    basis = prior.basis(world.latents, world.features)
    empty = prior.posterior(basis[:0], np.zeros(0))
    np.testing.assert_array_equal(empty.mean, prior.mean)
    np.testing.assert_array_equal(empty.cov, prior.cov)
    for n in (30, 3 * len(prior.mean)):  # fewer answers than weights (covariance form), more (precision form)
        log = _log(world, int(world.meta["heldout_listeners"][0]), n)
        answers = prior.answers(log.pct, log.liked)
        batch = prior.posterior(basis[log.tracks], answers)
        online = prior.posterior(basis[:0], np.zeros(0))
        for track, answer in zip(log.tracks, answers, strict=True):
            online.update(basis[track], float(answer))
        mean_b, sd_b = batch.at(basis)
        mean_o, sd_o = online.at(basis)
        np.testing.assert_allclose(mean_o, mean_b, atol=1e-6)
        np.testing.assert_allclose(sd_o, sd_b, atol=1e-6)
        assert sd_b.mean() < empty.at(basis)[1].mean()  # answers narrow the estimate


def test_answers_teach_the_listener_taste(world, prior):
    """The posterior mean tracks the held-out listener's expected reward better as answers come, and better than
    the prior (the population's average taste)."""
    reward_cfg = RewardConfig(n_clusters=8)
    estimator = Estimator.of(world, reward_cfg, K, SESSION)
    correlations = {0: [], 400: []}
    for listener in world.meta["heldout_listeners"]:
        truth = world.listeners().expected_reward_all(int(listener), reward_cfg.like_weight)
        log = _log(world, int(listener), 400, seed=int(listener))
        for n in correlations:
            mean, _ = estimator(log.head(n)).pop.at(estimator.basis)
            correlations[n].append(np.corrcoef(mean, truth)[0, 1])
    assert np.mean(correlations[400]) > np.mean(correlations[0]) + 0.2, correlations
    assert np.mean(correlations[400]) > 0.5, correlations


def test_the_prior_is_saved_with_the_world_and_read_back(world, prior, tmp_path):
    world.save(tmp_path / "world")
    loaded = World.load(tmp_path / "world")
    again, _ = loaded.population_prior(K, SESSION)  # read, not fitted again
    np.testing.assert_array_equal(again.cov, prior.cov)
    assert again.noise == prior.noise and again.like_weight == prior.like_weight
    saved = (tmp_path / "world" / PRIOR_FILE).read_bytes()
    arrays = dict(np.load(tmp_path / "world" / PRIOR_FILE))
    broken = {"anchors": arrays["anchors"][:-1]}, {"cov": np.where(np.eye(len(arrays["mean"])), np.nan, arrays["cov"])}
    for bad, why in ((b"not a prior", "not an .npz"), (saved[:500], "not an .npz"), (b"", "not an .npz"),
                     (broken[0], "shape"), (broken[1], "not finite")):
        if isinstance(bad, dict):
            np.savez(tmp_path / "world" / "prior.npz", **(arrays | bad))
            (tmp_path / "world" / "prior.npz").replace(tmp_path / "world" / PRIOR_FILE)
        else:
            (tmp_path / "world" / PRIOR_FILE).write_bytes(bad)
        with pytest.raises(RunFolderError, match=PRIOR_FILE) as err:
            World.load(tmp_path / "world")
        assert "\n" not in str(err.value) and why in str(err.value), err.value


def test_thompson_draws_centre_on_the_posterior(world, prior):
    basis = prior.basis(world.latents, world.features)
    log = _log(world, int(world.meta["heldout_listeners"][1]), 100)
    posterior = prior.posterior(basis[log.tracks], prior.answers(log.pct, log.liked))
    draws = np.array([posterior.draw(np.random.default_rng(i)) for i in range(2000)])
    spread = np.sqrt(np.diag(posterior.cov))
    assert np.all(np.abs(draws.mean(axis=0) - posterior.mean) < 5 * spread / np.sqrt(2000) + 1e-6)


def test_the_listener_observation_follows_the_session(world):
    """env.observation=listener: pop and pop_sd are the posterior given the log and the session's answers so far."""
    from envs.music_env import EnvConfig, MusicRecEnv

    cfg = EnvConfig(observation="listener", reward_source="simulator")
    env = MusicRecEnv(world, cfg, listener_ids=[int(world.meta["heldout_listeners"][0])])
    estimator = Estimator.of(world, RewardConfig(n_clusters=8), cfg.k, cfg.session_length)
    log = _log(world, env._listener_ids[0], 10)
    env.set_listener_estimate(estimator(log))
    env.reset(seed=0)
    for _ in range(3):
        obs, _, terminated, truncated, info = env.step(0)
        if terminated or truncated:
            break
    answers = env.answers
    session = AnswerLog.of([a[0] for a in answers], [a[1] for a in answers], [a[2] for a in answers])
    posterior = estimator(log + session).pop
    mean, sd = posterior.at(estimator.basis[[env.track, *env.current_candidates]])
    rows = env.setup.views(obs).estimate
    np.testing.assert_allclose(rows[3], np.clip(mean, 0, 1.5), atol=1e-4)
    np.testing.assert_allclose(rows[4], np.clip(sd, 0, 1), atol=1e-4)


def test_extreme_estimates_stay_in_the_observation_space(world):
    """r_fit extrapolates and pop is clipped: whatever a log says, the observation lies in the declared space."""
    import dataclasses

    from envs.music_env import EnvConfig, MusicRecEnv

    env = MusicRecEnv(world, EnvConfig(observation="listener", reward_source="simulator"))
    estimator = Estimator.of(world, RewardConfig(n_clusters=8), 4, 20)
    base = estimator(_log(world, 0, 50))
    for value in (100.0, -100.0):
        pop = base.pop.copy()
        pop.mean[:] = value
        extreme = dataclasses.replace(base, r_fit=np.full_like(base.r_fit, value), pop=pop)  # r_hat: an average
        env.set_listener_estimate(extreme)
        obs, _ = env.reset(seed=0)
        assert env.observation_space.contains(obs), value
