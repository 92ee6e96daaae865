"""When nodes misbehave: a forward node gone before commit, dropped uploads, a queued task that can
no longer run anywhere, and forged webhooks."""
from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.relay.relay_helpers import (
    COMPLETED,
    FAILED,
    QUEUED,
    RUNNING,
    Receiver,
    admin_nodes,
    commit,
    get_json,
    init_task,
    post_json,
    submit,
    task_info,
    upload,
    wait_for,
    wait_status,
)

pytestmark = pytest.mark.slow

ADMIN = "adm"


def lock(relay, node_id: str, locked: bool = True) -> None:
    action = "lock" if locked else "unlock"
    response = requests.post(f"{relay.url}/admin/nodes/{node_id}/{action}", headers=relay.admin_headers(), timeout=10)
    assert response.status_code == 200


def ids(relay) -> dict[str, str]:
    return {n["url"]: n["id"] for n in admin_nodes(relay)}


def test_the_forward_node_dies_before_commit(relay_factory, fast_node, sample_images: list[Path]) -> None:
    first, second = fast_node(), fast_node()
    relay = relay_factory([first, second], admin_token=ADMIN)
    lock(relay, ids(relay)[second.url])  # so that the init forwards to `first`
    uuid = init_task(relay)["uuid"]
    assert upload(relay, uuid, sample_images[:3]) == {"success": True}
    lock(relay, ids(relay)[second.url], False)
    first.stop()
    assert commit(relay, uuid) == {"uuid": uuid}  # the relay has every file: the commit still succeeds
    info = wait_status(relay, uuid)
    assert info["status"]["code"] == COMPLETED and info["imagesCount"] == 3
    assert task_info(second, uuid)["uuid"] == uuid  # sent again, under the same uuid, from the staging folder


def test_uploads_a_node_drops_are_sent_again_and_only_once(relay_factory, fast_node,
                                                           sample_images: list[Path]) -> None:
    """Half the uploads to the node fail: the client never sees it, and the node ends up with each file
    exactly once (a file sent twice would be kept twice, renamed, as NodeODX does)."""
    node = fast_node(drop_uploads=0.5)
    relay = relay_factory([node])
    uuid = init_task(relay)["uuid"]
    for path in sample_images[:5]:  # one request per file, each forwarded as it arrives
        assert upload(relay, uuid, [path]) == {"success": True}  # never the node's 500
    assert commit(relay, uuid) == {"uuid": uuid}
    info = wait_status(relay, uuid, timeout=30)
    assert info["status"]["code"] == COMPLETED and info["imagesCount"] == 5
    assert task_info(node, uuid)["imagesCount"] == 5


def test_a_node_that_refuses_every_upload_is_passed_over(relay_factory, fast_node, sample_images: list[Path]) -> None:
    broken, good = fast_node(drop_uploads=1.0), fast_node()
    relay = relay_factory([broken, good], admin_token=ADMIN)
    lock(relay, ids(relay)[good.url])  # so that the init forwards to `broken`
    uuid = init_task(relay)["uuid"]
    assert upload(relay, uuid, sample_images[:3]) == {"success": True}
    lock(relay, ids(relay)[good.url], False)
    assert commit(relay, uuid) == {"uuid": uuid}
    info = wait_status(relay, uuid, timeout=30)
    assert info["status"]["code"] == COMPLETED and info["imagesCount"] == 3
    assert task_info(good, uuid)["imagesCount"] == 3 and "error" in task_info(broken, uuid)


def test_a_queued_task_that_can_no_longer_run_fails_with_the_reason(relay_factory, fast_node, receiver: Receiver,
                                                                   sample_images: list[Path]) -> None:
    big = fast_node(slots=1, max_images=10, seconds_per_image=0.4)
    small = fast_node(slots=1, max_images=2)
    relay = relay_factory([big, small], admin_token=ADMIN)
    node_ids = ids(relay)
    lock(relay, node_ids[small.url])
    running = submit(relay, sample_images[:3])
    wait_status(relay, running, [RUNNING])
    lock(relay, node_ids[small.url], False)
    waiting = submit(relay, sample_images[:3], {"webhook": receiver.url})  # only `big` takes 3 images: busy
    assert task_info(relay, waiting)["status"]["code"] == QUEUED
    assert get_json(small, "/task/list") == []

    response = requests.delete(f"{relay.url}/admin/nodes/{node_ids[big.url]}", headers=relay.admin_headers(),
                               timeout=10)
    assert response.status_code == 200
    info = wait_status(relay, waiting, [FAILED], timeout=10)
    assert "maxImages" in info["status"]["errorMessage"]
    assert any("maxImages" in line for line in get_json(relay, f"/task/{waiting}/output"))
    wait_for(lambda: receiver.calls, what="the webhook of a task that failed in the relay's queue")
    assert receiver.calls[0][1]["uuid"] == waiting and receiver.calls[0][1]["status"]["code"] == FAILED
    # once a node that can take it is back, the task can be restarted from the relay's staged inputs
    response = requests.post(f"{relay.url}/admin/nodes", headers=relay.admin_headers(), json={"url": big.url},
                             timeout=10)
    assert response.status_code == 201
    assert post_json(relay, "/task/restart", {"uuid": waiting}) == {"success": True}
    assert wait_status(relay, waiting, timeout=30)["status"]["code"] == COMPLETED
    assert task_info(big, waiting)["uuid"] == waiting


def test_forged_webhooks_are_refused(relay_factory, fast_node, sample_images: list[Path]) -> None:
    node = fast_node(seconds_per_image=0.5)
    relay = relay_factory([node])
    uuid = submit(relay, sample_images[:3])
    forged = {"uuid": uuid, "status": {"code": COMPLETED}}
    for query in ("", "?sig=", "?sig=0123456789abcdef0123456789abcdef"):
        response = requests.post(f"{relay.url}/_relay/webhook/{uuid}{query}", json=forged, timeout=10)
        assert response.status_code == 403
    assert task_info(relay, uuid)["status"]["code"] in (QUEUED, RUNNING)
    assert wait_status(relay, uuid)["status"]["code"] == COMPLETED


def test_a_node_the_task_was_moved_from_cannot_speak_for_it(relay_factory, fast_node,
                                                           sample_images: list[Path]) -> None:
    """After failover a task lives on another node; a late webhook from the old one (even correctly
    signed for that node) must not overwrite what the task's current node says."""
    import hashlib
    import hmac

    node = fast_node(seconds_per_image=0.5)
    relay = relay_factory([node])
    uuid = submit(relay, sample_images[:3])
    secret = bytes.fromhex((relay.data_dir / "relay.secret").read_text().strip())
    old_node = "0ld0n0de"
    sig = hmac.new(secret, f"{uuid}:{old_node}".encode(), hashlib.sha256).hexdigest()[:32]
    late = {"uuid": uuid, "status": {"code": FAILED, "errorMessage": "old node"}}
    response = requests.post(f"{relay.url}/_relay/webhook/{uuid}", params={"node": old_node, "sig": sig},
                             json=late, timeout=10)
    assert response.status_code == 200 and response.json() == {"ok": False}
    assert wait_status(relay, uuid)["status"]["code"] == COMPLETED
