"""Inference from a saved run: load it, find a track, recommend the next tracks with the policy.

:func:`load_run` takes the newest model version (:mod:`music_rl.learners.models`) unless told otherwise, and loads only
its policy network.

A recommendation step: the k nearest unplayed candidates of the current track (the run's neighbour table,
O(1)) → one forward pass of the policy (candidate probabilities and the critic's value) → the pick (most
probable, or drawn) becomes the current track. With ``env.action=latent`` the policy proposes a point of the
latent space instead and the unplayed track nearest to it is played, a candidate or not. The session is walked
in the run's own env (propagated rewards), so the policy sees exactly the observations it was trained on.

A run with ``env.observation=listener`` serves one listener from their own answers, with no fine-tune:
:func:`listener_estimate` reads the user's rows of a feedback log (the run's ``feedback.csv``, or another
file) and propagates them (:class:`envs.listener_log.Estimator`); every candidate's observation then carries
that listener's r̂ and its evidence. No answers: the B = 0 observation (r̂ 0, no evidence).
"""

from __future__ import annotations

import dataclasses
import difflib
import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from sb3_contrib.qrdqn.policies import QRDQNPolicy
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.dqn.policies import DQNPolicy

from envs.env_config import RewardSource
from envs.listener_log import AnswerLog, Estimator, ListenerEstimate
from envs.music_env import MusicRecEnv
from envs.world import World
from music_rl.config import TrainConfig, load_run_config
from music_rl.core.errors import ConfigError, RunFolderError, UnknownTrackError, not_a
from music_rl.data.feedback import read_feedback
from music_rl.data.log_import import LogReport, read_submission
from music_rl.learners.models import check_fits, load_policy, model_path, model_versions, reward_table_path
from music_rl.learners.policies import candidate_probabilities
from music_rl.learners.q_learning import q_values
from music_rl.learners.recurrent import LSTMState, session_start
from music_rl.training.run_world import load_run_world

RUN_FILES = (".hydra/config.yaml", "world")  # and the model of the run's algo, <algo>.zip
N_CLOSEST = 3


@dataclass
class LoadedRun:
    """A run folder ready for inference: its config, its world (with the version's reward table), a policy (an
    actor-critic, DQN's or QR-DQN's Q-networks, or SAC's or TD3's actor and critics)."""

    run_dir: Path
    cfg: TrainConfig
    world: World
    policy: BasePolicy
    version: int

    @property
    def model_file(self) -> Path:
        """The model file of this version: ``<algo>.zip`` or ``<algo>-v<N>.zip``."""
        return model_path(self.run_dir, self.version, self.cfg.algo)


def load_config_of(run_dir: Path) -> TrainConfig:
    """The validated config a run was trained with (:class:`RunFolderError` unless a finished run folder)."""
    for name in RUN_FILES:
        if not (run_dir / name).exists():
            raise RunFolderError(f"{run_dir / name}: missing; is {run_dir} a finished music-rl run folder?")
    cfg = load_run_config(run_dir)
    model = model_path(run_dir, 1, cfg.algo)
    if not model.exists():
        raise RunFolderError(f"{model}: missing; is {run_dir} a finished music-rl run folder?")
    return cfg


def load_run(run_dir: str | Path, version: int | None = None) -> LoadedRun:
    """Load config, world and the policy of a model version (default: the newest) of a run folder."""
    run_dir = Path(run_dir)
    cfg = load_config_of(run_dir)
    versions = model_versions(run_dir, cfg.algo)
    version = versions[-1] if version is None else int(version)
    if version not in versions:
        raise ConfigError(f"policy_version={version}: {run_dir} holds versions "
                          f"{', '.join(map(str, versions))}")
    world = load_run_world(run_dir)
    if version > 1:
        table = reward_table_path(run_dir, version)
        if not table.is_file():
            raise RunFolderError(f"{table}: missing (the reward table of "
                                 f"{model_path(run_dir, version, cfg.algo).name})")
        world = world.with_reward_table(np.load(table, allow_pickle=False))
    path = model_path(run_dir, version, cfg.algo)
    policy = load_policy(path, cfg.algo)
    check_fits(path, policy, MusicRecEnv(world, dataclasses.replace(cfg.env, start_track=None)))
    return LoadedRun(run_dir, cfg, world, policy, version)


