"""Shared fixtures: headless Qt, sample photos, and factories for real server subprocesses."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from devnode.samples import make_samples  # noqa: E402  (after the Qt setting, which must come first)
from testkit.devnode import DevNode, start_devnode  # noqa: E402
from testkit.nodeodx import NodeODX, start_nodeodx  # noqa: E402
from testkit.servers import ServerGroup, WebhookReceiver  # noqa: E402

SAMPLE_COUNT = 6


@pytest.fixture(scope="session")
def sample_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A few small geotagged JPEGs, made once per session (the demo's photos, fewer of them)."""
    return make_samples(tmp_path_factory.mktemp("samples"), count=SAMPLE_COUNT)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[ServerGroup]:
    """Every server a test starts through this group is stopped when the test ends."""
    group = ServerGroup(tmp_path)
    try:
        yield group
    finally:
        group.stop_all()


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
