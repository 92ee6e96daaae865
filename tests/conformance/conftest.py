"""Fixtures of the conformance suite: real NodeODX 2.3.1 nodes (test mode) and a real relay, on 127.0.0.1.

A cluster is one NodeODX node reached directly, and a relay (`python -m proxy`) in front of two more NodeODX
nodes, all configured alike: the direct node has 2 slots, the relay's nodes 1 each, so both sides offer
2 slots. Node tokens differ from the relay's token, so a test also shows that the relay swaps them.

Clusters are shared by the whole suite (tests make tasks of their own and never depend on another test's
tasks): `cluster` finishes tasks in about a second, `slow_cluster` keeps them running a few seconds, long
enough to cancel or restart them while they run or wait.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conformance.sides import Cluster, Side, ZipServer
from tests.nodeodx import available, start_nodeodx
from tests.relay_servers import Relay, start_relay
from tests.servers import ServerGroup

NODE_TOKEN = "conformance-node-token"
RELAY_TOKEN = "conformance-relay-token"
ADMIN_TOKEN = "conformance-admin-token"
CHECK_INTERVAL = 0.3
# The relay's operator flag that lets `zipurl` reach private and loopback addresses (SSRF protection is on
# by default). One place to change if the relay names it otherwise.
ZIPURL_PRIVATE_FLAG = "zipurl_allow_private"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "difference(id): the test shows an intended difference (differences.py)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not available():
        skip = pytest.mark.skip(reason="NodeODX is not built (make setup builds it under var/nodeodx)")
        for item in items:
            if "conformance" in str(item.fspath):
                item.add_marker(skip)


def start_cluster(group: ServerGroup, *, test_seconds: float, relay_flags: dict[str, Any] | None = None,
                  **node_flags: Any) -> Cluster:
    """A direct NodeODX (2 slots) and a relay in front of two NodeODX (1 slot each); all stopped by `group`."""
    flags = {"token": NODE_TOKEN, "test_seconds": test_seconds, **node_flags}
    with ThreadPoolExecutor(3) as pool:  # NodeODX takes about a second to start: start the three together
        futures = [pool.submit(start_nodeodx, group.tmp_path, parallel_queue_processing=slots, **flags)
                   for slots in (2, 1, 1)]
        nodes = [future.result() for future in futures]
    for node in nodes:
        group.add(node)
    direct, behind = nodes[0], nodes[1:]
    relay = group.add(start_relay(group.tmp_path, [f"{n.url}?token={NODE_TOKEN}" for n in behind],
                                  token=RELAY_TOKEN, admin_token=ADMIN_TOKEN, check_interval=CHECK_INTERVAL,
                                  **(relay_flags or {})))
    assert isinstance(relay, Relay)
    return Cluster(direct=Side("direct", direct, NODE_TOKEN), relay=Side("relay", relay, RELAY_TOKEN),
                   relay_server=relay, nodes=list(behind), node_token=NODE_TOKEN)


@pytest.fixture(scope="session")
def conformance_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerGroup]:
    group = ServerGroup(tmp_path_factory.mktemp("conformance"))
    try:
        yield group
    finally:
        group.stop_all()


@pytest.fixture(scope="session")
def cluster(conformance_servers: ServerGroup) -> Cluster:
    """Tasks end about a second after commit."""
    return start_cluster(conformance_servers, test_seconds=1)


@pytest.fixture(scope="session")
def slow_cluster(conformance_servers: ServerGroup) -> Cluster:
    """Tasks run for 4 seconds: time to cancel, restart or queue behind them."""
    return start_cluster(conformance_servers, test_seconds=4)


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
    node = group.start(start_nodeodx, token=NODE_TOKEN, test_seconds=test_seconds, **node_flags)
    relay = group.add(start_relay(group.tmp_path, [f"{node.url}?token={NODE_TOKEN}"], token=RELAY_TOKEN,
                                  check_interval=CHECK_INTERVAL, **(relay_flags or {})))
    return Cluster(direct=Side("direct", node, NODE_TOKEN), relay=Side("relay", relay, RELAY_TOKEN),
                   relay_server=relay, nodes=[node], node_token=NODE_TOKEN)


@pytest.fixture
def own_pair(servers: ServerGroup):
    """`own_pair(max_images=3)`: a NodeODX and a relay in front of it, for this test only."""

    def start(test_seconds: float = 1, **flags: Any) -> Cluster:
        return start_pair(servers, test_seconds=test_seconds, **flags)

    return start


@pytest.fixture
def zip_server(tmp_path: Path, sample_images: list[Path]) -> Iterator[ZipServer]:
    """A zip of 3 photos served on 127.0.0.1, for `zipurl`."""
    server = ZipServer(tmp_path / "zipurl", sample_images[:3])
    try:
        yield server
    finally:
        server.close()