def track_label(tracks: pd.DataFrame, i: int) -> str:
    """``"artist - name"`` when the catalog has them, else the track id."""
    row = tracks.iloc[i]
    name, artist = row.get("name"), row.get("artist")
    if isinstance(name, str) and name and isinstance(artist, str) and artist:
        return f"{artist} - {name}"
    return str(row["track_id"])


def _closest(word: str, pool: Sequence[str], shown: Sequence[str]) -> list[str]:
    """The ``shown`` entries of the N_CLOSEST ``pool`` entries most similar to ``word`` (difflib ratio)."""
    matcher = difflib.SequenceMatcher(b=word, autojunk=False)
    best: list[tuple[float, int]] = []  # min-heap of (ratio, -index): the worst kept match on top
    for i, candidate in enumerate(pool):
        matcher.set_seq1(candidate)
        full = len(best) == N_CLOSEST
        if full and (matcher.real_quick_ratio() <= best[0][0] or matcher.quick_ratio() <= best[0][0]):
            continue  # cheap upper bounds already rule it out
        entry = (matcher.ratio(), -i)
        if full:
            heapq.heappushpop(best, entry)
        else:
            heapq.heappush(best, entry)
    return [shown[-i] for _, i in sorted(best, reverse=True)]


def find_track(world: World, track_id: str | None = None, query: str | None = None) -> int:
    """The row of a track id, or of an ``"artist - title"`` query (case-insensitive; a unique substring
    will do).

    Raises :class:`UnknownTrackError`, one line with the closest matches, when nothing (or more than one
    track) matches.
    """
    tracks = world.tracks
    ids = world.track_ids()
    if track_id is not None:
        row = ids.find(str(track_id))
        if row >= 0:
            return row
        raise UnknownTrackError(f"track_id={track_id!r}: not in the catalog ({len(ids)} tracks); closest: "
                                + ", ".join(_closest(str(track_id), ids, ids)))
    if query is None:
        raise ConfigError('give track_id=... or query="artist - title"')
    if "name" not in tracks or "artist" not in tracks:
        raise UnknownTrackError(f"query={query!r}: this catalog has no track names and artists; "
                                "use track_id=...")
    labels = (tracks["artist"].astype(str) + " - " + tracks["name"].astype(str)).tolist()
    lower = pd.Series(labels).str.lower()
    q = query.strip().lower()
    if len(q) > 1 and q[0] == q[-1] and q[0] in "'\"" and not (lower == q).any():
        q = q[1:-1].strip()  # quotes typed into the value (the shell's and Hydra's quoting already removed)
    hits = np.flatnonzero(lower.to_numpy() == q)
    if not len(hits):
        hits = np.flatnonzero(lower.str.contains(q, regex=False).to_numpy())
    if len(hits) == 1:
        return int(hits[0])
    pool = hits if len(hits) else np.arange(len(labels))
    close = _closest(q, [str(lower.iat[int(i)]) for i in pool], [f"{labels[i]} [{ids[i]}]" for i in pool])
    what = f"matches {len(hits)} tracks (give track_id=...)" if len(hits) else "matches no track"
    raise UnknownTrackError(f"query={query!r}: {what}; closest: " + "; ".join(close))


def check_length(run: LoadedRun, length: int) -> None:
    """Raise :class:`ConfigError` unless a session of ``length`` recommendations fits the catalog."""
    n, k = len(run.world.tracks), run.cfg.env.k
    most = n - k - 1 if run.cfg.env.no_repeat == "session" else None
    if length < 1 or (most is not None and length > most):
        raise ConfigError(f"length={length}: must be an integer in 1..{most or 'any'} (the catalog has {n} "
                          f"tracks and each step needs {k} unplayed candidates)")


def session_env(run: LoadedRun, length: int) -> MusicRecEnv:
    """The run's env, on the propagated reward table, for a session of ``length`` recommendations."""
    check_length(run, length)
    return MusicRecEnv(run.world, dataclasses.replace(run.cfg.env, reward_source=RewardSource.propagated,
                                                      session_length=length, start_track=None))


def _track_fields(tracks: pd.DataFrame, i: int) -> dict[str, Any]:
    """``track_id`` plus ``artist``, ``name`` and ``genre`` when the catalog has them."""
    out: dict[str, Any] = {"track_id": str(tracks["track_id"].iat[i])}
    for col in ("artist", "name", "genre"):
        if col in tracks:
            out[col] = str(tracks[col].iat[i])
    return out


