"""A task removed while the node that holds it is down: the relay forgets it at once, as the client asked,
and cancels and removes the node's copy once the node is back, instead of leaving it to run there for
nothing (the node resumes its tasks when it restarts)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.relay.relay_helpers import RUNNING, get_json, post_json, restart_devnode, submit, wait_for, wait_status

pytestmark = pytest.mark.slow


def test_a_task_removed_while_its_node_is_down_is_removed_there_when_it_is_back(
        servers, relay_factory, fast_node, sample_images: list[Path]) -> None:
    node = fast_node(seconds_per_image=1.0)
    relay = relay_factory([node], node_timeout=1, failover_after=600)
    uuid = submit(relay, sample_images[:5])
    wait_status(relay, uuid, [RUNNING])
    node.stop()
    assert post_json(relay, "/task/remove", {"uuid": uuid}) == {"success": True}
    assert "error" in get_json(relay, f"/task/{uuid}/info")
    node = restart_devnode(servers, node, seconds_per_image=1.0)  # it resumes its copy (without the relay: for ever)
    wait_for(lambda: {"uuid": uuid} not in get_json(node, "/task/list"), timeout=30,
             what="the node's copy to be canceled and removed")
    wait_for(lambda: f"ghost uuid={uuid} canceled and removed" in relay.log(), what="the relay to say so")
