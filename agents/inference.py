"""Inference from a saved run: load it, find a track, recommend the next tracks with the policy.

Model versions: ``ppo.zip`` is version 1 (the trained model); every fine-tune writes ``ppo-v<N>.zip`` and the
reward table it learnt from, ``world/reward_table-v<N>.npy``, next to the old ones, which are never
overwritten. :func:`load_run` takes the newest version unless told otherwise.
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
from omegaconf import OmegaConf
from stable_baselines3 import PPO

from agents.config import TrainConfig, load_config
from agents.policies import candidate_probabilities
from envs.errors import RunFolderError, UnknownTrackError
from envs.music_env import MusicRecEnv
from envs.world import World

MODEL_RE = re.compile(r"^ppo(?:-v(\d+))?\.zip$")
RUN_FILES = (".hydra/config.yaml", "world", "ppo.zip")


def model_path(run_dir: Path, version: int) -> Path:
    """``ppo.zip`` for version 1, ``ppo-v<N>.zip`` after that."""
    return run_dir / ("ppo.zip" if version == 1 else f"ppo-v{version}.zip")


def reward_table_path(run_dir: Path, version: int) -> Path:
    """The reward table a model version learnt from."""
    return run_dir / "world" / ("reward_table.npy" if version == 1 else f"reward_table-v{version}.npy")


def model_versions(run_dir: Path) -> list[int]:
    """The model versions present in a run folder, ascending."""
    found = [int(m.group(1) or 1) for p in run_dir.glob("ppo*.zip") if (m := MODEL_RE.match(p.name))]
    return sorted(found)


def load_model(path: Path) -> PPO:
    """Load an SB3 model through SB3's own loader; a truncated or foreign file is a :class:`RunFolderError`."""
    if not path.is_file():
        raise RunFolderError(f"{path}: missing")
    try:
        return PPO.load(path, device="cpu")
    except (zipfile.BadZipFile, EOFError, KeyError, ValueError, RuntimeError, OSError) as err:
        raise RunFolderError(f"{path}: not a loadable SB3 PPO model ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else 'truncated?'})") from None


@dataclass
class LoadedRun:
    """A run folder ready for inference."""

    run_dir: Path
    cfg: TrainConfig
    world: World
    model: PPO
    version: int


def load_config_of(run_dir: Path) -> TrainConfig:
    """The validated config a run was trained with."""
    for name in RUN_FILES:
        if not (run_dir / name).exists():
            raise RunFolderError(f"{run_dir / name}: missing; is {run_dir} a finished music-rl run folder?")
    return load_config(OmegaConf.load(run_dir / ".hydra" / "config.yaml"))


def load_run(run_dir: str | Path, version: int | None = None) -> LoadedRun:
    """Load config, world and a model version (default: the newest) of a run folder."""
    run_dir = Path(run_dir)
    cfg = load_config_of(run_dir)
    versions = model_versions(run_dir)
    version = versions[-1] if version is None else version
    if version not in versions:
        raise RunFolderError(f"policy_version={version}: {run_dir} holds versions {versions}")
    world = World.load(run_dir / "world")
    table_path = reward_table_path(run_dir, version)
    if version > 1 and table_path.is_file():
        world = dataclasses.replace(world, reward_table=np.load(table_path, allow_pickle=False))
    return LoadedRun(run_dir, cfg, world, load_model(model_path(run_dir, version)), version)


def track_label(tracks: Any, i: int) -> str:
    """"artist - name" when the catalog has them, else the track id."""
    row = tracks.iloc[i]
    name, artist = row.get("name"), row.get("artist")
    if isinstance(name, str) and name and isinstance(artist, str) and artist:
        return f"{artist} - {name}"
    return str(row["track_id"])


def find_track(world: World, track_id: str | None = None, query: str | None = None) -> int:
    """The row of a track id, or of an ``"artist - title"`` query (case-insensitive; substring allowed).

    Raises :class:`UnknownTrackError` with the closest matches when nothing matches.
    """
    tracks = world.tracks
    if track_id is not None:
        ids = world.track_ids()
        hits = np.flatnonzero(tracks["track_id"].astype(str).to_numpy() == str(track_id))
        if len(hits):
            return int(hits[0])
        close = difflib.get_close_matches(str(track_id), ids, n=3, cutoff=0.5)
        raise UnknownTrackError(f"track_id={track_id!r}: not in the catalog ({len(ids)} tracks)"
                                + (f"; closest: {', '.join(close)}" if close else ""))
    if query is None:
        raise UnknownTrackError("give track_id=... or query=\"artist - title\"")
    if "name" not in tracks or "artist" not in tracks:
        raise UnknownTrackError(f"query={query!r}: this catalog has no track names/artists; use track_id=...")
    labels = (tracks["artist"].astype(str) + " - " + tracks["name"].astype(str)).str.lower()
    q = query.strip().lower()
    exact = np.flatnonzero(labels.to_numpy() == q)
    if len(exact):
        return int(exact[0])
    contains = np.flatnonzero(labels.str.contains(q, regex=False).to_numpy())
    if len(contains) == 1:
        return int(contains[0])
    pool = labels.iloc[contains].tolist() if len(contains) else labels.tolist()
    close = difflib.get_close_matches(q, pool, n=3, cutoff=0.3) or pool[:3]
    what = f"matches {len(contains)} tracks" if len(contains) else "matches no track"
    raise UnknownTrackError(f"query={query!r}: {what}; closest: {'; '.join(close)}")


def recommend(run: LoadedRun, start: int, length: int, sample: bool = False, seed: int = 0) -> list[dict[str, Any]]:
    """Walk a session of ``length`` recommendations from ``start``.

    Each step: the k nearest unplayed candidates → policy probabilities and value → the pick (argmax, or a
    draw when ``sample``) → the pick becomes the current track. Returns one dict per step.
    """
    env_cfg = dataclasses.replace(run.cfg.env, reward_source="propagated", session_length=length, start_track=None)
    env = MusicRecEnv(run.world, env_cfg)
    obs, _ = env.reset(seed=seed, options={"start_track": start})
    rng = np.random.default_rng(seed)
    tracks = run.world.tracks
    steps = []
    for position in range(length):
        probs, value = candidate_probabilities(run.model.policy, obs)
        pick = int(rng.choice(len(probs), p=probs / probs.sum())) if sample else int(np.argmax(probs))
        candidates = [{"track": int(t), "track_id": str(tracks["track_id"].iat[int(t)]), "label": track_label(tracks, int(t)),
                       "probability": float(p)} for t, p in zip(env.current_candidates, probs, strict=True)]
        steps.append({"position": position + 1, "from_track_id": str(tracks["track_id"].iat[env.track]),
                      "candidates": candidates, "pick": pick, "track_id": candidates[pick]["track_id"],
                      "label": candidates[pick]["label"], "value": value})
        obs, *_ = env.step(pick)
    return steps
