"""Learning from feedback: re-propagate rewards, continue the run's algorithm, write a new model version;
cold-start probing; the online-learning loop.

A fine-tune continues the run's model (whatever its algo) on the re-propagated table. An off-policy actor's
replay buffer is not kept: the model file holds none, and its transitions' rewards are the old table's, which
the fine-tune replaces; the buffer starts empty and the first ``min(<algo>.learning_starts, timesteps / 2)``
steps of the fine-tune refill it before the updates resume.

The reward table is personal (the ``personal`` protocol): a fine-tune learns from every logged answer of the
listeners it is for (:func:`listener_rows`), propagated over the run's clusters (:func:`repropagate`).
:func:`finetune` is what ``scripts/finetune.py`` and cold start call; :func:`simulate_online` is the loop of
``scripts/simulate_online.py`` (recommend → the simulated listener answers → log → fine-tune every few
rounds), run side by side with the same loop whose policy stays frozen.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import Logger

from envs.env_config import RewardSource
from envs.music_env import MusicRecEnv
from envs.rewards import RewardConfig, propagate, reward, select_probes
from envs.world import World
from music_rl.config import TrainConfig
from music_rl.core.atomic import atomic_path
from music_rl.core.errors import ConfigError, FeedbackError
from music_rl.data.feedback_store import FeedbackStore, utc_now
from music_rl.evaluation.evaluate import Episode, rollout
from music_rl.learners.algos import policy_actor, restart_replay
from music_rl.learners.models import load_model, model_path, model_versions, reward_table_path, save_model_atomic
from music_rl.learners.policies import Policy
from music_rl.learners.ppo import make_vec_env
from music_rl.runs.run_folder import hold
from music_rl.serving.inference import LoadedRun
from music_rl.training.callbacks import FeedbackStatsCallback
from music_rl.training.tensorboard import open_logger

log = logging.getLogger(__name__)

Answer = Callable[[int], tuple[float, int] | None]


def run_log(run: LoadedRun) -> FeedbackStore:
    """The run's ``feedback.csv``, which commands append to. A run whose world records the log it was learnt
    from (``world/meta.json`` ``feedback``: training writes ``feedback.csv`` beside it) must still have it: a
    :class:`FeedbackError` naming it when it was deleted, rather than a new log of the new rows only."""
    return FeedbackStore(run.run_dir / "feedback.csv", must_exist="feedback" in run.world.meta)


def listener_rows(logged: pd.DataFrame, users: Iterable[str]) -> pd.DataFrame:
    """The rows of a feedback log answered by ``users``: what a personal fine-tune for them learns from."""
    return logged[logged["user_id"].isin(list(users))].reset_index(drop=True)


def repropagate(world: World, cfg: RewardConfig, feedback: pd.DataFrame) -> np.ndarray:
    """The reward table propagated from ``feedback`` over the world's clusters (:func:`envs.rewards.propagate`)."""
    if feedback.empty:
        raise FeedbackError("no feedback rows to learn from")
    rows = world.track_ids().to_index().get_indexer(pd.Index(feedback["track_id"].astype(str)))
    if (rows < 0).any():
        bad = feedback["track_id"].astype(str)[rows < 0].iloc[0]
        raise FeedbackError(f"track_id {bad!r}: not in the run's catalog")
    observed = reward(feedback["percentage_listened"].to_numpy(float), feedback["liked"].to_numpy(float), cfg)
    return propagate(world.latents, world.clusters, world.centroids, rows, np.asarray(observed, float), cfg)


def continue_training(model: BaseAlgorithm, world: World, cfg: TrainConfig, feedback: pd.DataFrame,
                      timesteps: int, seed: int, tb_dir: Path | None = None, progress_bar: bool = False) -> World:
    """Re-propagate the reward table from ``feedback`` and continue ``model`` on it for ``timesteps`` steps.

    The model is trained in place (SB3 seeded with ``seed``); with ``tb_dir`` its scalars go there, their
    steps continuing the model's. An off-policy model refills its replay buffer first (module docstring).
    Returns the world with the new reward table; nothing is written to the run folder.
    """
    world = dataclasses.replace(world, reward_table=repropagate(world, cfg.reward, feedback))
    env_cfg = dataclasses.replace(cfg.env, reward_source=RewardSource.propagated)
    group = getattr(cfg, cfg.algo)
    venv = make_vec_env(world, env_cfg, None, model.n_envs, group.vec_env, seed)
    model.set_env(venv)
    model.set_random_seed(seed)
    restart_replay(model, group, timesteps)
    model.set_logger(open_logger(tb_dir) if tb_dir else Logger(None, []))
    model.learn(timesteps, reset_num_timesteps=False, callback=FeedbackStatsCallback(),
                progress_bar=progress_bar)
    venv.close()
    model.policy.set_training_mode(False)
    return world