def user_answers(run: LoadedRun, user: str, feedback: str | Path | None = None,
                 strict: bool = False) -> tuple[AnswerLog, LogReport | None]:
    """The answers of ``user`` (its ``user_id``) in a feedback log, empty when the user has none, and the report
    of a submitted log: ``feedback``, read as every submission is (:func:`music_rl.data.log_import.read_submission`:
    each served track once, unknown tracks counted and dropped, ``strict``: refused), or the run's
    ``feedback.csv`` (report None). :class:`music_rl.core.errors.FeedbackError`, one line, for a log that cannot be
    read."""
    ids = run.world.track_ids()
    if feedback is not None:
        if not Path(feedback).is_file():
            raise ConfigError(f"feedback={str(feedback)!r}: {not_a(feedback, 'regular file')}")
        rows, report = read_submission(feedback, ids, strict)
        return AnswerLog.from_feedback(rows, ids, user), report
    path = run.run_dir / "feedback.csv"
    if not path.is_file():
        raise ConfigError(f"{path}: no such file (the run's feedback log; give feedback=<log> to read another)")
    return AnswerLog.from_feedback(read_feedback(path, ids), ids, user), None


def listener_estimate(run: LoadedRun, answers: AnswerLog) -> ListenerEstimate:
    """What ``answers`` say about every track, over the run's clusters with its propagation settings; a run
    without ``env.observation=listener`` cannot condition on them (:class:`ConfigError`)."""
    if run.cfg.env.observation != "listener":
        raise ConfigError(f"user=...: {run.run_dir} was trained with env.observation={run.cfg.env.observation}; "
                          "serving a listener from their answers needs a run with env.observation=listener "
                          "(+experiment=new_listener)")
    world = run.world
    return Estimator.of(world, run.cfg.reward, run.cfg.env.k, run.cfg.env.session_length)(answers)


def recommend(run: LoadedRun, start: int, length: int, sample: bool = False,
              seed: int = 0, estimate: ListenerEstimate | None = None) -> list[dict[str, Any]]:
    """Walk a session of ``length`` recommendations from track row ``start``.

    With ``env.observation=listener`` the observation carries ``estimate`` (:func:`listener_estimate`; None:
    no answers, B = 0); the in-session answer rows hold the run's simulated listener's answers (nobody answers
    a printed session).

    Each step: the k nearest unplayed candidates → the policy → the track played becomes the current track.
    Returns one JSON-able dict per step: ``position``, ``from`` (track fields) and ``candidates`` (track fields,
    nearest first), and

    - discrete: ``value`` (the critic's estimate of the discounted return, in the env's scaled reward units;
      not for RecurrentPPO), each candidate's ``probability`` and ``pick`` (index into ``candidates``: the most
      probable, or a draw from the probabilities when ``sample``, seeded by ``seed``); a DQN or QR-DQN shows each
      candidate's ``q_value`` instead and picks the highest (``sample`` refused: :func:`check_sample`);
    - latent: ``proposed`` (the policy's point in ``[0, 1]^d``: its mean, or a draw when ``sample``; TD3's actor
      has no draw), ``played`` (track fields), ``distance`` (from the point to the track played) and
      ``outside_candidates``.
    """
    check_sample(run, sample)
    env = session_env(run, length)
    if run.cfg.env.observation == "listener":
        env.set_listener_estimate(estimate if estimate is not None else listener_estimate(run, AnswerLog.empty()))
    obs, _ = env.reset(seed=seed, options={"start_track": int(start)})
    step_of = _step_function(run)
    rng = np.random.default_rng(seed)
    if sample:
        torch.manual_seed(seed)  # a latent draw comes from torch's generator
    steps = []
    for position in range(1, length + 1):
        step, action = step_of(run, env, obs, sample, rng)
        obs, _, _, _, info = env.step(action)
        steps.append({"position": position, **step, **_played(run, info)})
    return steps


Step = Callable[[LoadedRun, MusicRecEnv, np.ndarray, bool, np.random.Generator], tuple[dict[str, Any], Any]]


