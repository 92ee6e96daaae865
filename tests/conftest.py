"""Shared fixtures: headless Qt, sample photos, factories for real server subprocesses, and the relay's two
stores (SQLite and Redis) for the store contract (tests/test_store_contract.py, tests/scale/test_store_freshness.py)."""
from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from devnode.samples import make_samples
from testkit.devnode import DevNode, start_devnode
from testkit.nodeodx import NodeODX, start_nodeodx
from testkit.relay import start_redis
from testkit.servers import ServerGroup, WebhookReceiver

SAMPLE_COUNT = 6


@pytest.fixture(scope="session")
def sample_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A few small geotagged JPEGs, made once per session (the demo's photos, fewer of them)."""
    return make_samples(tmp_path_factory.mktemp("samples"), count=SAMPLE_COUNT)


@pytest.fixture(autouse=True)
def pyodx_forgets_tokens() -> Iterator[None]:
    """pyodx's `Node.url(url, query={})` writes the node's token into the query it is given, and `Node.get`,
    `Task.get` and `url` hand it their shared default dicts: once any client with a token has asked something,
    every later tokenless pyodx client in the process sends that token too (a split-merge test's credential made
    a later test's tokenless client get "Invalid authentication token"). Emptied after each test."""
    yield
    try:
        from pyodx import api
    except ImportError:
        return
    for cls in (api.Node, api.Task):
        for method in vars(cls).values():
            for default in getattr(method, "__defaults__", None) or ():
                if isinstance(default, dict):
                    default.clear()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[ServerGroup]:
    """Every server a test starts through this group is stopped when the test ends."""
    with ServerGroup(tmp_path) as group:
        yield group


@pytest.fixture
def devnode_factory(servers: ServerGroup) -> Callable[..., DevNode]:
    """`devnode_factory(slots=2, token="t")` starts a development node for this test only."""

    def start(**flags: Any) -> DevNode:
        node = servers.start(start_devnode, **flags)
        assert isinstance(node, DevNode)
        return node

    return start


@pytest.fixture
def nodeodx_factory(servers: ServerGroup) -> Callable[..., NodeODX]:
    """`nodeodx_factory(token="t", max_images=5)` starts a real NodeODX 2.3.1 (test mode) for this test only."""

    def start(**flags: Any) -> NodeODX:
        node = servers.start(start_nodeodx, **flags)
        assert isinstance(node, NodeODX)
        return node

    return start


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    """A receiver for webhook calls on 127.0.0.1: pass `webhook.url`, read calls with `webhook.next()`."""
    receiver = WebhookReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path, redis_url):
    """(run, backend) for each of the relay's stores; `run(coro)` runs a store call to its end."""
    from proxy.redis_store import RedisStore  # here, not at the top: only the store tests need the relay's code
    from proxy.store import SQLiteStore

    if request.param == "sqlite":
        backend = SQLiteStore(tmp_path / "state.sqlite3")
    else:
        backend = RedisStore(redis_url, prefix=f"t{id(tmp_path)}:")
    loop = asyncio.new_event_loop()
    loop.run_until_complete(backend.open())
    yield lambda coro: loop.run_until_complete(coro), backend
    loop.run_until_complete(backend.close())
    loop.close()