def finetune(run: LoadedRun, feedback: pd.DataFrame, timesteps: int, seed: int = 0,
             progress_bar: bool = False, lock_timeout: float = 600.0) -> LoadedRun:
    """Fold ``feedback`` into a reward table, continue the model of ``run``'s version, save the next version.

    Writes ``world/reward_table-v<N>.npy`` then ``<algo>-v<N>.zip`` (each atomically; the model last, so a
    crash leaves no half version), N = the newest version + 1, and logs PPO to ``tb/finetune-v<N>``. The
    previous model files are never touched; writers of one run folder take turns on its lock
    (:func:`music_rl.runs.run_folder.hold`, waiting up to ``lock_timeout`` seconds), so two fine-tunes never claim the
    same version. Returns the new version, loaded (``run`` is unchanged).
    """
    algo = run.cfg.algo
    with hold(run.run_dir, wait=lock_timeout):
        version = max(model_versions(run.run_dir, algo)) + 1
        model = load_model(run.model_file, algo=algo)
        world = continue_training(model, run.world, run.cfg, feedback, timesteps, seed,
                                  run.run_dir / "tb" / f"finetune-v{version}", progress_bar)
        with atomic_path(reward_table_path(run.run_dir, version)) as tmp, open(tmp, "wb") as fh:
            np.save(fh, world.reward_table)
        save_model_atomic(model, model_path(run.run_dir, version, algo))
    log.info("fine-tuned version %d for %d steps on %d feedback rows -> version %d", run.version, timesteps,
             len(feedback), version)
    return dataclasses.replace(run, world=world, policy=model.policy, version=version)


def world_for_listener(world: World, listener_seed: int) -> World:
    """The same world served to another simulated listener: listener 0 of the population sampled with
    ``listener_seed`` (the run trained on its own population's listener unless the seeds coincide)."""
    meta = dict(world.meta, listeners_seed=int(listener_seed), served_listener=0)
    return dataclasses.replace(world, meta=meta)


def probe_tracks(run: LoadedRun, seed: int = 0) -> np.ndarray:
    """The cold-start probes (``reward.probes_per_cluster`` per cluster), round-robin over the clusters:
    the best probe of every cluster first, then the second of each... so stopping early still covers many."""
    world, cfg = run.world, run.cfg.reward
    probes = select_probes(world.latents, world.clusters, world.centroids, cfg.probes_per_cluster,
                           cfg.probe_selection, np.random.default_rng(seed))
    labels = world.clusters[probes]
    rank = np.arange(len(probes)) - np.searchsorted(labels, labels)  # select_probes groups by cluster
    return probes[np.lexsort((labels, rank))]


def probe_feedback(run: LoadedRun, answer: Answer, user_id: str, seed: int = 0,
                   on_row: Callable[[dict[str, Any]], None] | None = None,
                   session_id: str | None = None) -> pd.DataFrame:
    """Cold-start probing: play :func:`probe_tracks` and collect ``answer(track)`` for each.

    ``answer`` returns (percentage_listened, liked), or None to stop early. Each answer becomes a feedback
    row of session ``session_id`` (None: ``<user_id>-probe``; ``served_at`` now, ``policy_version`` the run's),
    handed to ``on_row`` as soon as it is received.
    """
    ids = run.world.track_ids()
    rows = []
    for position, track in enumerate(probe_tracks(run, seed), start=1):
        served_at = utc_now()
        response = answer(int(track))
        if response is None:
            break
        pct, liked = response
        row = {"user_id": user_id, "session_id": session_id or f"{user_id}-probe", "position": position,
               "track_id": ids[track], "percentage_listened": float(pct), "liked": int(liked),
               "from_track_id": "", "candidates": ids[track], "action_prob": 1.0,  # shown alone, chosen surely
               "served_at": served_at, "policy_version": f"v{run.version}"}
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return pd.DataFrame(rows)


def simulated_answers(world: World, listener_seed: int, seed: int) -> Answer:
    """Answers of the simulated listener of :func:`world_for_listener`, each probe heard in a fresh
    session so the answers measure taste, not boredom."""
    population = world_for_listener(world, listener_seed).listeners()
    rng = np.random.default_rng(seed)

    def answer(track: int) -> tuple[float, int]:
        pct, liked = population.session(0, rng).respond(track)
        return float(pct), int(liked)

    return answer


def _session_rows(episode: Episode, world: World, user: str, session: str, version: str,
                  propensities: list[float]) -> pd.DataFrame:
    """The feedback rows of one simulated session, replayable: the track each step was chosen from, the
    candidates shown and the logging policy's probability of the chosen one."""
    ids = world.track_ids()
    assert episode.sources is not None and episode.candidates is not None  # rollout records both
    return pd.DataFrame({
        "user_id": user, "session_id": session, "position": np.arange(1, len(episode.tracks) + 1),
        "track_id": [ids[t] for t in episode.tracks], "percentage_listened": episode.pct,
        "liked": episode.liked.astype(int), "from_track_id": [ids[t] for t in episode.sources],
        "candidates": [" ".join(ids[c] for c in shown) for shown in episode.candidates],
        "action_prob": propensities, "served_at": utc_now(), "policy_version": version,
    })


