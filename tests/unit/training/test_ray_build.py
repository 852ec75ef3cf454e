"""world.build=ray: the neighbour table and the encoding on a Ray cluster (a head on the loopback, 2 CPUs) are the
local ones byte for byte; a session leaves the cluster running; a local Ray is started for its block and stopped
after (a whole `music-rl train world.build=ray`: its world is the local build's, byte for byte); an address with no
cluster there, or Ray not installed, is one ConfigError line, within seconds."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, train_command

from envs.candidates import build_neighbour_table
from envs.world_config import RayConfig
from music_rl.core.errors import ConfigError
from music_rl.training.ray_build import encode_in_shards, ray_encode, ray_neighbour_table, ray_session
from vae.config import VAEConfig
from vae.encoder import LatentEncoder

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("sweeps")]  # one worker: Ray instances never overlap

# Ray on this machine's loopback only (its node address 127.0.0.1, not the network's), no usage statistics, no
# token written to ~/.ray (as tests/integration/test_sweep.py)
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
RAY_CPUS = 2
RAY_OBJECT_STORE = 78_643_200  # bytes: Ray's smallest


def free_port() -> int:
    """A TCP port free on the loopback now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def loopback() -> Iterator[Path]:
    """This process's Ray on the loopback (RAY_ENV; the node address Ray reads at import, patched), its files in a
    short temporary folder (removed after). Yields the folder."""
    folder = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's socket paths must stay under 108 characters
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {**RAY_ENV, "RAY_TMPDIR": str(folder)}.items():
            patch.setenv(key, value)
        import ray._private.ray_constants

        patch.setattr(ray._private.ray_constants, "ENABLE_RAY_CLUSTER", False)
        yield folder
    shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Head:
    address: str
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def head(loopback: Path) -> Iterator[Head]:
    """A Ray head node (``ray start --head --block``) of 2 CPUs on the loopback, stopped at the end of the module:
    SIGTERM to that process ends every Ray process it started."""
    port = free_port()
    log_path = loopback / "head.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
                                    f"--port={port}", "--node-ip-address=127.0.0.1", f"--num-cpus={RAY_CPUS}",
                                    f"--object-store-memory={RAY_OBJECT_STORE}", "--include-dashboard=false",
                                    "--disable-usage-stats", f"--temp-dir={loopback / 'head'}"],
                                   cwd=ROOT, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log_path.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
        yield Head(f"127.0.0.1:{port}", process)
    finally:
        process.terminate()
        process.wait(timeout=90)


def test_the_neighbour_table_on_ray_is_the_local_one_byte_for_byte(head):
    import ray

    latents = np.random.default_rng(0).random((20_000, 5), dtype=np.float32)
    local = build_neighbour_table(latents, 32)
    table = np.full_like(local, -1)
    with ray_session(RayConfig(address=head.address)):
        assert ray.cluster_resources()["CPU"] == RAY_CPUS
        ray_neighbour_table(latents, 32, table, shard_rows=3000)  # 7 shards, 2 actors
    assert np.array_equal(table, local) and table.tobytes() == local.tobytes()
    assert not ray.is_initialized() and head.process.poll() is None  # disconnected; the cluster runs on


def test_the_encoding_on_ray_is_the_local_one_byte_for_byte(head):
    rng = np.random.default_rng(1)
    features = rng.random((10_000, 11), dtype=np.float32)
    encoder = LatentEncoder(VAEConfig(epochs=1), seed=0).fit(features[:2000])
    local = np.full((len(features), 5), np.nan, dtype=np.float32)
    torch.set_num_threads(2)  # encode_in_shards computes on one thread and gives this back
    encode_in_shards(encoder, features, local, shard_rows=3000)
    assert torch.get_num_threads() == 2
    latents = np.full_like(local, np.nan)
    with ray_session(RayConfig(address=head.address)):  # a second session: the first left the cluster running
        ray_encode(encoder, features, latents, shard_rows=3000)
    assert np.array_equal(latents, local) and latents.tobytes() == local.tobytes()
    assert local.tobytes() == encoder.transform(features[:3000]).tobytes() + \
        encoder.transform(features[3000:6000]).tobytes() + encoder.transform(features[6000:9000]).tobytes() + \
        encoder.transform(features[9000:]).tobytes()


def test_a_run_built_on_a_local_ray_has_the_local_world_byte_for_byte(loopback, tmp_path):
    # the whole command in its own process (a local Ray started for the build, stopped after: no Ray start and stop
    # in this one); its world against the local build of the same encoder and latents
    run = tmp_path / "run"
    proc = subprocess.run(train_command(run, "world.build=ray", "world.ray.num_cpus=2", "world.chunk_rows=1000"),
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, **RAY_ENV,
                                                                                       "RAY_TMPDIR": str(loopback)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    features = np.load(run / "world" / "features.npy")
    encoder = LatentEncoder.from_checkpoint(torch.load(run / "vae.pt", weights_only=True))
    latents = np.empty((len(features), encoder.cfg.latent_dim), dtype=np.float32)
    encode_in_shards(encoder, features, latents, 1000)
    assert (run / "world" / "latents.npy").read_bytes()[-latents.nbytes:] == latents.tobytes()
    table = np.load(run / "world" / "neighbours.npy")
    assert table.tobytes() == build_neighbour_table(latents, table.shape[1]).tobytes()
    assert not any(path.exists() for path in loopback.glob("ray/session_*/sockets/raylet")), "Ray still running"


UNREACHABLE = [
    ("127.0.0.1:{port}", "connection refused at 127.0.0.1:{port}"),
    ("localhost:{port}", "connection refused at 127.0.0.1:{port}"),
    ("no-such-host.invalid:6379", "cannot resolve host 'no-such-host.invalid'"),
    ("6379", "not host:port"),
    ("127.0.0.1:port", "not host:port"),
    ("ray://127.0.0.1:{port}", "connection refused at 127.0.0.1:{port}"),
]


@pytest.mark.parametrize(("address", "reason"), UNREACHABLE, ids=[a for a, _ in UNREACHABLE])
def test_an_address_with_no_cluster_there_is_one_config_error_line_within_seconds(loopback, address, reason):
    port = free_port()  # nothing listens there
    address, reason = address.format(port=port), reason.format(port=port)
    start = time.monotonic()
    with pytest.raises(ConfigError) as err, ray_session(RayConfig(address=address)):
        pytest.fail("connected")
    assert time.monotonic() - start < 5
    assert str(err.value) == f"world.ray.address={address}: no Ray cluster reachable there ({reason})"


def test_without_ray_world_build_ray_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # importing it fails
    with pytest.raises(ConfigError, match=r'^world.build=ray needs Ray: pip install -e "\.\[sweeps\]"$'), \
            ray_session(RayConfig()):
        pytest.fail("Ray imported")
