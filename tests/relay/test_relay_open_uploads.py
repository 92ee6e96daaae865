"""Uploads begun with `/task/new/init` and never committed: they hold no node slot, expire after
`--upload-idle`, their owner (and nobody else) can remove them, and a client may have only
`--max-open-uploads` of them at once."""
from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.relay.relay_helpers import (
    COMPLETED,
    RUNNING,
    api,
    commit,
    get_json,
    init_task,
    post_json,
    submit,
    upload,
    wait_for,
    wait_status,
)

pytestmark = pytest.mark.slow


def staged(relay, uuid: str) -> Path:
    return relay.data_dir / "staging" / uuid


def test_four_empty_inits_do_not_delay_a_committed_task_and_expire(relay_factory, fast_node,
                                                                   sample_images: list[Path]) -> None:
    """Four empty inits do not delay a committed task; abandoned uploads are gone after their expiry.

    One node with one slot; four inits never committed (one with a file staged); then a whole task (init,
    uploads, commit) goes to the node at once and runs. With a short `--upload-idle`, the four abandoned
    uploads' records and staging folders are gone once they expire."""
    node = fast_node(slots=1, seconds_per_image=0.5)
    relay = relay_factory([node], upload_idle=3)
    abandoned = [init_task(relay, {"name": f"abandoned {i}"})["uuid"] for i in range(4)]
    assert upload(relay, abandoned[0], sample_images[:1]) == {"success": True}
    assert all(staged(relay, uuid).is_dir() for uuid in abandoned)

    uuid = submit(relay, sample_images[:2], {"name": "committed after them"})
    assert {"uuid": uuid} in get_json(node, "/task/list")  # on the node at once, not in the relay's queue
    assert get_json(node, f"/task/{uuid}/info")["status"]["code"] in (RUNNING, COMPLETED)
    assert wait_status(relay, uuid, timeout=30)["status"]["code"] == COMPLETED

    wait_for(lambda: not any(staged(relay, u).exists() for u in abandoned), timeout=20,
             what="the abandoned uploads' staging folders to go")
    log = relay.log()
    assert all(f"upload expired uuid={u}" in log for u in abandoned)
    for gone in abandoned:  # their records went too
        assert commit(relay, gone) == {"error": "Invalid uuid (not found)"}
        assert post_json(relay, "/task/remove", {"uuid": gone}) == {"success": False, "error": f"{gone} not found"}
    assert staged(relay, uuid).is_dir()  # the committed task keeps its inputs


def test_only_the_owner_removes_an_open_upload(relay_factory, fast_node, sample_images: list[Path]) -> None:
    relay = relay_factory([fast_node()], allow_registration=True, token="relay-token")
    tokens = [requests.post(f"{relay.url}/auth/register", data={"username": name, "password": "a long password"},
                            timeout=30).json()["token"] for name in ("ann", "bob")]
    ann, bob = tokens
    uuid = init_task(relay, token=ann)["uuid"]
    assert upload(relay, uuid, sample_images[:1], token=ann) == {"success": True}
    assert post_json(relay, "/task/remove", {"uuid": uuid}, token=bob) == {"success": False,
                                                                          "error": f"{uuid} not found"}
    assert staged(relay, uuid).is_dir()
    response = requests.post(api(relay, "/task/remove", ann), json={"uuid": uuid}, timeout=30)  # JSON body too
    assert response.json() == {"success": True}
    assert not staged(relay, uuid).exists()
    assert upload(relay, uuid, sample_images[:2], token=ann) == {"error": "Invalid uuid (not found)"}
    assert f"upload removed by its owner uuid={uuid}" in relay.log()
    # cancel and restart still treat an open upload as NodeODX does: not found
    other = init_task(relay, token=ann)["uuid"]
    for path in ("/task/cancel", "/task/restart"):
        assert post_json(relay, path, {"uuid": other}, token=ann) == {"success": False, "error": f"{other} not found"}
    assert staged(relay, other).is_dir()


def test_open_uploads_are_capped_per_owner(relay_factory, fast_node, sample_images: list[Path]) -> None:
    relay = relay_factory([fast_node()], allow_registration=True, token="relay-token", max_open_uploads=3)
    ann, bob = [requests.post(f"{relay.url}/auth/register", data={"username": name, "password": "a long password"},
                              timeout=30).json()["token"] for name in ("ann", "bob")]
    opened = [init_task(relay, token=ann)["uuid"] for _ in range(3)]
    refused = init_task(relay, {"name": "one too many"}, token=ann)
    assert set(refused) == {"error"}, refused
    for words in ("Too many open uploads", "3 uploads", "allows 3", "--max-open-uploads", "/task/remove"):
        assert words in refused["error"], refused
    files = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in sample_images[:2]]
    one_shot = post_json(relay, "/task/new", files=files, token=ann)  # /task/new leaves nothing open: not capped
    assert set(one_shot) == {"uuid"}, one_shot
    assert set(init_task(relay, token=bob)) == {"uuid"}  # another owner has a cap of their own
    # committing one frees its place
    assert upload(relay, opened[0], sample_images[:2], token=ann) == {"success": True}
    assert commit(relay, opened[0], token=ann) == {"uuid": opened[0]}
    opened.append(init_task(relay, token=ann)["uuid"])
    assert "error" in init_task(relay, token=ann)
    # removing one frees its place
    assert post_json(relay, "/task/remove", {"uuid": opened[1]}, token=ann) == {"success": True}
    assert "uuid" in init_task(relay, token=ann)


def test_no_cap_with_zero(relay_factory, fast_node) -> None:
    relay = relay_factory([fast_node()], max_open_uploads=0)
    assert all("uuid" in init_task(relay) for _ in range(25))


def test_a_removed_open_upload_is_discarded_on_a_real_nodeodx_too(relay_factory, nodeodx_factory,
                                                                  sample_images: list[Path]) -> None:
    """The files forwarded to the node as they arrived go with the upload (NodeODX itself would keep them
    for two days): the node refuses the uuid afterwards."""
    node = nodeodx_factory()
    relay = relay_factory([node])
    uuid = init_task(relay)["uuid"]
    assert upload(relay, uuid, sample_images[:2]) == {"success": True}
    probe = {"images": ("probe.JPG", sample_images[0].read_bytes())}
    assert requests.post(f"{node.url}/task/new/upload/{uuid}", files=probe, timeout=10).json() == {"success": True}
    assert post_json(relay, "/task/remove", {"uuid": uuid}) == {"success": True}
    wait_for(lambda: "not found" in str(requests.post(f"{node.url}/task/new/upload/{uuid}", files=probe,
                                                      timeout=10).json().get("error")),
             timeout=10, what="the node's upload to be discarded")
