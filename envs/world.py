"""The world of a run: tracks, features, latents, neighbour table, clusters, propagated rewards, listeners.

:func:`build_world` assembles a world from latents (VAE latents from the main pipeline; this module knows
no torch) and returns the feedback log its rewards were learnt from. :func:`synthetic_world` builds a
small standalone world (PCA latents standing in for the VAE) so the env can be tried and tested alone.
:meth:`World.save` / :meth:`World.load` keep it in a run's ``world/`` folder; the listener population is
not stored but rebuilt, deterministically, from the features and ``meta``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from envs.candidates import CandidateIndex, build_neighbour_table
from envs.listeners import FittedListener, ListenerConfig, ListenerModel, Population, make_population
from envs.music_env import EnvConfig
from envs.population_prior import PopulationPrior, fit_on_answers
from envs.rewards import RewardConfig, fit_clusters, propagate, reward, select_probes
from envs.simulated_logs import probe_log
from envs.track_table import TrackIds, read_tracks, write_tracks
from envs.world_checks import FORMAT_VERSION, WorldMismatch, mismatch, read_array, read_meta
from music_rl.core.arrays import map_npy
from music_rl.core.atomic import atomic_path, write_json_atomic
from music_rl.core.errors import ConfigError, RunFolderError
from music_rl.data.catalog import Normaliser, synthetic_catalog

_DTYPES = {"features": np.float32, "latents": np.float32, "neighbours": np.int32, "clusters": np.int32,
           "centroids": np.float32, "reward_table": np.float32}
ARRAYS = tuple(_DTYPES)

# Independent random streams of one world seed.
_STREAM_LISTENER_SEED, _STREAM_SPLIT, _STREAM_PROBES, _STREAM_FEEDBACK = 1, 2, 3, 4  # the prior's: 5
BUILDING_DIR = ".world-building"  # a run folder's arrays being built out of core (music_rl.training.run_world)
PRIOR_FILE = "population_prior.npz"  # in world/, when the run's listener observation fitted one


@dataclass(eq=False)
class World:
    """Everything an env needs, as arrays whose row i is track i.

    Attributes:
        tracks: metadata, ``track_id`` (str, unique) first.
        features: (N, 11) float32 normalised features in [0, 1].
        latents: (N, d) float32 latents in [0, 1].
        neighbours: (N, K) int32 neighbour table, nearest first.
        clusters: (N,) int32 K-Means labels; centroids: (C, d) float32.
        reward_table: (N,) float32 propagated reward r̂ (raw reward units).
        meta: JSON-able settings: reward definition, listener config and seed, served / train / held-out
            listener ids, latent source, format version.
    """

    tracks: pd.DataFrame
    features: np.ndarray
    latents: np.ndarray
    neighbours: np.ndarray
    clusters: np.ndarray
    centroids: np.ndarray
    reward_table: np.ndarray
    meta: dict[str, Any]
    _population: Population | None = field(default=None, init=False, repr=False)
    _fitted: FittedListener | None = field(default=None, init=False, repr=False)
    _prior: PopulationPrior | None = field(default=None, init=False, repr=False)
    _prior_basis: np.ndarray | None = field(default=None, init=False, repr=False)
    _track_ids: TrackIds | None = field(default=None, init=False, repr=False)
    _indexes: dict[tuple[int, int], CandidateIndex] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ARRAYS:
            setattr(self, name, np.asanyarray(getattr(self, name)))  # a memory map stays one
        problem = mismatch(self)
        if problem is not None:
            raise WorldMismatch(*problem)
        for name in ARRAYS:  # a memory map of the right type stays one (its pages read when used)
            array = getattr(self, name)
            if not (isinstance(array, np.memmap) and array.dtype == _DTYPES[name] and array.flags.c_contiguous):
                setattr(self, name, np.ascontiguousarray(array, dtype=_DTYPES[name]))

    def listeners(self) -> Population:
        """The simulated listener population (``listeners.model``), rebuilt from features and ``meta``
        (deterministic, cached)."""
        if self._population is None:
            self._population = _sample_population(self.features, self.meta["listener_config"],
                                                  self.meta["listeners_seed"], self._fitted)
        return self._population

    def learnt(self) -> bool:
        """Whether the world's listeners are a fitted model (``listeners.model=learnt``)."""
        model: str | None = self.meta["listener_config"].get("model")
        return model == ListenerModel.learnt

    def attach_listener(self, fitted: FittedListener) -> None:
        """Give a loaded world its fitted listener model (``listeners.model=learnt``: the model file is outside
        ``world/``, read by :mod:`music_rl.user_model`); the population is drawn again from it."""
        self._fitted, self._population = fitted, None

    def population_prior(self, k: int, session_length: int) -> tuple[PopulationPrior, np.ndarray]:
        """The population prior of :mod:`envs.population_prior` and its basis of every track ((N, p) float32), fitted
        once on the training listeners' answers to random choices among ``k`` candidates in sessions of
        ``session_length``, then cached (shared by the world's envs, saved with the world)."""
        if self._prior is None:
            self._prior = fit_on_answers(self.listeners(), self.meta["train_listeners"],
                                         self.candidate_index(k, self.neighbours.shape[1]), session_length,
                                         self.latents, self.features, int(self.meta["listeners_seed"]))
        if self._prior_basis is None:
            self._prior_basis = self._prior.basis(self.latents, self.features).astype(np.float32)
        return self._prior, self._prior_basis

    def with_reward_table(self, table: np.ndarray) -> World:
        """This world with another reward table (a fine-tuned version's), its fitted listener and prior kept."""
        world = dataclasses.replace(self, reward_table=table)
        world._fitted, world._prior, world._prior_basis = self._fitted, self._prior, self._prior_basis
        return world

    def track_ids(self) -> TrackIds:
        """Track ids, row i = track i (cached; about a microsecond a lookup, 20 bytes a track)."""
        if self._track_ids is None:
            self._track_ids = TrackIds(self.tracks["track_id"])
        return self._track_ids

    def candidate_index(self, k: int, n_neighbours: int) -> CandidateIndex:
        """The candidate index over the first ``n_neighbours`` table columns (cached, shared by envs)."""
        key = (int(k), int(n_neighbours))
        if key not in self._indexes:
            self._indexes[key] = CandidateIndex(self.latents, self.neighbours[:, :n_neighbours], k)
        return self._indexes[key]

    def save(self, world_dir: str | Path) -> None:
        """Write tracks.csv, one .npy per array, the population prior when fitted and meta.json into
        ``world_dir``, each atomically."""
        out = Path(world_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_tracks(self.tracks, out / "tracks.csv")
        for name in ARRAYS:
            array = getattr(self, name)
            if isinstance(array, np.memmap) and array.filename is not None:
                built = Path(str(array.filename))
                if built.resolve() == (out / f"{name}.npy").resolve():
                    continue  # saved already
                if built.parent.name == BUILDING_DIR and built.exists():  # built out of core: moved in (once)
                    os.replace(built, out / f"{name}.npy")  # atomic; the old map stays valid, the new one names it
                    setattr(self, name, map_npy(out / f"{name}.npy"))
                    continue
            with atomic_path(out / f"{name}.npy") as tmp, open(tmp, "wb") as fh:
                np.save(fh, array)
        if self._prior is not None:
            with atomic_path(out / PRIOR_FILE) as tmp:
                self._prior.save(tmp)
        write_json_atomic(out / "meta.json", self.meta)

    @classmethod
    def load(cls, world_dir: str | Path) -> World:
        """Read a world written by :meth:`save`.

        Raises:
            RunFolderError: a file is missing or unreadable, an array has the wrong shape or dtype, rows do
                not line up with tracks.csv, or meta.json is from another format version.
        """
        src = Path(world_dir)
        if not src.is_dir():
            raise RunFolderError(f"{src}: no world folder here (a run's world/ holds tracks.csv, "
                                 f"{', '.join(f'{a}.npy' for a in ARRAYS)}, meta.json)")
        tracks = read_tracks(src / "tracks.csv")
        arrays = {name: read_array(src / f"{name}.npy") for name in ARRAYS}
        meta = read_meta(src / "meta.json")
        try:
            world = cls(tracks=tracks, meta=meta, **arrays)
        except WorldMismatch as err:
            raise RunFolderError(f"{src / err.file}: {err.what}") from None
        if (src / PRIOR_FILE).is_file():
            world._prior = PopulationPrior.read(src / PRIOR_FILE, world.latents.shape[1] + world.features.shape[1])
        return world


def _sample_population(features: np.ndarray, listener_config: dict[str, Any], seed: int,
                       fitted: FittedListener | None = None) -> Population:
    """The listener population of a world: a pure function of the features, the config, the seed (and, for a
    learnt listener, its fitted model)."""
    return make_population(features, ListenerConfig.of(listener_config), np.random.default_rng(seed),
                           fitted=fitted)


def _derived_seed(seed: int, stream: int) -> int:
    """A 32-bit seed of stream ``stream`` of ``seed``."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


def build_world(tracks: pd.DataFrame, features: np.ndarray, latents: np.ndarray, reward_cfg: RewardConfig,
                listener_cfg: ListenerConfig, env_cfg: EnvConfig, seed: int, listener_seed: int | None = None,
                latent_source: str = "vae", log: pd.DataFrame | None = None,
                log_has_likes: bool = True, fitted: FittedListener | None = None, neighbours: np.ndarray | None = None,
                sample_rows: int | None = None) -> tuple[World, pd.DataFrame]:
    """Latents → neighbour table, clusters, listeners, feedback, propagated rewards.

    Without ``log``, the served listener (the ``personal`` protocol's listener: the first training listener)
    answers one probe session over the probe tracks of every cluster; with it (a feedback frame joined to the
    catalog), the log's rewards are propagated instead. Either way the rewards are propagated to every track.

    Args:
        tracks: metadata, ``track_id`` first, row i = track i.
        features: (N, 11) normalised features in [0, 1] (the listeners' taste lives in feature space).
        latents: (N, d) latents in [0, 1] (VAE or PCA).
        reward_cfg: reward definition and propagation settings.
        listener_cfg: listener population settings.
        env_cfg: env settings (``n_neighbours``: the neighbour table width K).
        seed: world seed (clusters, probe choice, probe responses).
        listener_seed: population seed; None: ``listener_cfg.seed`` or, when unset, derived from ``seed``.
        latent_source: "vae" or "pca", recorded in ``meta``.
        log: the feedback the rewards are learnt from; None: the served listener's probe answers.
        log_has_likes: False for a log without likes (MSSD): its rewards are the percentage listened, and the
            env's reward scale is 1 rather than 1 / (1 + like_weight).
        fitted: ``listeners.model=learnt``: the fitted listener model (:mod:`music_rl.user_model`).
        neighbours: the neighbour table when the caller built it (``world.index``, ``world.build``:
            :mod:`music_rl.training.world_arrays`); None: the exact table, built here.
        sample_rows: K-Means is fitted on a seeded sample of this many rows of a larger catalog
            (``world.sample_rows``); None: on every row.

    Returns:
        The world and the feedback log its reward table was learnt from.
    """
    n = len(tracks)
    if features.shape[0] != n or latents.shape[0] != n:
        raise ValueError(f"rows do not line up: {n} tracks, features {features.shape}, "
                         f"latents {latents.shape}")
    if listener_seed is None:
        listener_seed = (listener_cfg.seed if listener_cfg.seed is not None
                         else _derived_seed(seed, _STREAM_LISTENER_SEED))
    if neighbours is None:
        neighbours = build_neighbour_table(latents, env_cfg.n_neighbours)
    clusters, centroids = fit_clusters(latents, reward_cfg.n_clusters, seed, sample_rows)

    listener_config = dataclasses.asdict(listener_cfg)
    population = _sample_population(features, listener_config, int(listener_seed), fitted)
    train_ids, heldout_ids = population.split(listener_cfg.held_out_fraction,
                                              np.random.default_rng([int(listener_seed), _STREAM_SPLIT]))
    served = int(train_ids[0])
    track_ids = TrackIds(tracks["track_id"])
    source = "probes" if log is None else "log"
    if log is None:
        probes = select_probes(latents, clusters, centroids, reward_cfg.probes_per_cluster,
                               reward_cfg.probe_selection, np.random.default_rng([seed, _STREAM_PROBES]))
        log = probe_log(population, [served], probes, track_ids, np.random.default_rng([seed, _STREAM_FEEDBACK]))
    rows = track_ids.to_index().get_indexer(pd.Index(log["track_id"].astype(str)))
    if (rows < 0).any():
        raise ValueError("log rows must be joined to the catalog first (music_rl.data.log_import.read_log)")
    observed = np.asarray(reward(log["percentage_listened"].to_numpy(), log["liked"].to_numpy(), reward_cfg),
                          dtype=np.float64)  # one reward per row: an array
    r_hat = propagate(latents, clusters, centroids, rows, observed, reward_cfg)

    meta = {
        "format_version": FORMAT_VERSION,
        "like_weight": float(reward_cfg.like_weight),
        "early_skip_penalty": float(reward_cfg.early_skip_penalty),
        "early_skip_threshold": float(reward_cfg.early_skip_threshold),
        "listener_config": listener_config,
        "listeners_seed": int(listener_seed),
        "served_listener": served,
        "train_listeners": [int(i) for i in train_ids],
        "heldout_listeners": [int(i) for i in heldout_ids],
        "latent_source": latent_source,
        "feedback": source,
        "log_has_likes": bool(log_has_likes),
        "propagation": {"decay": str(reward_cfg.decay), "decay_scale": float(reward_cfg.decay_scale),
                        "prior": str(reward_cfg.prior)},
    }
    world = World(tracks=tracks.reset_index(drop=True), features=features, latents=latents,
                  neighbours=neighbours, clusters=clusters, centroids=centroids, reward_table=r_hat,
                  meta=meta)
    world._population, world._fitted = population, fitted
    return world, log


def pca_latents(features: np.ndarray, latent_dim: int) -> np.ndarray:
    """PCA of the features, each component rescaled to [0, 1]: the VAE's stand-in. float32 (N, latent_dim)."""
    if not 1 <= latent_dim <= features.shape[1]:
        raise ConfigError(f"latent_dim={latent_dim}: must be in 1..{features.shape[1]}")
    from sklearn.decomposition import PCA  # here, not at module level: sklearn costs ~0.6 s on every command

    z = PCA(n_components=latent_dim, svd_solver="full").fit_transform(np.asarray(features, dtype=np.float64))
    lo, hi = z.min(axis=0), z.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    latents: np.ndarray = np.clip((z - lo) / span, 0.0, 1.0).astype(np.float32)  # z: sklearn's (untyped)
    return latents


def _configs(overrides: dict[str, Any]) -> tuple[RewardConfig, ListenerConfig]:
    """Route ``synthetic_world`` overrides to the reward and listener configs by field name."""
    owners: dict[type, dict[str, Any]] = {RewardConfig: {}, ListenerConfig: {}}
    for key, value in overrides.items():
        hits = [cls for cls in owners if key in {f.name for f in dataclasses.fields(cls)}]
        if not hits:
            raise ConfigError(f"synthetic_world option {key}={value!r}: not a field of RewardConfig or "
                              "ListenerConfig")
        for cls in hits:
            owners[cls][key] = value
    return RewardConfig(**owners[RewardConfig]), ListenerConfig(**owners[ListenerConfig])


def synthetic_world(n_tracks: int = 2000, latent_dim: int = 5, seed: int = 0,
                    listener_seed: int | None = None, env_cfg: EnvConfig | None = None,
                    **overrides: Any) -> World:
    """A small standalone world: synthetic catalog → physical normalisation → PCA latents → world.

    Args:
        n_tracks: catalog size.
        latent_dim: d, the number of PCA components (rescaled to [0, 1]).
        seed: catalog and world seed.
        listener_seed: population seed (None: derived from ``seed``).
        env_cfg: env settings (``n_neighbours``); default :class:`EnvConfig`.
        **overrides: :class:`RewardConfig` / :class:`ListenerConfig` fields (``like_weight=100``,
            ``n_clusters=8``, ``population=10`` ...).
    """
    reward_cfg, listener_cfg = _configs(overrides)
    env_cfg = EnvConfig() if env_cfg is None else env_cfg
    reward_cfg.validate()
    listener_cfg.validate()
    env_cfg.validate(n_tracks)
    catalog = synthetic_catalog(n_tracks, seed)
    features = Normaliser("physical").fit(catalog.raw).transform(catalog.raw)
    latents = pca_latents(features, latent_dim)
    world, _ = build_world(catalog.tracks, features, latents, reward_cfg, listener_cfg, env_cfg, seed,
                           listener_seed=listener_seed, latent_source="pca")
    return world