def _step_function(run: LoadedRun) -> Step:
    """How the run's policy makes one step of :func:`recommend`: a recurrent policy's LSTM state carried from step
    to step of the session, a Q-learner's values, an actor-critic's probabilities, or a latent point."""
    if isinstance(run.policy, RecurrentActorCriticPolicy):
        lstm = LSTMState(run.policy)
        return partial(_recurrent_step, lstm)
    if run.cfg.env.action == "latent":
        return _latent_step
    if isinstance(run.policy, DQNPolicy | QRDQNPolicy):
        return _q_step
    return _discrete_step


def _discrete_step(run: LoadedRun, env: MusicRecEnv, obs: np.ndarray, sample: bool,
                   rng: np.random.Generator) -> tuple[dict[str, Any], int]:
    """What a discrete step shows before it is played, and the candidate it picks."""
    assert isinstance(run.policy, ActorCriticPolicy)
    probs, value = candidate_probabilities(run.policy, obs)
    return _shown(run, env, probs, sample, rng, value=value)


def _shown(run: LoadedRun, env: MusicRecEnv, probs: np.ndarray, sample: bool, rng: np.random.Generator,
           **extra: float) -> tuple[dict[str, Any], int]:
    """A discrete step's candidates with their probabilities, and the pick (the most probable, or a draw)."""
    pick = int(rng.choice(len(probs), p=probs / probs.sum())) if sample else int(np.argmax(probs))
    tracks = run.world.tracks
    return {"from": _track_fields(tracks, env.track), **extra,
            "candidates": [dict(_track_fields(tracks, int(t)), probability=float(p))
                           for t, p in zip(env.current_candidates, probs, strict=True)],
            "pick": pick}, pick


def _q_step(run: LoadedRun, env: MusicRecEnv, obs: np.ndarray, sample: bool,
            rng: np.random.Generator) -> tuple[dict[str, Any], int]:
    """A DQN or QR-DQN step: each candidate's Q-value and the best one (a Q-learner has no distribution to draw
    from: ``sample`` is refused by :func:`check_sample`)."""
    values = q_values(run.policy, obs)
    pick = int(np.argmax(values))
    tracks = run.world.tracks
    return {"from": _track_fields(tracks, env.track),
            "candidates": [dict(_track_fields(tracks, int(t)), q_value=float(v))
                           for t, v in zip(env.current_candidates, values, strict=True)],
            "pick": pick}, pick


def _recurrent_step(lstm: LSTMState, run: LoadedRun, env: MusicRecEnv, obs: np.ndarray, sample: bool,
                    rng: np.random.Generator) -> tuple[dict[str, Any], Any]:
    """A RecurrentPPO step, its LSTM state carried from the previous step of the session: the candidates'
    probabilities and the pick (discrete), or the point (latent)."""
    start = session_start(env)
    if run.cfg.env.action == "latent":
        tracks = run.world.tracks
        return {"from": _track_fields(tracks, env.track),
                "candidates": [_track_fields(tracks, int(t)) for t in env.current_candidates]}, \
            lstm.action(obs, start, deterministic=not sample)
    return _shown(run, env, lstm.probabilities(obs, start), sample, rng)


def check_sample(run: LoadedRun, sample: bool) -> None:
    """Refuse ``sample=true`` for a DQN or QR-DQN run (:class:`ConfigError`, one line): it has Q-values, no
    probabilities to draw from."""
    if sample and isinstance(run.policy, DQNPolicy | QRDQNPolicy):
        raise ConfigError(f"sample=true: {run.run_dir} is a {run.cfg.algo} run, whose policy has a Q-value per "
                          "candidate and no probabilities to draw from (leave sample=false: the best candidate)")


def _latent_step(run: LoadedRun, env: MusicRecEnv, obs: np.ndarray, sample: bool,
                 rng: np.random.Generator) -> tuple[dict[str, Any], np.ndarray]:
    """What a latent step shows before it is played, and the point it proposes."""
    action, _ = run.policy.predict(obs, deterministic=not sample)
    tracks = run.world.tracks
    return {"from": _track_fields(tracks, env.track),
            "candidates": [_track_fields(tracks, int(t)) for t in env.current_candidates]}, action


def _played(run: LoadedRun, info: dict[str, Any]) -> dict[str, Any]:
    """What a latent step played (none for a discrete step: its pick says it)."""
    if "proposed" not in info:
        return {}
    return {"proposed": [float(v) for v in info["proposed"]], "played": _track_fields(run.world.tracks, info["track"]),
            "distance": float(info["distance"]), "outside_candidates": bool(info["outside_candidates"])}
