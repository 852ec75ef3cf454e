"""Online learning from feedback: re-propagate rewards, continue PPO, write a new model version.

:func:`finetune` is what ``scripts/finetune.py`` and cold start call; :func:`simulate_online` is the
online-learning loop of ``scripts/simulate_online.py`` (recommend → the simulated listener answers → log →
fine-tune every few rounds), run side by side with the same loop whose policy stays frozen.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from filelock import FileLock
from stable_baselines3.common.logger import configure

from agents.callbacks import FeedbackStatsCallback, save_model_atomic
from agents.inference import LoadedRun, load_model, model_path, model_versions, reward_table_path
from agents.ppo import make_vec_env, ppo_policy
from agents.evaluate import rollout
from envs.atomic import atomic_path
from envs.errors import FeedbackError
from envs.feedback import probe_log
from envs.listeners import ListenerSession
from envs.music_env import MusicRecEnv
from envs.rewards import propagate, reward, select_probes
from envs.world import World

log = logging.getLogger(__name__)


def now_iso() -> str:
    """The current UTC time, ISO-8601 (the ``served_at`` column)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def repropagate(run: LoadedRun, feedback: pd.DataFrame) -> np.ndarray:
    """The reward table propagated from ``feedback`` over the run's clusters (DESIGN.md §1.6)."""
    if feedback.empty:
        raise FeedbackError("no feedback rows to fine-tune from")
    rows = pd.Index(run.world.track_ids()).get_indexer(feedback["track_id"].astype(str))
    if (rows < 0).any():
        bad = feedback["track_id"].astype(str)[rows < 0].iloc[0]
        raise FeedbackError(f"track_id {bad!r}: not in the run's catalog")
    observed = reward(feedback["percentage_listened"].to_numpy(float), feedback["liked"].to_numpy(int), run.cfg.reward)
    world = run.world
    return propagate(world.latents, world.clusters, world.centroids, rows, np.asarray(observed, float), run.cfg.reward)


def continue_training(run: LoadedRun, feedback: pd.DataFrame, timesteps: int, seed: int,
                      progress_bar: bool = False) -> LoadedRun:
    """Re-propagate the reward table from ``feedback`` and continue the run's PPO model on it (in memory).

    TensorBoard scalars continue in the run's ``tb/`` folder. Returns the run with the new reward table and
    the trained model; nothing is written to the run folder.
    """
    world = dataclasses.replace(run.world, reward_table=repropagate(run, feedback))
    env_cfg = dataclasses.replace(run.cfg.env, reward_source="propagated")
    venv = make_vec_env(world, env_cfg, None, run.cfg.ppo.n_envs, "dummy", seed)
    model = run.model
    model.set_env(venv)
    model.set_logger(configure(str(run.run_dir / "tb"), ["tensorboard"]))
    model.learn(timesteps, reset_num_timesteps=False, callback=FeedbackStatsCallback(), progress_bar=progress_bar)
    venv.close()
    return LoadedRun(run.run_dir, run.cfg, world, model, run.version)


def finetune(run: LoadedRun, feedback: pd.DataFrame, timesteps: int, seed: int = 0,
             progress_bar: bool = False) -> LoadedRun:
    """Fold ``feedback`` into the reward table, continue PPO on it for ``timesteps``, save the next version.

    The previous model files are never touched; the new ``ppo-v<N>.zip`` and ``world/reward_table-v<N>.npy``
    are written atomically under a lock, so two fine-tunes never claim the same version. Returns the run with
    the new world and model loaded.
    """
    # train a fresh copy, so the caller's model object stays the old version
    base = dataclasses.replace(run, model=load_model(model_path(run.run_dir, run.version)))
    tuned = continue_training(base, feedback, timesteps, seed, progress_bar)
    with FileLock(str(run.run_dir / ".versions.lock")):
        version = max(model_versions(run.run_dir)) + 1
        with atomic_path(reward_table_path(run.run_dir, version)) as tmp, open(tmp, "wb") as fh:
            np.save(fh, tuned.world.reward_table)
        save_model_atomic(tuned.model, model_path(run.run_dir, version))
    log.info("fine-tuned %s for %d steps on %d feedback rows -> version %d", run.run_dir, timesteps,
             len(feedback), version)
    return dataclasses.replace(tuned, version=version)


