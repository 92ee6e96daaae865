"""The relay killed (SIGKILL, by itself: proxy/crashpoints.py) at the worst step of the task protocol, then
started again on its data folder: no task runs twice, none vanishes, no node keeps a file twice.

Each of these failed before the fix that came with it: a commit cut off after the node took it left the
task 'uploading' for ever (or, retried, sent it to a second node as well); a send cut off after the node took
a file made it send the file again (NodeODX keeps both, as name_.JPG); an end learnt but not acted on was
never announced."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from testkit.relay import Relay, start_relay
from testkit.servers import ServerGroup
from tests.relay.relay_helpers import (
    COMPLETED,
    RUNNING,
    Receiver,
    admin_nodes,
    commit,
    get_json,
    init_task,
    submit,
    task_info,
    upload,
    wait_for,
    wait_status,
)

pytestmark = pytest.mark.slow
ADMIN = "adm"


class Crashing:
    """A relay told to kill itself at `point`; `again()` starts it on the same port and data, without."""

    def __init__(self, servers: ServerGroup, nodes: list[Any], point: str, **flags: Any):
        self.servers, self.urls = servers, [n.url for n in nodes]
        self.flags = {"admin_token": ADMIN, "check_interval": 0.3, **flags}
        self.relay = self.start(env={"ODX_FAULT_CRASH_AT": point})

    def start(self, **kwargs: Any) -> Relay:
        relay = self.servers.add(start_relay(self.servers.tmp_path, self.urls, **self.flags, **kwargs))
        assert isinstance(relay, Relay)
        return relay

    def died(self) -> None:
        assert self.relay.process.wait(20) == -9, "the relay did not reach its crash point"

    def again(self) -> Relay:
        self.died()
        self.relay = self.start(port=self.relay.port, data_dir=self.relay.data_dir)
        return self.relay


def lock(relay: Relay, node_url: str, locked: bool = True) -> None:
    node_id = next(n["id"] for n in admin_nodes(relay) if n["url"] == node_url)
    response = requests.post(f"{relay.url}/admin/nodes/{node_id}/{'lock' if locked else 'unlock'}",
                             headers=relay.admin_headers(), timeout=10)
    assert response.status_code == 200


def cut_off(call: Callable[[], Any]) -> None:
    """A request the relay dies in the middle of: the client gets no answer."""
    with pytest.raises(requests.ConnectionError):
        call()


def holders(nodes: list[Any], uuid: str) -> list[str]:
    """The nodes that hold the task (their own /task/list)."""
    return [n.url for n in nodes if any(t["uuid"] == uuid for t in get_json(n, "/task/list"))]


def forwarded_task(relay: Relay, first: Any, second: Any, images: list[Path]) -> str:
    """A task whose files went to `first` as they were uploaded (the other node locked during init)."""
    lock(relay, second.url)
    uuid = init_task(relay)["uuid"]
    assert upload(relay, uuid, images) == {"success": True}
    lock(relay, second.url, False)
    return uuid


@pytest.mark.parametrize("client_retries", [False, True])
def test_killed_inside_the_commit_the_task_runs_once_on_the_node_that_took_it(
        servers: ServerGroup, fast_node, sample_images: list[Path], client_retries: bool) -> None:
    first, second = fast_node(seconds_per_image=0.2), fast_node()
    crashing = Crashing(servers, [first, second], "in-commit")
    uuid = forwarded_task(crashing.relay, first, second, sample_images[:3])
    cut_off(lambda: commit(crashing.relay, uuid))
    relay = crashing.again()
    if client_retries:  # as on NodeODX, a second commit finds no upload; it must not send the task again
        assert "error" in commit(relay, uuid)
    info = wait_status(relay, uuid, timeout=40)
    assert info["status"]["code"] == COMPLETED and info["imagesCount"] == 3
    assert holders([first, second], uuid) == [first.url]
    assert uuid in {t["uuid"] for t in get_json(relay, "/task/list")}


def test_killed_after_a_forwarded_file_the_node_gets_each_file_once(
        servers: ServerGroup, fast_node, sample_images: list[Path]) -> None:
    first, second = fast_node(), fast_node()
    crashing = Crashing(servers, [first, second], "mid-upload:2")
    relay = crashing.relay
    lock(relay, second.url)
    uuid = init_task(relay)["uuid"]
    assert upload(relay, uuid, sample_images[:1]) == {"success": True}
    cut_off(lambda: upload(relay, uuid, sample_images[1:2]))  # the node has it; the relay did not note it
    relay = crashing.again()
    lock(relay, second.url, False)
    assert upload(relay, uuid, sample_images[1:3]) == {"success": True}  # the client sends it again
    assert commit(relay, uuid) == {"uuid": uuid}
    info = wait_status(relay, uuid, timeout=40)
    assert info["status"]["code"] == COMPLETED and info["imagesCount"] == 3


def test_killed_while_sending_from_its_queue_the_node_gets_each_file_once(
        servers: ServerGroup, fast_node, sample_images: list[Path]) -> None:
    node = fast_node(slots=1, seconds_per_image=0.3)
    crashing = Crashing(servers, [node], "mid-dispatch:2")
    busy = submit(crashing.relay, sample_images[:3])
    wait_status(crashing.relay, busy, [RUNNING])
    uuid = submit(crashing.relay, sample_images[:4])  # waits in the relay's queue, then is sent from disk
    relay = crashing.again()
    info = wait_status(relay, uuid, timeout=60)
    assert info["status"]["code"] == COMPLETED and info["imagesCount"] == 4
    assert wait_status(relay, busy, timeout=30)["status"]["code"] == COMPLETED


def test_killed_as_the_end_is_learnt_the_end_is_still_announced_once(
        servers: ServerGroup, fast_node, receiver: Receiver, sample_images: list[Path]) -> None:
    node = fast_node()
    crashing = Crashing(servers, [node], "at-task-end")
    uuid = submit(crashing.relay, sample_images[:2], {"webhook": receiver.url + "/end"})
    relay = crashing.again()
    assert wait_status(relay, uuid, timeout=30)["status"]["code"] == COMPLETED
    wait_for(lambda: receiver.calls, timeout=15, what="the client's webhook")
    assert [body["uuid"] for _, body in receiver.calls] == [uuid]


def test_killed_after_init_the_abandoned_upload_expires(
        servers: ServerGroup, fast_node, sample_images: list[Path]) -> None:
    node = fast_node()
    crashing = Crashing(servers, [node], "after-init", upload_idle=1)
    cut_off(lambda: init_task(crashing.relay))
    relay = crashing.again()
    uuid = submit(relay, sample_images[:2])  # the client's second try
    assert wait_status(relay, uuid, timeout=30)["status"]["code"] == COMPLETED
    staging = relay.data_dir / "staging"
    wait_for(lambda: [p.name for p in staging.iterdir()] == [uuid], timeout=15, what="the orphan upload to expire")


def test_a_real_nodeodx_gets_each_file_once_after_a_kill_mid_upload(
        servers: ServerGroup, nodeodx_factory: Callable[..., Any], sample_images: list[Path]) -> None:
    """The relay discards a node's upload in doubt with NodeODX's own rule (a refused init removes it):
    proven on the real node."""
    node = nodeodx_factory()
    crashing = Crashing(servers, [node], "mid-upload:2")
    uuid = init_task(crashing.relay)["uuid"]
    assert upload(crashing.relay, uuid, sample_images[:1]) == {"success": True}
    cut_off(lambda: upload(crashing.relay, uuid, sample_images[1:2]))
    relay = crashing.again()
    assert upload(relay, uuid, sample_images[1:3]) == {"success": True}
    assert commit(relay, uuid) == {"uuid": uuid}
    info = wait_status(relay, uuid, timeout=60)
    assert info["status"]["code"] == COMPLETED
    assert task_info(node, uuid)["imagesCount"] == 3


def test_files_uploaded_in_parallel_all_go_to_the_node_as_they_arrive(
        relay_factory, fast_node, sample_images: list[Path]) -> None:
    """A file on its way is no doubt about the node's upload: a client sending four at once has all four
    forwarded while they arrive, none left for the commit to send."""
    from concurrent.futures import ThreadPoolExecutor

    node = fast_node()
    relay = relay_factory([node], admin_token=ADMIN)
    node_id = next(n["id"] for n in admin_nodes(relay))
    uuid = init_task(relay)["uuid"]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda image: upload(relay, uuid, [image]), sample_images[:4]))
    assert answers == [{"success": True}] * 4
    forwarded = relay.data_dir / "staging" / uuid / ".forwarded" / node_id
    assert sorted(p.name for p in forwarded.iterdir()) == sorted(p.name for p in sample_images[:4])
    assert commit(relay, uuid) == {"uuid": uuid}
    assert wait_status(relay, uuid, timeout=30)["imagesCount"] == 4