def exploring(actor: Policy, epsilon: float, rng: np.random.Generator) -> tuple[Policy, list[float]]:
    """``actor`` with exploration: with probability ``epsilon`` one of the k candidates at random. Returns the
    policy and the list it appends, decision by decision, the probability of the candidate it chose."""
    taken: list[float] = []

    def act(obs: np.ndarray, env: MusicRecEnv) -> int:
        best, k = actor(obs, env), len(env.current_candidates)
        action = int(rng.integers(k)) if rng.random() < epsilon else best
        taken.append((1.0 - epsilon) * (action == best) + epsilon / k)
        return action

    return act, taken


def _mean(episodes: list[Episode], field: str) -> float:
    """Per-step mean of an episode field over sessions."""
    return float(np.concatenate([getattr(e, field) for e in episodes]).mean())


def check_online(run: LoadedRun) -> None:
    """Refuse a run of ``env.action=latent`` for the online loop (:class:`ConfigError`, one line)."""
    if run.cfg.env.action == "latent":
        raise ConfigError(f"{run.run_dir}: env.action=latent: the online loop logs the probability of each "
                          "recommendation among the k candidates, which a latent action does not have (recommend, "
                          "cold start and finetune work for it)")


def simulate_online(run: LoadedRun, listener_seed: int, rounds: int, finetune_every: int, timesteps: int,
                    sessions: int = 4, seed: int = 0, store: FeedbackStore | None = None,
                    on_round: Callable[[dict[str, Any]], None] | None = None,
                    exploration: float = 0.1) -> pd.DataFrame:
    """The online-learning loop against the same loop with the policy frozen, for one simulated listener.

    Round 0 probes the listener (cold start: :func:`probe_feedback`). In every round r >= 1 the online and
    the frozen policy each serve ``sessions`` sessions to the listener with the same seeds (same start tracks
    and listener randomness); the online policy explores (with probability ``exploration`` a candidate at random,
    its propensities logged) and its sessions are answered and logged. After round 0 and every
    ``finetune_every`` rounds the online policy is fine-tuned (in memory, ``timesteps`` more PPO steps) on all
    the listener's answers so far. ``store`` receives every answer. Returns one row per round r >= 1: the
    realised mean reward per step and the listener's expected reward per step (the noise-free measure) of
    both policies, and the online policy's version (``v<base>+<fine-tunes>``). A run of ``env.action=latent``
    is refused (:class:`ConfigError`): the loop logs each answer's propensity among the k candidates.
    """
    check_online(run)
    target = world_for_listener(run.world, listener_seed)
    user = f"sim-{listener_seed}"
    append = store.append if store is not None else (lambda rows: None)
    feedback = probe_feedback(run, simulated_answers(run.world, listener_seed, seed), user, seed)
    append(feedback)
    model = load_model(run.model_file, algo=run.cfg.algo)
    target = continue_training(model, target, run.cfg, feedback, timesteps, seed=seed)  # cold start
    online, taken = exploring(policy_actor(model.policy), exploration, np.random.default_rng([seed, 1]))
    frozen = policy_actor(run.policy)
    env = MusicRecEnv(target, dataclasses.replace(run.cfg.env, reward_source=RewardSource.simulator))
    tunes, rows = 1, []
    for r in range(1, rounds + 1):
        session_seed = seed * 1_000_003 + r * sessions
        taken.clear()
        ep_online = rollout(env, online, sessions, session_seed)
        ep_frozen = rollout(env, frozen, sessions, session_seed)
        version = f"v{run.version}+{tunes}"
        ends = np.cumsum([len(e.tracks) for e in ep_online])
        new = pd.concat([_session_rows(e, target, user, f"{user}-r{r}s{i}", version, taken[end - len(e.tracks):end])
                         for i, (e, end) in enumerate(zip(ep_online, ends, strict=True))], ignore_index=True)
        append(new)
        feedback = pd.concat([feedback, new], ignore_index=True)
        row = {"round": r, "online_reward": _mean(ep_online, "rewards"),
               "frozen_reward": _mean(ep_frozen, "rewards"), "online_expected": _mean(ep_online, "expected"),
               "frozen_expected": _mean(ep_frozen, "expected"), "online_version": version}
        rows.append(row)
        if on_round is not None:
            on_round(row)
        if r % finetune_every == 0 and r < rounds:
            target = continue_training(model, target, run.cfg, feedback, timesteps, seed=seed + r)
            tunes += 1
    return pd.DataFrame(rows)
