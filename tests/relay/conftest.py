"""Fixtures for the relay's tests: a real relay (`python -m proxy`) in front of real development
nodes, all subprocesses on 127.0.0.1, talked to over HTTP as users do.

Kept fast: development nodes run with `--seconds-per-image 0.02` and the relay checks its nodes
every 0.3 s, so a whole task cycle takes about a second. Helpers live in `relay_helpers.py`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from testkit.devnode import DevNode
from testkit.relay import Relay, start_relay
from testkit.servers import ServerGroup
from tests.relay.relay_helpers import CHECK_INTERVAL, FAST, Receiver, node_url


@pytest.fixture
def relay_factory(servers: ServerGroup) -> Callable[..., Relay]:
    """`relay_factory([node.url, ...], token="T", admin_token="A")` starts a relay for this test only.

    Nodes are given as URLs (add `?token=...` for a node with a token) or as DevNode objects (their
    token, if any, is added). The relay checks its nodes every 0.3 s unless told otherwise."""

    def start(nodes: Iterable[str | DevNode] = (), **flags: Any) -> Relay:
        flags.setdefault("check_interval", CHECK_INTERVAL)
        relay = servers.add(start_relay(servers.tmp_path, [node_url(n) for n in nodes], **flags))
        assert isinstance(relay, Relay)
        return relay

    return start


@pytest.fixture
def fast_node(devnode_factory: Callable[..., DevNode]) -> Callable[..., DevNode]:
    """`fast_node(slots=2)`: a development node that processes quickly."""

    def start(**flags: Any) -> DevNode:
        return devnode_factory(**{**FAST, **flags})

    return start


@pytest.fixture(scope="module")
def module_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerGroup]:
    """A server group shared by one test module (for tests that only read a common cluster)."""
    with ServerGroup(tmp_path_factory.mktemp("servers")) as group:
        yield group


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    try:
        yield receiver
    finally:
        receiver.close()
