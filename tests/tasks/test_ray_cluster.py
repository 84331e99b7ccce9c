"""Collection and real-env evaluation on a real two-node Ray cluster (a head and a second node as
processes on loopback): both nodes do work and the results equal a local run's."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from dreamops.tasks.collect import collect
from dreamops.tasks.config import CollectConfig
from dreamops.tasks.evaluate import baseline_factory, evaluate
from dreamops.flows.up import stop_process
from dreamops.tasks.parallel import connect
from tests.stack import free_port

pytestmark = pytest.mark.e2e  # whole processes (servers, a Ray cluster, a wheel build): the full tier only

RAY = str(Path(sys.executable).with_name("ray"))  # the venv's: its nodes' workers import this dreamops


@contextmanager
def _node(args: list[str], log: Path, env: dict):
    """`ray start --block` in its own process group; stopped by that group's id, never by name
    (`ray stop` would kill every Ray process on the machine)."""
    with open(log, "w") as out:
        proc = subprocess.Popen([RAY, "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                                 "--object-store-memory", str(100 * 2**20), "--disable-usage-stats",
                                 "--dashboard-agent-listen-port", str(free_port()), *args],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 60
        while "Ray runtime started" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"ray node did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.3)
        yield proc
    finally:
        # --block tears down its raylet, workers (and GCS on the head) on SIGTERM; then the group
        stop_process(proc, 20, group=True)


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    port = free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 chars
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, temp, ignore_errors=True)  # last, after the nodes stopped
        stack.enter_context(_node(["--head", "--port", str(port), "--temp-dir", temp, "--include-dashboard=false",
                                   "--dashboard-port", str(free_port())], Path(temp) / "head.log", env))
        stack.enter_context(_node(["--address", f"127.0.0.1:{port}"], Path(temp) / "node2.log", env))
        address = f"127.0.0.1:{port}"
        stack.callback(ray.shutdown)  # disconnect before the nodes go
        connect(address)
        deadline = time.time() + 30
        while len(alive := {n["NodeID"] for n in ray.nodes() if n["Alive"]}) < 2:
            assert time.time() < deadline, "the second Ray node never joined"
            time.sleep(0.5)
        yield address, alive


def test_collection_and_evaluation_run_on_both_nodes_with_local_results(ray_cluster, tmp_path):
    address, nodes = ray_cluster
    cfg = CollectConfig(episodes=4, max_steps=25, seed=11)
    on_ray = collect(cfg, tmp_path / "ray", workers=1, use_cache=False, show_progress=False, ray_address=address)
    local = collect(cfg, tmp_path / "local", workers=1, use_cache=False, show_progress=False)
    assert on_ray.hash == local.hash  # seeded episodes: the same dataset wherever they ran
    assert set(on_ray.nodes.values()) == nodes  # both nodes collected episodes
    assert sorted(on_ray.nodes) == sorted(local.manifest["episode_id"])
    assert on_ray.frames().equals(local.frames())  # per-frame tables in the same (job) order

    seeds = [3, 4, 5, 6]
    factory = baseline_factory("rule_based")
    remote = evaluate(factory, "rule_based", seeds, max_steps=60, workers=1, show_progress=False, ray_address=address)
    here = evaluate(factory, "rule_based", seeds, max_steps=60, workers=1, show_progress=False)
    assert set(remote.nodes) == nodes and len(remote.nodes) == len(seeds)
    assert remote.rewards == here.rewards and remote.lengths == here.lengths
    assert here.nodes == [here.nodes[0]] * len(seeds) and here.nodes[0].startswith("local:")


def test_a_failing_job_raises_in_the_caller(ray_cluster, tmp_path):
    address, _ = ray_cluster
    with pytest.raises(ValueError, match="max_steps must be positive"):
        evaluate(baseline_factory("random"), "random", [0, 1], max_steps=0, workers=1, show_progress=False,
                 ray_address=address)
