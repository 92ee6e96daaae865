"""Placement through a real relay: refusal at commit, the relay's own queue, spreading, locked nodes."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.relay.relay_helpers import (
    CANCELED,
    COMPLETED,
    QUEUED,
    RUNNING,
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


def test_refused_at_commit_when_no_node_takes_that_many_images(relay_factory, fast_node,
                                                               sample_images: list[Path]) -> None:
    small, smaller = fast_node(max_images=4), fast_node(max_images=3)
    relay = relay_factory([small, smaller])
    uuid = init_task(relay)["uuid"]
    assert upload(relay, uuid, sample_images[:5]) == {"success": True}
    result = commit(relay, uuid)
    assert "uuid" not in result
    assert "maxImages" in result["error"] and "5 images" in result["error"] and "4" in result["error"]
    assert "error" in task_info(relay, uuid)  # refused tasks are not kept
    assert {"uuid": uuid} not in get_json(relay, "/task/list")
    for node in (small, smaller):
        assert get_json(node, "/task/list") == []
    assert submit(relay, sample_images[:4])  # what fits is taken


def test_refused_at_commit_when_no_node_has_the_memory(relay_factory, fast_node, sample_images: list[Path]) -> None:
    node = fast_node(memory_gb=2)  # six images need about 2.3 GB by the memory model
    relay = relay_factory([node])
    uuid = init_task(relay)["uuid"]
    upload(relay, uuid, sample_images[:6])
    result = commit(relay, uuid)
    assert "uuid" not in result
    assert "memory" in result["error"] and "totalMemory" in result["error"] and "2.0 GB" in result["error"]
    assert get_json(node, "/task/list") == []
    files = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in sample_images[:6]]
    assert "totalMemory" in post_json(relay, "/task/new", files=files)["error"]  # the one-shot form too


def test_memory_heavy_options_count(relay_factory, fast_node, sample_images: list[Path]) -> None:
    """Three images fit in 3 GB at default quality, not at pc-quality ultra (twice the memory)."""
    relay = relay_factory([fast_node(memory_gb=3)])
    heavy = json.dumps([{"name": "pc-quality", "value": "ultra"}])
    uuid = init_task(relay, {"options": heavy})["uuid"]
    upload(relay, uuid, sample_images[:3])
    assert "totalMemory" in commit(relay, uuid)["error"]
    assert wait_status(relay, submit(relay, sample_images[:3]))["status"]["code"] == COMPLETED


def test_a_task_waits_in_the_relays_queue_while_every_slot_is_busy(relay_factory, fast_node,
                                                                   sample_images: list[Path]) -> None:
    node = fast_node(slots=1, seconds_per_image=0.4)
    relay = relay_factory([node])
    first = submit(relay, sample_images[:3])
    wait_status(relay, first, [RUNNING])
    second = submit(relay, sample_images[:3])
    info = task_info(relay, second)
    assert info["status"]["code"] == QUEUED and info["imagesCount"] == 3
    # no console output yet, as on a node for a queued task: the node's own lines start at 0 once it runs
    assert get_json(relay, f"/task/{second}/output") == []
    assert task_info(relay, second, with_output=0)["output"] == []
    assert [t["uuid"] for t in get_json(node, "/task/list")] == [first]  # not pushed into the node's queue
    assert "error" in task_info(node, second)
    relay_info = get_json(relay, "/info")
    assert relay_info["relay"]["queued"] == 1 and relay_info["taskQueueCount"] == 2
    assert "error" in get_json(relay, f"/task/{second}/download/all.zip")
    assert {"uuid": second} in get_json(relay, "/task/list")

    assert wait_status(relay, first)["status"]["code"] == COMPLETED
    assert wait_status(relay, second, [RUNNING, COMPLETED])  # dispatched once the slot freed
    assert task_info(node, second)["uuid"] == second
    assert wait_status(relay, second)["status"]["code"] == COMPLETED
    assert get_json(relay, "/info")["relay"]["queued"] == 0


def test_cancel_and_restart_a_task_in_the_relays_queue(relay_factory, fast_node, sample_images: list[Path]) -> None:
    node = fast_node(slots=1, seconds_per_image=0.4)
    relay = relay_factory([node])
    first = submit(relay, sample_images[:3])
    waiting = submit(relay, sample_images[:2])
    assert task_info(relay, waiting)["status"]["code"] == QUEUED
    assert post_json(relay, "/task/cancel", {"uuid": waiting}) == {"success": True}
    assert task_info(relay, waiting)["status"]["code"] == CANCELED
    assert post_json(relay, "/task/restart", {"uuid": waiting}) == {"success": True}
    assert task_info(relay, waiting)["status"]["code"] in (QUEUED, RUNNING, COMPLETED)
    assert wait_status(relay, first)["status"]["code"] == COMPLETED
    assert wait_status(relay, waiting)["status"]["code"] == COMPLETED
    removed = submit(relay, sample_images[:2])
    queued = submit(relay, sample_images[:2])
    assert post_json(relay, "/task/remove", {"uuid": queued}) == {"success": True}
    assert "error" in task_info(relay, queued)
    wait_status(relay, removed)
    assert "error" in task_info(node, queued)  # never sent


def test_parallel_submissions_spread_across_nodes(relay_factory, fast_node, sample_images: list[Path]) -> None:
    nodes = [fast_node(slots=2, seconds_per_image=0.3) for _ in range(2)]
    relay = relay_factory(nodes)
    uuids: list[str] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            uuids.append(submit(relay, sample_images[:3]))
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(uuids) == 4
    per_node = [{t["uuid"] for t in get_json(node, "/task/list")} for node in nodes]
    assert [len(tasks) for tasks in per_node] == [2, 2], per_node  # two slots each: two tasks each
    assert per_node[0] | per_node[1] == set(uuids)
    assert wait_status(relay, uuids[0])["status"]["code"] == COMPLETED


def test_sequential_tasks_alternate_between_idle_nodes(relay_factory, fast_node, sample_images: list[Path]) -> None:
    """The fair tie-break: with equal nodes, the one given a task longest ago gets the next."""
    nodes = [fast_node(slots=1) for _ in range(2)]
    relay = relay_factory(nodes)
    holders = []
    for _ in range(4):
        uuid = submit(relay, sample_images[:2])
        wait_status(relay, uuid)
        wait_for(lambda: all(get_json(n, "/info")["taskQueueCount"] == 0 for n in nodes))
        holders.append(next(i for i, n in enumerate(nodes) if "error" not in task_info(n, uuid)))
    assert holders in ([0, 1, 0, 1], [1, 0, 1, 0]), holders


def test_a_locked_node_gets_no_new_tasks(relay_factory, fast_node, sample_images: list[Path]) -> None:
    a, b = fast_node(slots=2), fast_node(slots=2)
    relay = relay_factory([a, b], admin_token="admin-secret")
    nodes = requests.get(f"{relay.url}/admin/nodes", headers=relay.admin_headers(), timeout=10).json()
    locked = next(n for n in nodes if n["url"] == a.url)
    response = requests.post(f"{relay.url}/admin/nodes/{locked['id']}/lock", headers=relay.admin_headers(), timeout=10)
    assert response.status_code == 200 and response.json()["locked"] is True
    assert get_json(relay, "/info")["relay"]["locked"] == 1
    uuids = [submit(relay, sample_images[:2]) for _ in range(3)]
    wait_status(relay, uuids[-1])
    assert get_json(a, "/task/list") == []
    assert {t["uuid"] for t in get_json(b, "/task/list")} == set(uuids)


def test_abandoned_uploads_hold_no_node_slot(relay_factory, fast_node, sample_images: list[Path]) -> None:
    """As on NodeODX, only committed work counts against a node: two inits that are never committed do
    not make a task committed after them wait, on two idle one-slot nodes."""
    nodes = [fast_node(slots=1), fast_node(slots=1)]
    relay = relay_factory(nodes)
    abandoned = [init_task(relay)["uuid"] for _ in range(2)]
    assert upload(relay, abandoned[0], sample_images[:1]) == {"success": True}
    uuid = submit(relay, sample_images[:2])
    assert any(t["uuid"] == uuid for node in nodes for t in get_json(node, "/task/list"))  # on a node at once
    assert wait_status(relay, uuid, timeout=15)["status"]["code"] == COMPLETED
    # the abandoned tasks can still be finished by their client
    assert upload(relay, abandoned[0], sample_images[1:2]) == {"success": True}
    assert commit(relay, abandoned[0]) == {"uuid": abandoned[0]}
    assert wait_status(relay, abandoned[0])["status"]["code"] == COMPLETED


def test_an_upload_silent_past_upload_idle_expires(relay_factory, fast_node, sample_images: list[Path]) -> None:
    """Nothing is kept for ever for a client that gave up: its task and staged files go after `--upload-idle`."""
    relay = relay_factory([fast_node()], upload_idle=1)
    uuid = init_task(relay)["uuid"]
    assert upload(relay, uuid, sample_images[:1]) == {"success": True}
    staged = relay.data_dir / "staging" / uuid
    assert staged.is_dir()
    deadline = time.monotonic() + 15
    while staged.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not staged.exists()
    assert f"upload expired uuid={uuid}" in relay.log()
    assert commit(relay, uuid) == {"error": "Invalid uuid (not found)"}
