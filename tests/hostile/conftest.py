"""Fixtures for the hostile-input tests: one development node behind a relay with tokens and small
limits, shared by a test module (the tests only add tasks of their own and read the common cluster)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from testkit.devnode import DevNode, start_devnode
from testkit.relay import Relay, start_relay
from testkit.servers import ServerGroup
from tests.hostile.hostile_helpers import ADMIN_TOKEN, CLIENT_TOKEN, Hostile

LIMITS = {"max_upload_mb": 1.0, "max_images": 4, "upload_timeout": 1.5, "upload_min_kbps": 1.0}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    with ServerGroup(tmp_path_factory.mktemp("hostile")) as group:
        node = group.add(start_devnode(group.tmp_path, seconds_per_image=0.02, slots=4))
        relay = group.add(start_relay(group.tmp_path, [node.url], token=CLIENT_TOKEN, admin_token=ADMIN_TOKEN,
                                      check_interval=0.3, **LIMITS))
        assert isinstance(relay, Relay) and isinstance(node, DevNode)
        yield Hostile(relay=relay, node=node, **LIMITS)
