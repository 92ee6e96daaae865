"""The client's webhook is called exactly once per run, however the relay learns that the task ended:
the node's own webhook, a client polling, both at once, or the relay ending the task itself. Against the
real NodeODX (test mode), whose webhook call is what clients know."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from testkit.servers import free_port
from tests.relay.relay_helpers import COMPLETED, Receiver, post_json, submit, task_info, wait_for, wait_status

pytestmark = pytest.mark.slow

SETTLE = 3.0  # seconds to wait after the first call, for a second one that must not come


def calls_after_settling(receiver: Receiver) -> list:
    wait_for(lambda: receiver.calls, timeout=30, what="the client's webhook")
    time.sleep(SETTLE)
    return receiver.calls


def test_webhook_once_when_the_node_tells_the_relay_and_the_client_polls(
        relay_factory, nodeodx_factory, receiver: Receiver, sample_images: list[Path]) -> None:
    node = nodeodx_factory(test_seconds=1)
    relay = relay_factory([node.url])
    uuid = submit(relay, sample_images[:3], {"webhook": receiver.url + "/hook", "name": "once"})
    wait_status(relay, uuid, [COMPLETED])  # polls all along, racing the node's webhook to the relay
    calls = calls_after_settling(receiver)
    assert len(calls) == 1, calls
    path, info = calls[0]
    assert path == "/hook" and info["uuid"] == uuid and info["status"]["code"] == COMPLETED
    assert info["name"] == "once"


def test_webhook_once_when_the_relay_learns_the_end_only_by_polling(
        relay_factory, nodeodx_factory, receiver: Receiver, sample_images: list[Path]) -> None:
    """The node's webhook cannot reach the relay (a wrong --public-url): the end is seen by a poll."""
    node = nodeodx_factory()
    relay = relay_factory([node.url], public_url=f"http://127.0.0.1:{free_port()}")
    uuid = submit(relay, sample_images[:3], {"webhook": receiver.url})
    wait_status(relay, uuid, [COMPLETED])
    calls = calls_after_settling(receiver)
    assert len(calls) == 1 and calls[0][1]["uuid"] == uuid and calls[0][1]["status"]["code"] == COMPLETED
    task_info(relay, uuid)  # more polls of an ended task announce nothing more
    time.sleep(1)
    assert len(receiver.calls) == 1


def test_a_restarted_task_announces_its_new_end_once_more(
        relay_factory, nodeodx_factory, receiver: Receiver, sample_images: list[Path]) -> None:
    node = nodeodx_factory()
    relay = relay_factory([node.url])
    uuid = submit(relay, sample_images[:3], {"webhook": receiver.url})
    wait_status(relay, uuid, [COMPLETED])
    assert len(calls_after_settling(receiver)) == 1
    assert post_json(relay, "/task/restart", {"uuid": uuid}) == {"success": True}
    wait_for(lambda: len(receiver.calls) >= 2, timeout=30, what="the webhook of the second run")
    time.sleep(SETTLE)
    assert len(receiver.calls) == 2
