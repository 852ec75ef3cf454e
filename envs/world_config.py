"""How a world is built (config group ``world``, :class:`WorldConfig`): the neighbour index, the engine that runs
the heavy stages (encoding and the neighbour table) and the rows each chunk holds, so that memory follows the
chunk rather than the catalog."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from music_rl.core.errors import require


class IndexKind(StrEnum):
    """The neighbour index of the table (:mod:`envs.candidates`)."""

    exact = "exact"
    faiss = "faiss"
    hnsw = "hnsw"


class BuildEngine(StrEnum):
    """Where the encoding and the neighbour table are computed."""

    local = "local"
    ray = "ray"


INDEXES: tuple[str, ...] = tuple(IndexKind)
ENGINES: tuple[str, ...] = tuple(BuildEngine)


@dataclass
class RayConfig:
    """The Ray cluster of ``world.build=ray`` (Ray is in the ``sweeps`` extra)."""

    address: str | None = None
    """null: start a local Ray for the build and stop it after (as hydra/launcher=ray_local does) | the address of a
    running cluster to join (host:port, ray://host:port, or auto: the one `ray start` last started on this machine),
    disconnected from after, never stopped; where nothing accepts a connection within 3 s, the build stops with one
    error line (music_rl.training.ray_build.ray_session)"""
    num_cpus: int | None = None
    """a local Ray's CPUs (null: every core); ignored when joining a cluster"""


@dataclass
class WorldConfig:
    """How the world's heavy parts are built (config group ``world``)."""

    index: IndexKind = IndexKind.exact
    """exact: a kd-tree, exact neighbours (scipy) | faiss: faiss-cpu's HNSW (approximate) | hnsw: hnswlib
    (approximate); faiss and hnsw need pip install -e ".[ann]" (docs/benchmarks.md: recall, time, memory)"""
    build: BuildEngine = BuildEngine.local
    """local: this process | ray: the encoding and the neighbour table over shards of the catalog on Ray
    (world.ray.*; byte-identical to local with world.index=exact)"""
    ray: RayConfig = field(default_factory=RayConfig)
    chunk_rows: int = 1_000_000
    """rows per chunk of the out-of-core stages (catalog, encoding, neighbour queries, cluster assignment) and per
    Ray shard, >= 1000: their buffers follow it, not the catalog"""

    sample_rows: int = 1_000_000
    """rows the VAE and K-Means are fitted on: a seeded sample of a larger catalog (every track is then encoded
    and labelled, a chunk at a time), >= 1000; a catalog of at most this many tracks is fitted whole"""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad ``world.*`` key."""
        require([
            ("world.chunk_rows", self.chunk_rows, isinstance(self.chunk_rows, int) and self.chunk_rows >= 1000,
             "must be an integer >= 1000"),
            ("world.sample_rows", self.sample_rows, isinstance(self.sample_rows, int) and self.sample_rows >= 1000,
             "must be an integer >= 1000"),
            ("world.ray.num_cpus", self.ray.num_cpus, self.ray.num_cpus is None
             or (isinstance(self.ray.num_cpus, int) and self.ray.num_cpus >= 1), "must be null or an integer >= 1"),
            ("world.ray.address", self.ray.address, self.ray.address is None or _is_address(str(self.ray.address)),
             "must be null (a local Ray), auto (the cluster ray start began here), host:port or ray://host:port"),
        ])


def _is_address(address: str) -> bool:
    """Whether ``address`` reads as a Ray address: ``auto``, ``host:port`` or ``ray://host:port`` (checked before
    any work; whether a cluster answers there, only when the build joins it)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    return address == "auto" or (bool(host.strip()) and " " not in host and "/" not in host and port.isdigit())