def world_for_listener(world: World, listener_seed: int) -> World:
    """The same world served to another listener: the population sampled with ``listener_seed``, listener 0."""
    meta = dict(world.meta, listeners_seed=int(listener_seed), served_listener=0)
    return dataclasses.replace(world, meta=meta)


def probe_feedback(run: LoadedRun, answer: Callable[[int], tuple[float, int] | None], user_id: str,
                   seed: int) -> pd.DataFrame:
    """Cold-start probing: the probe tracks of every cluster, answered by ``answer(track)``.

    ``answer`` returns (percentage_listened, liked) or None to stop early.
    """
    world, cfg = run.world, run.cfg.reward
    probes = select_probes(world.latents, world.clusters, world.centroids, cfg.probes_per_cluster,
                           cfg.probe_selection, np.random.default_rng(seed))
    rows = []
    for position, track in enumerate(probes):
        response = answer(int(track))
        if response is None:
            break
        pct, liked = response
        rows.append({"user_id": user_id, "session_id": f"{user_id}-probe", "position": position,
                     "track_id": world.track_ids()[int(track)], "percentage_listened": float(pct),
                     "liked": int(liked), "served_at": now_iso(), "policy_version": f"v{run.version}"})
    return pd.DataFrame(rows)


def simulated_answers(world: World, listener_seed: int, seed: int) -> Callable[[int], tuple[float, int]]:
    """Answers of a simulated listener (listener 0 of the population sampled with ``listener_seed``), each
    probe heard in a fresh session so probes measure taste, not boredom."""
    target = world_for_listener(world, listener_seed)
    population = target.listeners()
    rng = np.random.default_rng(seed)

    def answer(track: int) -> tuple[float, int]:
        session: ListenerSession = population.session(0, rng)
        pct, liked = session.respond(track)
        return float(pct), int(liked)

    return answer


def _session_rows(episode: Any, world: World, user_id: str, session_id: str, version: int) -> pd.DataFrame:
    ids = world.track_ids()
    return pd.DataFrame({
        "user_id": user_id, "session_id": session_id, "position": np.arange(len(episode.tracks)),
        "track_id": [ids[t] for t in episode.tracks], "percentage_listened": episode.pct,
        "liked": episode.liked.astype(int), "served_at": now_iso(), "policy_version": f"v{version}",
    })


def simulate_online(run: LoadedRun, listener_seed: int, rounds: int, finetune_every: int, timesteps: int,
                    seed: int = 0, on_round: Callable[[dict[str, Any]], None] | None = None) -> pd.DataFrame:
    """The online-learning loop against the same loop with the policy frozen, for one simulated listener.

    Round 0 probes the listener (cold start); every round both policies play one session with the same
    seed; the online policy is fine-tuned every ``finetune_every`` rounds on all the listener's feedback so
    far. Returns one row per round: mean reward and mean expected reward of both policies.
    """
    target = world_for_listener(run.world, listener_seed)
    user = f"sim-{listener_seed}"
    feedback = probe_feedback(run, simulated_answers(run.world, listener_seed, seed), user, seed)
    frozen_policy = ppo_policy(run.model)
    online = dataclasses.replace(run, model=load_model(model_path(run.run_dir, run.version)))
    rows = []
    for r in range(1, rounds + 1):
        session_seed = seed * 100_003 + r
        env_online = MusicRecEnv(target, dataclasses.replace(online.cfg.env, reward_source="simulator"))
        env_frozen = MusicRecEnv(target, dataclasses.replace(run.cfg.env, reward_source="simulator"))
        ep_online = rollout(env_online, ppo_policy(online.model), 1, session_seed)[0]
        ep_frozen = rollout(env_frozen, frozen_policy, 1, session_seed)[0]
        feedback = pd.concat([feedback, _session_rows(ep_online, target, user, f"{user}-r{r}", online.version)],
                             ignore_index=True)
        row = {"round": r, "online_mean_reward": float(ep_online.rewards.mean()),
               "frozen_mean_reward": float(ep_frozen.rewards.mean()),
               "online_expected_reward": float(ep_online.expected.mean()),
               "frozen_expected_reward": float(ep_frozen.expected.mean()),
               "online_version": online.version}
        if r % finetune_every == 0 and r < rounds:
            online = continue_training(online, feedback, timesteps, seed=seed + r)
            online = dataclasses.replace(online, version=online.version + 1)
        rows.append(row)
        if on_round is not None:
            on_round(row)
    return pd.DataFrame(rows)

