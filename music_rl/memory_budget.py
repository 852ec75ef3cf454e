"""The memory a run would need, from its config alone, against the memory this machine has: checked before any
work and before a run folder is created, so a size nobody can run is one line and exit 2, not a hang or a late
allocation traceback.

The estimate is a sum of terms, each named by the config keys that drive it (:func:`estimate`). The catalog's
term follows the measured cost of the real build, out of core (``/usr/bin/time -v``'s peak RSS, 2026-12-07 on this
project's CPU container): 1,167,188 KiB for ``music-rl train +experiment=tiny eval.ope_log_steps=0
data.n_tracks=1000000`` and 4,343,952 KiB for ``music-rl train data.n_tracks=10000000 vae.epochs=1
ppo.total_timesteps=2048``, i.e. 358 bytes per track above a fixed 778 MB (the interpreter, torch, SB3 and the
world's other parts). Those 358 bytes hold one listener's session table (2 taste centres + 3: 40 bytes), counted
apart with the run's own number of centres and listeners; the rest is mostly pages of the world's memory-mapped
files (features, latents, the staged neighbour table) while a stage reads them, the kd-tree's float64 latents and
the track table. Below a million tracks the estimate runs high (by 29% at 200,000: the catalog is drawn a million
tracks at a time). So a 10M-track catalog with the default keys needs about 4.4 GB, and 100M about 37 GB, which
this 24 GB machine refuses. The other terms are the arrays the code allocates (a kd-tree query's buffers, SB3's
rollout and replay buffers, the networks with Adam's state, the evaluation's records), at their element sizes. A
file catalog's size is known only once read: its tracks are not counted here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from envs.population_prior import ANCHORS
from music_rl.core.errors import ConfigError

if TYPE_CHECKING:
    from music_rl.config import TrainConfig

FIXED_BYTES = 778_000_000  # the measured peak RSS's intercept (module docstring)
QUERY_ROWS = 65536  # rows of one kd-tree query (envs/candidates.py) and of one staged write (music_rl/core/arrays.py)
TRACK_BYTES = 358 - 8 * (2 + 3)  # per track, measured, less the default session table
N_FEATURES = 11
ADAM_BYTES_PER_PARAM = 16  # float32 weight, gradient and Adam's two moments
EPISODE_STEP_BYTES = 160  # an evaluation step's record: ~10 float64/int64 fields, the k candidates apart
OPE_ROW_BYTES = 400  # an exploration-log row: a DataFrame row and its CSV text, the k probabilities apart
N_EVAL_POLICIES = 9  # learnt, ppo_sample, the baselines, the catalog oracle and the planner
LOGGED_ANSWER_BYTES = 4096  # sim2real: a logged answer as rows, frame, CSV, sessions and the fit's inputs (a
# 10,000-session protocol peaked about 0.5 GB above a default run, with about 120,000 answers)


@dataclass(frozen=True)
class Term:
    """A part of the estimate: the config keys that drive it (as ``key=value``) and its bytes."""

    keys: str
    bytes: int


def _mlp_params(n_in: int, widths: Sequence[int], n_out: int) -> int:
    """Weights and biases of a fully connected network ``n_in -> widths -> n_out``."""
    sizes = [n_in, *[int(w) for w in widths], n_out]
    return sum((a + 1) * b for a, b in zip(sizes, sizes[1:], strict=False))


def observation_width(cfg: TrainConfig) -> int:
    """An upper bound of the observation's width (``envs.music_env.EnvSetup.of`` has the exact one): the
    listener layout, the widest, whatever ``env.observation``."""
    env, d = cfg.env, cfg.vae.latent_dim
    row = d + N_FEATURES + 3
    return (1 + env.k) * row + env.history * row


def estimate(cfg: TrainConfig) -> list[Term]:
    """The terms of the memory a training run of ``cfg`` would need at its peak, largest first."""
    env, lis, algo = cfg.env, cfg.listeners, str(cfg.algo)
    obs, act = observation_width(cfg), cfg.vae.latent_dim + 1
    terms = [Term("", FIXED_BYTES)]
    if cfg.data.source == "synthetic":
        n, table = cfg.data.n_tracks, 8 * (lis.n_taste_centres + 3)  # a listener's session table: (N, C + 3) float64
        terms.append(Term(f"data.n_tracks={n}", n * (TRACK_BYTES + table)))
        if cfg.eval.protocol == "population" or cfg.new_listener.enabled:  # a table per listener met
            terms.append(Term(f"listeners.population={lis.population}, data.n_tracks={n}",
                              (lis.population - 1) * n * table))
        if env.observation == "listener" or cfg.new_listener.enabled:  # the population prior's float32 basis
            columns = 2 * (cfg.vae.latent_dim + N_FEATURES) + ANCHORS + 1  # [s, s**2, anchors, 1]
            terms.append(Term(f"env.observation={env.observation}, data.n_tracks={n}", n * 4 * columns))
    k = min(env.n_neighbours, max(cfg.data.n_tracks - 1, 1)) if cfg.data.source == "synthetic" else env.n_neighbours
    terms.append(Term(f"env.n_neighbours={env.n_neighbours}",  # a kd-tree query's distances, indices and table rows
                      QUERY_ROWS * ((k + 1) * 16 + 2 * 4 * k)))
    terms.append(Term(f"listeners.population={lis.population}, listeners.n_taste_centres={lis.n_taste_centres}",
                      lis.population * (8 * lis.n_taste_centres * (5 * N_FEATURES + 1) + 100)))
    vae = cfg.vae
    vae_params = (_mlp_params(N_FEATURES, vae.hidden, 2 * vae.latent_dim)
                  + _mlp_params(vae.latent_dim, vae.hidden[::-1], N_FEATURES))
    batch = min(vae.batch_size, cfg.data.n_tracks) if cfg.data.source == "synthetic" else vae.batch_size
    terms.append(Term(f"vae.hidden={list(vae.hidden)}, vae.batch_size={vae.batch_size}",
                      vae_params * ADAM_BYTES_PER_PARAM + batch * 2 * sum(vae.hidden) * 4 * 4))
    group = getattr(cfg, algo)
    if hasattr(group, "n_steps"):  # the actor-critics: PPO, A2C, RecurrentPPO
        terms.append(Term(f"{algo}.n_steps={group.n_steps} x {algo}.n_envs={group.n_envs}",
                          2 * group.n_steps * group.n_envs * 4 * (obs + act + 6)))  # SB3's buffer and its flat copy
        params = 2 * _mlp_params(obs, group.net_arch, env.k) + _mlp_params(obs, group.scorer_arch, 1)
        terms.append(Term(f"{algo}.net_arch={list(group.net_arch)}, {algo}.scorer_arch={list(group.scorer_arch)}",
                          params * ADAM_BYTES_PER_PARAM))
        widths = sum(group.scorer_arch) + sum(group.net_arch)
        batch = getattr(group, "batch_size", group.n_steps * group.n_envs)  # A2C: the whole rollout
        terms.append(Term(f"{algo}.batch_size={batch}",
                          3 * batch * (1 + env.k) * (obs + widths) * 4))  # activations and gradients
    else:
        off = group
        terms.append(Term(f"{algo}.buffer_size={off.buffer_size}",
                          (off.buffer_size + off.n_envs) * 4 * (2 * obs + act + 2)))
        arch = ("actor_arch", "critic_arch") if hasattr(off, "actor_arch") else ("scorer_arch", "net_arch")
        first, second = (list(getattr(off, a)) for a in arch)
        params = (2 * _mlp_params(obs, first, act) + 4 * _mlp_params(obs + act, second, 1) if arch[0] == "actor_arch"
                  else 2 * _mlp_params(obs, first, getattr(off, "n_quantiles", 1))
                  + 2 * _mlp_params(obs, second, env.k * getattr(off, "n_quantiles", 1)))  # DQN, QR-DQN and targets
        terms.append(Term(f"{algo}.{arch[0]}={first}, {algo}.{arch[1]}={second}", params * ADAM_BYTES_PER_PARAM))
        terms.append(Term(f"{algo}.batch_size={off.batch_size}",
                          3 * off.batch_size * (1 + env.k) * (obs + sum(first) + sum(second)) * 4))
    step = EPISODE_STEP_BYTES + 8 * env.k
    episodes = N_EVAL_POLICIES * cfg.eval.n_episodes + 3 * cfg.eval.periodic_episodes
    terms.append(Term(f"eval.n_episodes={cfg.eval.n_episodes}, eval.periodic_episodes={cfg.eval.periodic_episodes}"
                      f", env.session_length={env.session_length}", episodes * env.session_length * step))
    terms.append(Term(f"eval.ope_log_steps={cfg.eval.ope_log_steps}",
                      cfg.eval.ope_log_steps * (OPE_ROW_BYTES + 8 * env.k)))
    terms.append(Term(f"reward.n_clusters={cfg.reward.n_clusters}, reward.probes_per_cluster="
                      f"{cfg.reward.probes_per_cluster}", cfg.reward.n_clusters * cfg.reward.probes_per_cluster
                      * OPE_ROW_BYTES))
    if cfg.sim2real.enabled:  # the largest log, at most env.session_length answers a session
        n = max(cfg.sim2real.sizes())
        terms.append(Term(f"sim2real.log_sessions / sim2real.log_sizes up to {n}, env.session_length="
                          f"{env.session_length}", n * env.session_length * LOGGED_ANSWER_BYTES))
    return sorted(terms, key=lambda t: -t.bytes)


def available_memory() -> tuple[int, str]:
    """The memory this process may use, in bytes, and where the figure comes from: /proc/meminfo's
    MemAvailable (else the free or total physical pages), capped by a cgroup's memory.max."""
    figure = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                figure, source = int(line.split()[1]) * 1024, "available (MemAvailable)"
    except (OSError, ValueError, IndexError):
        pass
    if figure is None:
        try:
            figure, source = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "free"
        except (ValueError, OSError, AttributeError):
            figure, source = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "in all"
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit() and int(limit) < figure:
            figure, source = int(limit), "allowed (the cgroup's memory.max)"
    except OSError:
        pass
    return figure, source


def shown(n: int) -> str:
    """Bytes in the largest unit that keeps the figure at or above 1 (MB to EB), 3 significant digits."""
    units = ("MB", "GB", "TB", "PB", "EB")
    power = min(max(len(str(int(n))) - 7, 0) // 3, len(units) - 1)
    return f"{n / 10 ** (6 + 3 * power):.3g} {units[power]}"


def check_memory(cfg: TrainConfig, available: tuple[int, str] | None = None) -> None:
    """Raise :class:`ConfigError` when the run's estimate exceeds ``available`` (default: this machine's): one
    line with what is needed, what there is and the keys of the largest terms."""
    have, source = available if available is not None else available_memory()
    terms = estimate(cfg)
    need = sum(t.bytes for t in terms)
    if need <= have:
        return
    keyed = [t for t in terms if t.keys]
    drivers = keyed[:1] + [t for t in keyed[1:] if t.bytes >= need / 10]
    named = "; ".join(f"{t.keys} ({shown(t.bytes)})" for t in drivers)
    raise ConfigError(f"this run needs about {shown(need)} of memory and the machine has {shown(have)} {source}: "
                      f"mostly {named}; lower {'it' if len(drivers) == 1 else 'them'}")
