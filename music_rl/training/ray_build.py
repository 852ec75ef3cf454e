"""The heavy stages of a world on Ray (``world.build=ray``): the encoding and the neighbour table, shard by shard,
each byte-identical to its local twin.

- :func:`ray_session` connects to the Ray of ``world.ray`` (a local one started for the build and stopped after,
  or a running cluster joined and left running); an address with no cluster there is one :class:`ConfigError`
  line, within seconds.
- :func:`ray_neighbour_table`: the latents go into the object store once; a pool of actors (one per CPU, at most one
  per shard) each builds the kd-tree once (:func:`envs.candidates.neighbour_tree`) and answers
  :func:`envs.candidates.query_rows` for the shards of :func:`envs.candidates.query_shards`; the driver writes each
  shard into the table. Equal to :func:`envs.candidates.build_neighbour_table`, byte for byte.
- :func:`ray_encode` / :func:`encode_in_shards`: the features cut into shards of ``shard_rows`` rows, each encoded
  on one torch thread (by a Ray task from the encoder's checkpoint, or here): the same latents, byte for byte.

Every actor holds a whole kd-tree (the float64 latents, the leaf order and the nodes:
:func:`envs.candidates.neighbour_tree`), so a node's memory bounds the catalog; the driver holds the table (``out``,
an array or a memory map) and the shards in flight.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from envs.candidates import neighbour_tree, query_rows, query_shards
from envs.world_config import RayConfig
from music_rl.core.arrays import NpyBuilder
from music_rl.core.errors import ConfigError

if TYPE_CHECKING:  # torch is imported by the encoding only: the neighbour table's actors do without it
    from vae.encoder import LatentEncoder

PROBE_TIMEOUT_S = 3.0  # a cluster's address must accept a TCP connection within this (Ray alone retries minutes)
_IN_FLIGHT = 2  # shards queued per actor or CPU: the next one starts while the driver copies the last one out
_RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0"}  # no usage statistics (as hydra/launcher=ray_local)
# one GCS connection attempt when joining a cluster, not Ray's 20 (read at each ray.init: node.py _init_gcs_client)
_JOIN_ENV = {"RAY_gcs_server_port_wait_time_s": "1"}


def _ray() -> Any:
    """The ``ray`` module, or the ConfigError naming the extra that installs it."""
    for key, value in _RAY_ENV.items():
        os.environ.setdefault(key, value)
    try:
        import ray
    except ImportError:
        raise ConfigError('world.build=ray needs Ray: pip install -e ".[sweeps]"') from None
    return ray


@contextmanager
def ray_session(cfg: RayConfig) -> Iterator[None]:
    """Ray for the block: ``cfg.address`` None: a local Ray of ``cfg.num_cpus`` CPUs (None: every core), no
    dashboard, shut down after; an address (``host:port``, ``ray://host:port`` or ``auto``): that cluster joined and
    left after (disconnected, never stopped). A driver already connected (a job that runs on Ray) keeps its
    connection: the block uses it and leaves it open.

    Raises:
        ConfigError: Ray is not installed; or ``world.ray.address=<addr>: no Ray cluster reachable there
            (<reason>)`` for a malformed address, a host that does not resolve, a port that refuses or does not
            answer within :data:`PROBE_TIMEOUT_S` seconds, or a port where Ray does not answer.
    """
    ray = _ray()
    if cfg.address is not None:
        _probe(ray, str(cfg.address).strip())
    if ray.is_initialized():  # someone else's connection (a Ray job): theirs to close
        yield
        return
    if cfg.address is None:
        ray.init(address="local", num_cpus=cfg.num_cpus, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)  # "local": a new Ray, even where RAY_ADDRESS names a cluster
    else:
        _join(ray, str(cfg.address).strip())
    try:
        yield
    finally:
        ray.shutdown()  # a local Ray: stopped; a cluster: this driver disconnected, the cluster left running


def _unreachable(address: str, reason: str) -> ConfigError:
    return ConfigError(f"world.ray.address={address}: no Ray cluster reachable there ({reason})")


def _host_port(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) split, or the ConfigError of a malformed address."""
    host, sep, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or any(c.isspace() for c in host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise _unreachable(address, "not host:port")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _unreachable(address, "not host:port") from None
    return host, int(port)


def _probe(ray: Any, address: str) -> None:
    """Raise the ConfigError of an address where nothing accepts a TCP connection within PROBE_TIMEOUT_S (Ray would
    retry for minutes); the host and port probed are those Ray connects to (``localhost`` as Ray resolves it)."""
    if address == "auto":  # the cluster `ray start` last started on this machine
        from ray._private.services import canonicalize_bootstrap_address

        try:
            found = canonicalize_bootstrap_address("auto")
        except ConnectionError:  # Ray's own "no cluster found" (its message names an unrelated file)
            found = None
        if found is None:
            raise _unreachable(address, "no Ray started on this machine: ray start --head")
        host, port = _host_port(found)
    elif address.startswith("ray://"):  # Ray Client's server, connected to as given
        host, port = _host_port(address.removeprefix("ray://"))
    else:
        from ray._private.services import resolve_ip_for_localhost

        host, port = _host_port(address)
        host = resolve_ip_for_localhost(host)  # as ray.init does: 127.0.0.1 is the node's address unless
        # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
    where = f"{host}:{port}"
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            pass
    except socket.gaierror:
        raise _unreachable(address, f"cannot resolve host {host!r}") from None
    except ConnectionRefusedError:
        raise _unreachable(address, f"connection refused at {where}") from None
    except TimeoutError:
        raise _unreachable(address, f"no answer from {where} within {PROBE_TIMEOUT_S:g} s") from None
    except OSError as err:
        raise _unreachable(address, f"{where}: {err.strerror or err}") from None


def _join(ray: Any, address: str) -> None:
    """``ray.init(address)``, one GCS attempt; Ray's refusal as the ConfigError line."""
    saved = {key: os.environ.get(key) for key in _JOIN_ENV}
    os.environ.update(_JOIN_ENV)
    try:
        quiet = {} if address.startswith("ray://") else {"log_to_driver": False, "logging_level": logging.WARNING}
        ray.init(address=address, **quiet)  # Ray Client would hand these to the server's ray.init
    except (ConnectionError, RuntimeError, ValueError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise _unreachable(address, f"Ray does not answer: {reason}") from None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _cpus(ray: Any) -> int:
    """The CPUs this driver's Ray offers now (at least 1)."""
    return max(1, int(ray.available_resources().get("CPU", 0)))


class _TreeShards:
    """A Ray actor's state: the kd-tree of every latent, built once, and its shards (:func:`query_shards`), each
    answered by :func:`query_rows` with its rows."""

    def __init__(self, latents: np.ndarray, shard_rows: int) -> None:
        self.tree = neighbour_tree(latents)
        self.shards = query_shards(self.tree, shard_rows)

    def order_digest(self) -> str:
        """SHA-256 of the tree's leaf order (int64 bytes), which fixes the shards: equal on every actor."""
        return hashlib.sha256(np.ascontiguousarray(self.tree.indices, dtype=np.int64).tobytes()).hexdigest()

    def query(self, shard: int, n_neighbours: int) -> tuple[np.ndarray, np.ndarray]:
        """Shard ``shard``'s rows and their neighbours (int32 (rows, K)), on the one CPU Ray gave this actor (every
        core would oversubscribe a node that runs an actor per CPU)."""
        rows = self.shards[shard]
        return rows, query_rows(self.tree, rows, n_neighbours, workers=1)


def ray_neighbour_table(latents: np.ndarray, n_neighbours: int, out: np.ndarray | NpyBuilder, shard_rows: int) -> None:
    """:func:`envs.candidates.build_neighbour_table` on Ray (inside :func:`ray_session`), written into ``out``.

    The latents (N, d) are put in the object store once; one actor per CPU Ray offers (at most one per shard)
    builds the kd-tree once and cuts its leaf order into the shards of :func:`envs.candidates.query_shards`
    (``shard_rows`` rows each); the actors' leaf orders are checked equal (SHA-256: the order is a function of the
    data, so every actor has the same shards). The driver hands the shard numbers out as actors finish (two queued
    per actor) and writes each answer, the shard's rows and their neighbours, into ``out[rows]``: it never holds
    more than the queued shards, whatever N. The table equals the local one byte for byte.

    Args:
        latents: (N, d), N >= 2.
        n_neighbours: K >= 1 (clipped to N - 1).
        out: int32 (N, min(K, N - 1)), an array or a memory map.
        shard_rows: rows per shard (``world.chunk_rows``) >= 1.
    """
    ray = _ray()
    latents = np.asarray(latents)
    if latents.ndim != 2 or latents.shape[0] < 2:
        raise ValueError(f"latents must have shape (N, d) with N >= 2, got {latents.shape}")
    if n_neighbours < 1 or shard_rows < 1:
        raise ValueError(f"n_neighbours and shard_rows must be >= 1, got {n_neighbours} and {shard_rows}")
    n = latents.shape[0]
    k = min(int(n_neighbours), n - 1)
    if out.shape != (n, k) or out.dtype != np.int32:
        raise ValueError(f"out must be int32 of shape {(n, k)}, got {out.dtype} {out.shape}")
    n_shards = -(-n // shard_rows)  # query_shards cuts the N rows of the leaf order
    latents_ref = ray.put(latents)
    actor = ray.remote(num_cpus=1)(_TreeShards)
    actors = [actor.remote(latents_ref, shard_rows) for _ in range(min(_cpus(ray), n_shards))]
    try:
        if len(set(ray.get([a.order_digest.remote() for a in actors]))) != 1:
            raise RuntimeError("the actors' kd-trees disagree on the leaf order of the same latents")
        todo = list(reversed(range(n_shards)))
        pending: dict[Any, Any] = {}  # an answer's ref -> the actor to give the next shard

        def give(to: Any) -> None:
            if todo:
                pending[to.query.remote(todo.pop(), k)] = to

        for a in actors:
            for _ in range(_IN_FLIGHT):
                give(a)
        while pending:
            [done], _ = ray.wait(list(pending), num_returns=1)
            to = pending.pop(done)
            rows, table = ray.get(done)
            out[rows] = table
            del done, rows, table  # the answer leaves the object store
            give(to)
    finally:
        for a in actors:
            ray.kill(a)


def _shards(n: int, shard_rows: int) -> list[tuple[int, int]]:
    if shard_rows < 1:
        raise ValueError(f"shard_rows must be >= 1, got {shard_rows}")
    return [(a, min(a + shard_rows, n)) for a in range(0, n, shard_rows)]


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Torch on one intra-op thread for the block (restored after): the same bytes on any machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _check_encode(encoder: LatentEncoder, features: np.ndarray, out: np.ndarray | NpyBuilder) -> None:
    d = encoder.cfg.latent_dim
    if features.ndim != 2 or out.shape != (features.shape[0], d) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape {(features.shape[0], d)} for features {features.shape}, "
                         f"got {out.dtype} {out.shape}")


def encode_in_shards(encoder: LatentEncoder, features: np.ndarray, out: np.ndarray | NpyBuilder,
                     shard_rows: int) -> None:
    """``out[a:b] = encoder.transform(features[a:b])`` for the shards [a, b) of ``shard_rows`` rows, on one torch
    thread: what :func:`ray_encode` computes, here."""
    _check_encode(encoder, features, out)
    with _one_torch_thread():
        for a, b in _shards(len(features), shard_rows):
            out[a:b] = encoder.transform(np.asarray(features[a:b]))


def _encode_shard(checkpoint: dict[str, Any], features: np.ndarray) -> np.ndarray:
    """A Ray task: one shard's latents, by the encoder rebuilt from its checkpoint, on one torch thread."""
    from vae.encoder import LatentEncoder

    encoder = LatentEncoder.from_checkpoint(checkpoint)
    with _one_torch_thread():
        return encoder.transform(features)


def ray_encode(encoder: LatentEncoder, features: np.ndarray, out: np.ndarray | NpyBuilder, shard_rows: int) -> None:
    """:func:`encode_in_shards` on Ray (inside :func:`ray_session`): each shard [a, b) encoded by a Ray task from
    the encoder's checkpoint (put in the object store once), written into ``out[a:b]``; a shard's features are put
    when its task is handed out, at most two tasks per CPU in flight. The same bytes as :func:`encode_in_shards`."""
    ray = _ray()
    _check_encode(encoder, features, out)
    checkpoint = ray.put(encoder.checkpoint())
    task = ray.remote(num_cpus=1)(_encode_shard)
    todo = list(reversed(_shards(len(features), shard_rows)))
    slots = _IN_FLIGHT * _cpus(ray)
    pending: dict[Any, tuple[int, int]] = {}
    while todo or pending:
        while todo and len(pending) < slots:
            a, b = todo.pop()
            pending[task.remote(checkpoint, np.ascontiguousarray(features[a:b]))] = (a, b)
        [done], _ = ray.wait(list(pending), num_returns=1)
        a, b = pending.pop(done)
        out[a:b] = ray.get(done)
