"""A real Redis Cluster (3 masters, 3 replicas) and a Sentinel setup (a master, a replica, a sentinel), started
once per test session from the local redis-server on free loopback ports, in temporary directories.

tests/conftest.py imports the fixtures. Without redis-server these fixtures skip, and fail under
CREDITGATE_REQUIRE_SERVICES=1. Tests that kill a node leave the setup healthy again (`restart`, `healthy`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

REQUIRE = os.environ.get("CREDITGATE_REQUIRE_SERVICES") == "1"
CLUSTER_NODE_TIMEOUT_MS = 1000
SENTINEL_DOWN_AFTER_MS = 1000


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if REQUIRE:
            pytest.fail(f"{name} not found and CREDITGATE_REQUIRE_SERVICES=1")
        pytest.skip(f"{name} not found")
    return found


def _port_pair_free(port: int) -> bool:
    for p in (port, port + 10000):  # a cluster node's bus listens on port + 10000
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                return False
    return True


def free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port < 55000 and port not in ports and _port_pair_free(port):
            ports.append(port)
    return ports


def wait_for(check: object, what: str, timeout: float = 30.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} ({last})")


class Node:
    """One redis-server process (a cluster node, a master, a replica or a sentinel)."""

    def __init__(self, binary: str, port: int, workdir: Path, args: list[str]) -> None:
        self.binary, self.port, self.dir, self.args = binary, port, workdir, args
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, *self.args], cwd=self.dir, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for(self.answers, f"redis on {self.port}", 10)

    def answers(self) -> bool:
        with contextlib.closing(redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=1)) as c:
            return bool(c.ping())

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=2)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    @property
    def name(self) -> str:
        return f"127.0.0.1:{self.port}"


class Cluster:
    def __init__(self, root: Path) -> None:
        binary = _binary("redis-server")
        self.cli = _binary("redis-cli")
        self.nodes = [
            Node(binary, port, root / str(port),
                 ["--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                  "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS),
                  "--save", "", "--appendonly", "no", "--daemonize", "no"])
            for port in free_ports(6)]
        for node in self.nodes:
            node.start()
        subprocess.run([self.cli, "--cluster", "create", *(n.name for n in self.nodes), "--cluster-replicas", "1",
                        "--cluster-yes"], check=True, capture_output=True, timeout=60)
        self.healthy()

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(n.name for n in self.nodes[:2])

    def client(self) -> redis.RedisCluster:
        node = next(n for n in self.nodes if n.proc is not None)
        return redis.RedisCluster(host="127.0.0.1", port=node.port, socket_timeout=2)

    def roles(self) -> dict[str, str]:
        out = {}
        for node in self.nodes:
            if node.proc is not None:
                with contextlib.closing(node.client()) as c:
                    out[node.name] = str(c.info("replication")["role"])
        return out

    def _ok(self) -> bool:
        for node in self.nodes:
            if node.proc is None:
                continue
            with contextlib.closing(node.client()) as c:
                info = c.execute_command("CLUSTER", "INFO").decode()
                if "cluster_state:ok" not in info:
                    return False
                rep = c.info("replication")
                if rep["role"] == "slave" and rep.get("master_link_status") != "up":
                    return False
                if rep["role"] == "master" and int(rep.get("connected_slaves", 0)) < 1:
                    return False
                nodes = c.execute_command("CLUSTER", "NODES").decode()
                if "fail" in nodes.replace("nofailover", ""):
                    return False
        return True

    def healthy(self, timeout: float = 60.0) -> None:
        """Every node answers, the cluster is ok, every master has a synced replica and no node is flagged."""
        wait_for(self._ok, "a healthy cluster", timeout)

    def master_of(self, key: str) -> Node:
        with contextlib.closing(self.client()) as c:
            port = c.get_node_from_key(key).port
        return next(n for n in self.nodes if n.port == port)

    def primaries(self) -> set[int]:
        """The ports of the masters that own slots, as a live node sees them."""
        with contextlib.closing(self.client()) as c:
            c.ping()
            return {int(n.port) for n in c.get_primaries()}

    def failover(self, node: Node) -> None:
        """Kills `node` (a master) and waits until its replica took over (the node stays down)."""
        node.kill()
        wait_for(lambda: node.port not in self.primaries(), "the replica's promotion")

    def restart(self, node: Node) -> None:
        """Starts a killed node again (it rejoins as a replica) and waits for a healthy cluster."""
        node.start()
        self.healthy()

    def cleanup(self, prefix: str) -> None:
        with contextlib.closing(self.client()) as c:
            for key in list(c.scan_iter(match=prefix + "*", count=1000)):
                c.delete(key)

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()


class SentinelSetup:
    """A master, a replica and one sentinel (quorum 1). The URL also lists a sentinel that is down, so
    discovery must move on to the next one."""

    SERVICE = "cgmaster"

    def __init__(self, root: Path) -> None:
        binary = _binary("redis-server")
        master_port, replica_port, sentinel_port, dead_port = free_ports(4)
        common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"]
        self.data = [Node(binary, master_port, root / "a", ["--port", str(master_port), *common]),
                     Node(binary, replica_port, root / "b",
                          ["--port", str(replica_port), "--replicaof", "127.0.0.1", str(master_port), *common])]
        conf = root / "sentinel" / "sentinel.conf"
        conf.parent.mkdir(parents=True)
        conf.write_text(f"port {sentinel_port}\nbind 127.0.0.1\n"
                        f"sentinel monitor {self.SERVICE} 127.0.0.1 {master_port} 1\n"
                        f"sentinel down-after-milliseconds {self.SERVICE} {SENTINEL_DOWN_AFTER_MS}\n"
                        f"sentinel failover-timeout {self.SERVICE} 10000\n")
        self.sentinel = Node(binary, sentinel_port, conf.parent, [str(conf), "--sentinel"])
        self.dead_port = dead_port
        for node in [*self.data, self.sentinel]:
            node.start()
        self.healthy()

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.dead_port},{self.sentinel.name}/{self.SERVICE}/0"

    def master(self) -> Node:
        with contextlib.closing(self.sentinel.client()) as c:
            _, port = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.SERVICE)
        return next(n for n in self.data if n.port == int(port))

    def _ok(self) -> bool:
        master = self.master()
        if master.proc is None:
            return False
        with contextlib.closing(master.client()) as c:
            rep = c.info("replication")
            if rep["role"] != "master" or int(rep.get("connected_slaves", 0)) < 1:
                return False
            if rep.get("slave0", {}).get("state") != "online":
                return False
        with contextlib.closing(self.sentinel.client()) as c:
            replicas = c.sentinel_slaves(self.SERVICE)
        return bool(replicas) and all("s_down" not in str(r.get("flags")) for r in replicas)

    def healthy(self, timeout: float = 60.0) -> None:
        wait_for(self._ok, "a healthy sentinel setup", timeout)

    def failover(self) -> Node:
        """Kills the master and waits until the sentinel promoted the replica; returns the killed node."""
        old = self.master()
        old.kill()
        wait_for(lambda: self.master() is not old and self.master().answers(), "the sentinel failover")
        return old

    def restart(self, node: Node) -> None:
        """Starts the old master again: the sentinel turns it into a replica of the new master."""
        node.start()
        self.healthy()

    def cleanup(self, prefix: str) -> None:
        with contextlib.closing(self.master().client()) as c:
            keys = list(c.scan_iter(match=prefix + "*", count=1000))
            if keys:
                c.delete(*keys)

    def stop(self) -> None:
        for node in [self.sentinel, *self.data]:
            node.kill()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    setup = SentinelSetup(tmp_path_factory.mktemp("sentinel"))
    try:
        yield setup
    finally:
        setup.stop()


def unique_prefix() -> str:
    return f"cgtest:{uuid.uuid4().hex[:12]}:"
