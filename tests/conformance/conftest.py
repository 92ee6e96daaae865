"""Fixtures of the conformance suite: real NodeODX 2.3.1 nodes (test mode) and a real relay, on 127.0.0.1.

A cluster is one NodeODX node reached directly, and a relay (`python -m proxy`) in front of two more NodeODX
nodes, all configured alike: the direct node has 2 slots, the relay's nodes 1 each, so both sides offer
2 slots. Node tokens differ from the relay's token, so a test also shows that the relay swaps them.

Clusters are shared by the whole suite (tests make tasks of their own and never change another test's
tasks): `cluster` finishes tasks in about a second, `slow_cluster` keeps them running long enough to cancel
or restart them while they run or wait.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from testkit.nodeodx import available, start_nodeodx
from testkit.relay import Relay, start_relay
from testkit.servers import ServerGroup, free_port
from tests.conformance.sides import (
    ADMIN_TOKEN,
    CHECK_INTERVAL,
    NODE_TOKEN,
    RELAY_TOKEN,
    Cluster,
    Side,
    ZipServer,
    json_of,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "difference(id): the test shows an intended difference (differences.py)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not available():
        skip = pytest.mark.skip(reason="NodeODX is not built (make setup builds it under var/nodeodx)")
        for item in items:
            if "conformance" in str(item.fspath):
                item.add_marker(skip)


_PORTS_GIVEN: set[int] = set()
_PORTS_LOCK = threading.Lock()


def unique_port() -> int:
    """A free port never handed out before in this session. Servers here start side by side, each told
    its port before it binds it: two must never be told the same one (the loser of such a race exits, and
    the winner answers its readiness check in its place)."""
    with _PORTS_LOCK:
        while (port := free_port()) in _PORTS_GIVEN:
            pass
        _PORTS_GIVEN.add(port)
        return port


def start_cluster(group: ServerGroup, *, test_seconds: float, relay_flags: dict[str, Any] | None = None,
                  **node_flags: Any) -> Cluster:
    """A direct NodeODX (2 slots) and a relay in front of two NodeODX (1 slot each); all stopped by `group`.

    The four start at the same time (the relay is told the nodes' ports in advance and finds them online
    at its next check); returns once the relay sees both nodes online."""
    flags = {"token": NODE_TOKEN, "test_seconds": test_seconds, **node_flags}
    ports = [unique_port() for _ in range(3)]
    with ThreadPoolExecutor(4) as pool:
        nodes = [pool.submit(lambda port, slots: group.add(start_nodeodx(group.tmp_path, port=port,
                                                                         parallel_queue_processing=slots, **flags)),
                             port, slots) for port, slots in zip(ports, (2, 1, 1))]
        relay = pool.submit(lambda: group.add(start_relay(
            group.tmp_path, port=unique_port(),
            nodes=[f"http://127.0.0.1:{port}?token={NODE_TOKEN}" for port in ports[1:]], token=RELAY_TOKEN,
            admin_token=ADMIN_TOKEN, check_interval=CHECK_INTERVAL, **(relay_flags or {}))))
        direct, *behind = [future.result() for future in nodes]
        relay_server = relay.result()
    assert isinstance(relay_server, Relay)
    cluster = Cluster(direct=Side("direct", direct, NODE_TOKEN), relay=Side("relay", relay_server, RELAY_TOKEN),
                      relay_server=relay_server, nodes=behind, node_token=NODE_TOKEN)
    deadline = time.monotonic() + 20
    while json_of(cluster.relay.get("/info"))["relay"]["online"] < len(behind):
        assert time.monotonic() < deadline, f"the relay did not see its nodes online:\n{relay_server.log()[-2000:]}"
        time.sleep(0.1)
    time.sleep(0.5)  # a node that lost its port to another exits at once
    for server in (direct, *behind, relay_server):
        assert server.running, f"{server.name} exited:\n{server.log()[-2000:]}"
    return cluster


# Tasks in `cluster` end about a second after commit; in `slow_cluster` they run for 2 seconds: time to
# cancel, restart or queue behind them.
TEST_SECONDS = {"cluster": 1, "slow_cluster": 2}


@pytest.fixture(scope="session")
def conformance_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerGroup]:
    with ServerGroup(tmp_path_factory.mktemp("conformance")) as group:
        yield group


@pytest.fixture(scope="session")
def cluster_starts(conformance_servers: ServerGroup, request: pytest.FixtureRequest) -> Iterator[dict[str, Future]]:
    """The clusters this session's tests use, started one after the other in the background, so the slow
    one comes up while the first tests run on the other."""
    wanted = [name for name in TEST_SECONDS if any(name in item.fixturenames for item in request.session.items)]
    with ThreadPoolExecutor(1) as pool:
        yield {name: pool.submit(start_cluster, conformance_servers, test_seconds=TEST_SECONDS[name])
               for name in wanted}


@pytest.fixture(scope="session")
def cluster(cluster_starts: dict[str, Future]) -> Cluster:
    return cluster_starts["cluster"].result()


@pytest.fixture(scope="session")
def slow_cluster(cluster_starts: dict[str, Future]) -> Cluster:
    return cluster_starts["slow_cluster"].result()


@pytest.fixture(scope="session")
def done_task(cluster: Cluster, sample_images: list[Path]) -> tuple[str, str]:
    """A completed task on each side (direct, relay), with a name and 4 photos; tests only read it."""
    uuids = cluster.both(lambda side: side.submit(sample_images[:4], {"name": "Conformance: done"}))
    cluster.each(Side.wait, uuids)
    return uuids


def start_pair(group: ServerGroup, *, test_seconds: float, relay_flags: dict[str, Any] | None = None,
               **node_flags: Any) -> Cluster:
    """One NodeODX, reached directly and through a relay in front of it alone (for node flags such as
    `max_images`: a whole cluster would cost two more nodes for nothing)."""
    node = group.start(start_nodeodx, port=unique_port(), token=NODE_TOKEN, test_seconds=test_seconds, **node_flags)
    relay = group.add(start_relay(group.tmp_path, [f"{node.url}?token={NODE_TOKEN}"], port=unique_port(),
                                  token=RELAY_TOKEN, check_interval=CHECK_INTERVAL, **(relay_flags or {})))
    return Cluster(direct=Side("direct", node, NODE_TOKEN), relay=Side("relay", relay, RELAY_TOKEN),
                   relay_server=relay, nodes=[node], node_token=NODE_TOKEN)


@pytest.fixture
def own_pair(servers: ServerGroup):
    """`own_pair(max_images=3)`: a NodeODX and a relay in front of it, for this test only."""

    def start(test_seconds: float = 1, **flags: Any) -> Cluster:
        return start_pair(servers, test_seconds=test_seconds, **flags)

    return start


@pytest.fixture
def another_relay(servers: ServerGroup, cluster: Cluster):
    """`another_relay(zipurl_allow_private=True)`: one more relay in front of `cluster`'s nodes, with other
    flags, for this test only (nodes do not mind two relays)."""

    def start(**flags: Any) -> Side:
        relay = servers.add(start_relay(servers.tmp_path, [f"{n.url}?token={NODE_TOKEN}" for n in cluster.nodes],
                                        port=unique_port(), token=RELAY_TOKEN, check_interval=CHECK_INTERVAL, **flags))
        return Side("relay", relay, RELAY_TOKEN)

    return start


@pytest.fixture
def zip_server(tmp_path: Path, sample_images: list[Path]) -> Iterator[ZipServer]:
    """A zip of 3 photos served on 127.0.0.1, for `zipurl`."""
    server = ZipServer(tmp_path / "zipurl", sample_images[:3])
    try:
        yield server
    finally:
        server.close()
