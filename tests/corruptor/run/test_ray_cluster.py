"""Ray as a real cluster: a head and a second node (separate GCS and raylet processes) on
this machine, a build joined through RAY_ADDRESS, bytes compared with the local build,
then the second node's raylet killed mid-build.

The nodes come from ``ray.cluster_utils.Cluster``: the same processes ``ray start`` runs,
but owned by this test, so teardown stops exactly these (``ray stop`` would stop every
Ray process on the machine, other users' included). Slow (node start-up is seconds each);
skipped when Ray cannot start here.
"""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[3]


def _digests(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((out / "shards").glob("*")) if p.suffix in (".tar", ".parquet")}


def _build(out: Path, *extra: str, env: dict | None = None, wait: bool = True):
    cmd = [sys.executable, "-m", "corruptor.cli", "build", "--demo", "--out", str(out), *extra]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not wait:
        return proc
    text, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, text[-2000:]
    return text


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    try:
        c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        worker = c.add_node(num_cpus=1)
        c.wait_for_nodes(timeout=120)
    except Exception as exc:  # no Ray on this machine (ports, shm, sandbox): skip, say why
        pytest.skip(f"cannot start a Ray head and node here: {type(exc).__name__}: {exc}")
    try:
        yield c, worker
    finally:
        c.shutdown()  # only the processes this fixture started


@pytest.fixture(scope="module")
def local_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "ds"
    _build(out)
    return _digests(out)


def test_cluster_build_equals_local_build(cluster, local_build, tmp_path):
    c, _ = cluster
    out = tmp_path / "ray"
    _build(out, "--distributor", "ray", "--workers", "2", env={"RAY_ADDRESS": c.address})
    assert _digests(out) == local_build


def test_build_survives_losing_a_node(cluster, local_build, tmp_path):
    c, worker = cluster
    out = tmp_path / "ray-kill"
    proc = _build(out, "--distributor", "ray", "--workers", "2", "--shard-size", "4",
                  env={"RAY_ADDRESS": c.address}, wait=False)
    # Kill the second node's raylet once the first shard is written: its tasks are retried.
    deadline = time.time() + 600
    while not list((out / "shards").glob("*.stats.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    worker.kill_raylet()
    text, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, text[-2000:]
    digests = _digests(out)
    # Same recipe and seed, another shard size: compare with a local build of that layout.
    local = tmp_path / "local-4"
    _build(local, "--shard-size", "4")
    assert digests == _digests(local)


def test_sigterm_cancels_and_exits_cleanly(cluster, tmp_path):
    c, _ = cluster
    out = tmp_path / "ray-term"
    proc = _build(out, "--distributor", "ray", "--workers", "1", "--shard-size", "2",
                  env={"RAY_ADDRESS": c.address}, wait=False)
    deadline = time.time() + 600
    while not list((out / "shards").glob("*.stats.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    text, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, text[-2000:]
    assert "interrupted; run the same command again to resume" in text
    assert "Traceback" not in text
