"""`/task/list?with_info=true`: one request answers every task's info (and the node holding it), so a client
that follows many tasks (the QGIS task panel) asks once per interval instead of once per task. Without the
parameter the list is NodeODX's, unchanged."""
from __future__ import annotations

import time
from pathlib import Path

import requests

from shared import Node, TaskStatus


def listed(relay, **query) -> list[dict]:
    response = requests.get(relay.api("/task/list", with_info="true", **query), timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_list_with_info_matches_each_tasks_info_and_names_the_node(relay_factory, fast_node, devnode_factory,
                                                                       sample_images: list[Path]) -> None:
    quick = fast_node(slots=1)
    slow = devnode_factory(slots=1, seconds_per_image=1.0)
    relay = relay_factory([quick, slow], token="T")
    client = Node.from_url(relay.url, token="T")
    done = client.create_task(sample_images[:2], name="first")
    done.wait_for_completion(interval=0.1)
    running = client.create_task(sample_images[:4], name="second")  # the quick node is free again: either may run it

    infos = listed(relay)
    assert [i["uuid"] for i in infos] == [done.uuid, running.uuid]  # the list's own order, oldest first
    first, second = infos
    assert first["name"] == "first" and first["status"]["code"] == TaskStatus.COMPLETED
    assert first["node"] and second["node"]
    alone = requests.get(relay.api(f"/task/{done.uuid}/info"), timeout=10).json()
    assert {k: v for k, v in first.items() if k != "node"} == alone
    assert set(second) == set(alone) | {"node"} and second["imagesCount"] == 4

    progress = [second["progress"]]
    deadline = time.monotonic() + 30
    while listed(relay)[1]["status"]["code"] != TaskStatus.COMPLETED and time.monotonic() < deadline:
        progress.append(listed(relay)[1]["progress"])
        time.sleep(0.2)
    assert listed(relay)[1]["status"]["code"] == TaskStatus.COMPLETED and listed(relay)[1]["progress"] == 100
    assert progress == sorted(progress)

    assert requests.get(relay.api("/task/list", with_info="false"), timeout=10).json() == [
        {"uuid": done.uuid}, {"uuid": running.uuid}]
    assert [i["uuid"] for i in listed(relay, limit=1, offset=1)] == [running.uuid]
    other = requests.get(relay.api("/task/list", with_info="true", token="wrong"), timeout=10)
    assert other.status_code == 403


def test_a_task_in_the_relays_queue_is_listed_as_queued_on_no_node(relay_factory, devnode_factory,
                                                                   sample_images: list[Path]) -> None:
    busy = devnode_factory(slots=1, seconds_per_image=1.0)
    relay = relay_factory([busy])
    client = Node.from_url(relay.url)
    tasks = [client.create_task(sample_images[:3]) for _ in range(3)]
    infos = {i["uuid"]: i for i in listed(relay)}
    assert set(infos) == {t.uuid for t in tasks}
    waiting = [i for i in infos.values() if i["node"] is None]
    assert waiting and all(i["status"]["code"] == TaskStatus.QUEUED and i["progress"] == 0 for i in waiting)
    for task in tasks:
        task.cancel()


def test_a_node_that_went_offline_does_not_hold_up_the_list(relay_factory, devnode_factory,
                                                            sample_images: list[Path]) -> None:
    import signal

    frozen = devnode_factory(slots=1, seconds_per_image=2.0)
    relay = relay_factory([frozen], node_timeout=1)
    task = Node.from_url(relay.url).create_task(sample_images[:3], name="on a frozen node")
    deadline = time.monotonic() + 20
    while listed(relay)[0]["status"]["code"] != TaskStatus.RUNNING and time.monotonic() < deadline:
        time.sleep(0.1)
    frozen.process.send_signal(signal.SIGSTOP)  # it answers nothing, and nothing fails at once either
    try:
        status = requests.get(relay.api("/info"), timeout=30).json()["relay"]
        while status["online"] and time.monotonic() < deadline + 20:
            time.sleep(0.2)
            status = requests.get(relay.api("/info"), timeout=30).json()["relay"]
        assert status["online"] == 0
        started = time.monotonic()
        [entry] = listed(relay)
        assert time.monotonic() - started < 0.5 and entry["uuid"] == task.uuid and entry["name"] == "on a frozen node"
    finally:
        frozen.process.send_signal(signal.SIGCONT)
