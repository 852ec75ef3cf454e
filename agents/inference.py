"""Inference from a saved run: load it, find a track, recommend the next tracks with the policy.

Model versions: ``ppo.zip`` is version 1 (the trained model); every fine-tune writes ``ppo-v<N>.zip`` and the
reward table it learnt from, ``world/reward_table-v<N>.npy``, next to the old ones, which are never
overwritten. :func:`load_run` takes the newest version unless told otherwise.

A recommendation step: the k nearest unplayed candidates of the current track (the run's neighbour table,
O(1)) → one forward pass of the policy (candidate probabilities and the critic's value) → the pick (most
probable, or drawn) becomes the current track. The session is walked in the run's own env, so the policy sees
exactly the observations it was trained on.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf
from stable_baselines3 import PPO
from stable_baselines3.common.policies import ActorCriticPolicy

from agents.config import TrainConfig, load_config
from envs.errors import ConfigError, RunFolderError, UnknownTrackError
from envs.music_env import MusicRecEnv
from envs.world import World

MODEL_RE = re.compile(r"^ppo(?:-v(\d+))?\.zip$")
RUN_FILES = (".hydra/config.yaml", "world", "ppo.zip")
N_CLOSEST = 3


def model_path(run_dir: Path, version: int) -> Path:
    """``ppo.zip`` for version 1, ``ppo-v<N>.zip`` after that."""
    return run_dir / ("ppo.zip" if version == 1 else f"ppo-v{version}.zip")


def reward_table_path(run_dir: Path, version: int) -> Path:
    """The reward table a model version learnt from."""
    return run_dir / "world" / ("reward_table.npy" if version == 1 else f"reward_table-v{version}.npy")


def model_versions(run_dir: Path) -> list[int]:
    """The model versions present in a run folder, ascending."""
    return sorted(int(m.group(1) or 1) for p in run_dir.glob("ppo*.zip") if (m := MODEL_RE.match(p.name)))


def load_model(path: Path) -> PPO:
    """Load an SB3 model on the CPU; a missing, truncated or foreign file is a :class:`RunFolderError`."""
    if not path.is_file():
        raise RunFolderError(f"{path}: missing")
    try:
        return PPO.load(path, device="cpu")
    except (zipfile.BadZipFile, EOFError, KeyError, ValueError, RuntimeError, OSError) as err:
        first = str(err).splitlines()[0] if str(err) else "truncated?"
        raise RunFolderError(f"{path}: not a loadable SB3 PPO model ({type(err).__name__}: {first})") from None


@dataclass
class LoadedRun:
    """A run folder ready for inference: its config, its world (with the version's reward table), a model."""

    run_dir: Path
    cfg: TrainConfig
    world: World
    model: PPO
    version: int


def load_config_of(run_dir: Path) -> TrainConfig:
    """The validated config a run was trained with; a folder that is not a finished run is a RunFolderError."""
    for name in RUN_FILES:
        if not (run_dir / name).exists():
            raise RunFolderError(f"{run_dir / name}: missing; is {run_dir} a finished music-rl run folder?")
    return load_config(OmegaConf.load(run_dir / ".hydra" / "config.yaml"))


def load_run(run_dir: str | Path, version: int | None = None) -> LoadedRun:
    """Load config, world and a model version (default: the newest) of a run folder."""
    run_dir = Path(run_dir)
    cfg = load_config_of(run_dir)
    versions = model_versions(run_dir)
    version = versions[-1] if version is None else int(version)
    if version not in versions:
        raise ConfigError(f"policy_version={version}: {run_dir} holds versions "
                          f"{', '.join(map(str, versions))}")
    world = World.load(run_dir / "world")
    if version > 1:
        table = reward_table_path(run_dir, version)
        if not table.is_file():
            raise RunFolderError(f"{table}: missing (the reward table of {model_path(run_dir, version).name})")
        world = dataclasses.replace(world, reward_table=np.load(table, allow_pickle=False))
    return LoadedRun(run_dir, cfg, world, load_model(model_path(run_dir, version)), version)


def track_label(tracks: pd.DataFrame, i: int) -> str:
    """``"artist - name"`` when the catalog has them, else the track id."""
    row = tracks.iloc[i]
    name, artist = row.get("name"), row.get("artist")
    if isinstance(name, str) and name and isinstance(artist, str) and artist:
        return f"{artist} - {name}"
    return str(row["track_id"])


def _closest(word: str, pool: list[str], shown: list[str]) -> list[str]:
    """The ``shown`` entries of the (up to N_CLOSEST) ``pool`` entries most similar to ``word``."""
    matcher = difflib.SequenceMatcher(b=word)
    scores = []
    for i, candidate in enumerate(pool):
        matcher.set_seq1(candidate)
        if matcher.real_quick_ratio() >= 0.3 and matcher.quick_ratio() >= 0.3:
            scores.append((-matcher.ratio(), i))
    return [shown[i] for _, i in sorted(scores)[:N_CLOSEST]]


def find_track(world: World, track_id: str | None = None, query: str | None = None) -> int:
    """The row of a track id, or of an ``"artist - title"`` query (case-insensitive; a unique substring will do).

    Raises :class:`UnknownTrackError`, one line with the closest matches, when nothing (or more than one
    track) matches.
    """
    tracks = world.tracks
    if track_id is not None:
        ids = world.track_ids()
        hits = np.flatnonzero(tracks["track_id"].astype(str).to_numpy() == str(track_id))
        if len(hits):
            return int(hits[0])
        close = _closest(str(track_id), ids, ids)
        raise UnknownTrackError(f"track_id={track_id!r}: not in the catalog ({len(ids)} tracks); closest: "
                                + (", ".join(close) if close else "none"))
    if query is None:
        raise ConfigError('give track_id=... or query="artist - title"')
    if "name" not in tracks or "artist" not in tracks:
        raise UnknownTrackError(f"query={query!r}: this catalog has no track names and artists; use track_id=...")
    labels = (tracks["artist"].astype(str) + " - " + tracks["name"].astype(str)).tolist()
    lower = pd.Series(labels).str.lower()
    q = query.strip().lower()
    exact = np.flatnonzero(lower.to_numpy() == q)
    if len(exact):
        return int(exact[0])
    contains = np.flatnonzero(lower.str.contains(q, regex=False).to_numpy())
    if len(contains) == 1:
        return int(contains[0])
    pool = contains if len(contains) else np.arange(len(labels))
    close = _closest(q, [lower.iat[i] for i in pool], [f"{labels[i]} [{world.track_ids()[i]}]" for i in pool])
    what = f"matches {len(contains)} tracks" if len(contains) else "matches no track"
    raise UnknownTrackError(f"query={query!r}: {what} (give \"artist - title\"); closest: "
                            + ("; ".join(close) if close else "none"))


def policy_outputs(policy: ActorCriticPolicy, obs: np.ndarray) -> tuple[np.ndarray, float]:
    """Candidate probabilities (k,) and the critic's value of one observation, in one forward pass."""
    with torch.inference_mode():
        obs_t = torch.as_tensor(obs, dtype=torch.float32).reshape(1, -1)
        features = policy.extract_features(obs_t)
        pi_features, vf_features = features if isinstance(features, tuple) else (features, features)
        latent_pi = policy.mlp_extractor.forward_actor(pi_features)
        latent_vf = policy.mlp_extractor.forward_critic(vf_features)
        probs = torch.softmax(policy.action_net(latent_pi), dim=-1)[0].numpy()
        value = float(policy.value_net(latent_vf)[0, 0])
    return probs.astype(np.float64), value


def check_length(run: LoadedRun, length: int) -> None:
    """Raise :class:`ConfigError` unless a session of ``length`` recommendations fits the catalog."""
    n, k = len(run.world.tracks), run.cfg.env.k
    most = n - k - 1 if run.cfg.env.no_repeat == "session" else None
    if length < 1 or (most is not None and length > most):
        raise ConfigError(f"length={length}: must be an integer in 1..{most or 'any'} (the catalog has {n} "
                          f"tracks and each step needs {k} unplayed candidates)")


def session_env(run: LoadedRun, length: int) -> MusicRecEnv:
    """The run's env, walking the propagated reward table, for a session of ``length`` recommendations."""
    check_length(run, length)
    cfg = dataclasses.replace(run.cfg.env, reward_source="propagated", session_length=length, start_track=None)
    return MusicRecEnv(run.world, cfg)


def _track_fields(tracks: pd.DataFrame, i: int) -> dict[str, Any]:
    """``track_id`` plus ``artist`` and ``name`` when the catalog has them."""
    out: dict[str, Any] = {"track_id": str(tracks["track_id"].iat[i])}
    for col in ("artist", "name"):
        if col in tracks:
            out[col] = str(tracks[col].iat[i])
    return out


def recommend(run: LoadedRun, start: int, length: int, sample: bool = False, seed: int = 0) -> list[dict[str, Any]]:
    """Walk a session of ``length`` recommendations from track row ``start``.

    Each step: the k nearest unplayed candidates → policy probabilities and value → the pick (the most
    probable, or a draw from the probabilities when ``sample``, seeded by ``seed``) → the pick becomes the
    current track. Returns one JSON-able dict per step: ``position``, ``from`` (track fields), ``value``,
    ``candidates`` (track fields + ``probability``, nearest first), ``pick`` (index into ``candidates``).
    """
    env = session_env(run, length)
    obs, _ = env.reset(seed=seed, options={"start_track": int(start)})
    rng = np.random.default_rng(seed)
    tracks, policy = run.world.tracks, run.model.policy
    steps = []
    for position in range(1, length + 1):
        probs, value = policy_outputs(policy, obs)
        pick = int(rng.choice(len(probs), p=probs / probs.sum())) if sample else int(np.argmax(probs))
        steps.append({
            "position": position, "from": _track_fields(tracks, env.track), "value": value,
            "candidates": [dict(_track_fields(tracks, int(t)), probability=float(p))
                           for t, p in zip(env.current_candidates, probs, strict=True)],
            "pick": pick,
        })
        obs, *_ = env.step(pick)
    return steps
