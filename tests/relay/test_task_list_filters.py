"""`/task/list` with filters and an order: `status`, `created_after`/`created_before`, `name`,
`min_duration`/`max_duration`, `sort` (created, status, images, duration; `.asc`/`.desc`), paged with `limit` and
`offset` and with infos on `with_info=true`; bad values refused with 400 naming the parameter. Without them the
list is NodeODX's (tests/relay/test_task_list_paging.py). On both stores, with records written into the store
before the relay starts; and `Node.tasks(...)` of the shared client, through the relay and against a plain node."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from proxy.auth import ANONYMOUS
from proxy.models import Stage, TaskRecord
from shared import Node, TaskStatus
from testkit.relay import Relay
from tests.relay.relay_helpers import relay_holding

TASKS = 120
BASE_MS = 1_700_000_000_000
NAMES = ("Survey North", "survey south", "Farm", "", "Quarry NORTH")


def record(i: int) -> TaskRecord:
    """Task i: in the relay's queue, canceled or failed there, or on a node with a status (or none learned yet),
    an image count, a processing time and a name; created two by two at the same millisecond."""
    kind = i % 7
    task = TaskRecord(uuid=f"{i % 3}{i:07d}-aaaa-4aaa-8aaa-aaaaaaaaaaaa", owner=ANONYMOUS, created_ms=BASE_MS + i // 2,
                      name=NAMES[i % 5] or None, image_count=10 + i % 9)
    if kind == 0:
        task.stage = Stage.QUEUED
    elif kind == 1:
        task.stage, task.ended_ms = Stage.CANCELED, BASE_MS
    elif kind == 2:
        task.stage, task.ended_ms, task.error = Stage.FAILED, BASE_MS, "no node"
    else:
        # (ended_ms set on each: an unfinished task on a node the relay does not know would be failed over)
        task.stage, task.node_id, task.ended_ms = Stage.ON_NODE, "n1", BASE_MS
        if kind != 3:  # kind 3: on a node, no info learned yet (listed as queued)
            code = (20, 40, 30)[kind - 4]
            task.last_info = {"uuid": task.uuid, "status": {"code": code}, "imagesCount": 10 + i % 9,
                              "processingTime": (i * 7919) % 5000 * 10, "dateCreated": task.created_ms}
    return task


def facts(task: TaskRecord) -> dict[str, Any]:
    """What the list filters and sorts by, worked out here independently of the relay's code."""
    status = {Stage.QUEUED: 10, Stage.CANCELED: 50, Stage.FAILED: 30}.get(task.stage)
    info = task.last_info or {}
    return {"uuid": task.uuid, "created": task.created_ms, "name": (task.name or "").lower(),
            "status": status or info.get("status", {}).get("code", 10), "images": task.image_count,
            "duration": info.get("processingTime", -1)}


def records() -> list[TaskRecord]:
    made = [record(i) for i in reversed(range(TASKS))]
    made.append(TaskRecord(uuid="b0000000-bbbb-4bbb-8bbb-bbbbbbbbbbbb", owner="user:bob", created_ms=BASE_MS,
                           stage=Stage.QUEUED, name="Survey North"))
    made.append(TaskRecord(uuid="c0000000-cccc-4ccc-8ccc-cccccccccccc", owner=ANONYMOUS, created_ms=BASE_MS,
                           name="survey upload"))  # never committed: never listed
    return made


def expected(keep=lambda f: True, sort: str = "created", desc: bool = False) -> list[str]:
    mine = [facts(t) for t in records() if t.owner == ANONYMOUS and t.stage != Stage.UPLOADING]
    mine = [f for f in mine if keep(f)]
    mine.sort(key=lambda f: (f[sort], f["created"], f["uuid"]), reverse=desc)
    return [f["uuid"] for f in mine]


@pytest.fixture(params=["sqlite", "redis"], scope="module")
def relay(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    """A relay (no node needed) whose store already holds `records()`."""
    with relay_holding(request.param, tmp_path_factory.mktemp(f"filters-{request.param}"), records()) as started:
        yield started


def uuids(relay: Relay, **query: Any) -> list[str]:
    response = requests.get(relay.api("/task/list", **query), timeout=30)
    assert response.status_code == 200, response.text
    return [entry["uuid"] for entry in response.json()]


def test_filters_and_orders_answer_what_the_relay_knows_of_each_task(relay: Relay) -> None:
    assert uuids(relay, status=40) == expected(lambda f: f["status"] == 40)
    assert uuids(relay, status="40,50", sort="created.desc", limit=10) == expected(
        lambda f: f["status"] in (40, 50), desc=True)[:10]
    assert uuids(relay, status="queued,failed") == expected(lambda f: f["status"] in (10, 30))
    assert uuids(relay, status=" 20 ") == expected(lambda f: f["status"] == 20)
    assert uuids(relay, sort="created.desc") == expected(desc=True)
    assert uuids(relay, sort="created.asc") == uuids(relay) == expected()
    for key in ("status", "images", "duration"):
        assert uuids(relay, sort=key) == expected(sort=key), key
        assert uuids(relay, sort=f"{key}.desc") == expected(sort=key, desc=True), key
    assert uuids(relay, name="NORTH") == expected(lambda f: "north" in f["name"])
    assert uuids(relay, name="survey", status=40, sort="duration.desc") == expected(
        lambda f: "survey" in f["name"] and f["status"] == 40, sort="duration", desc=True)
    assert uuids(relay, min_duration=10, max_duration="30.5") == expected(lambda f: 10_000 <= f["duration"] <= 30_500)
    assert uuids(relay, max_duration=0) == expected(lambda f: f["duration"] <= 0)
    after, before = BASE_MS + 10, BASE_MS + 40
    assert uuids(relay, created_after=after, created_before=before) == expected(
        lambda f: after <= f["created"] < before)
    iso = dt.datetime.fromtimestamp(after / 1000, tz=dt.UTC).isoformat()
    assert uuids(relay, created_after=iso, status=40, sort="created.desc") == expected(
        lambda f: f["created"] >= after and f["status"] == 40, desc=True)
    assert uuids(relay, created_before=BASE_MS) == [] and uuids(relay, name="nothing like it") == []


def test_filtered_pages_end_to_end_are_the_whole_filtered_list(relay: Relay) -> None:
    for query in ({"status": "40,30", "sort": "created.desc"}, {"sort": "images.desc"}, {"name": "s"}):
        pages: list[str] = []
        for offset in range(0, TASKS, 7):
            pages += uuids(relay, limit=7, offset=offset, **query)
        assert pages == uuids(relay, **query), query


def test_with_info_answers_the_filtered_page(relay: Relay) -> None:
    response = requests.get(relay.api("/task/list", status=40, sort="created.desc", limit=3, with_info="true"),
                            timeout=30)
    infos = response.json()
    assert [i["uuid"] for i in infos] == expected(lambda f: f["status"] == 40, desc=True)[:3]
    assert all(i["status"]["code"] == 40 for i in infos)  # (the node is unknown here: its last info stands)


@pytest.mark.parametrize(("bad", "query"), [
    ("status", {"status": "41"}), ("status", {"status": "done"}), ("status", {"status": ","}),
    ("status", {"status": "40,x"}), ("sort", {"sort": "size"}), ("sort", {"sort": "created.up"}),
    ("sort", {"sort": ".desc"}), ("created_after", {"created_after": "yesterday"}),
    ("created_before", {"created_before": "-5"}), ("min_duration", {"min_duration": "-1"}),
    ("max_duration", {"max_duration": "nan"}), ("min_duration", {"min_duration": "ten"})])
def test_bad_values_are_refused_naming_the_parameter(relay: Relay, bad: str, query: dict[str, Any]) -> None:
    response = requests.get(relay.api("/task/list", **query), timeout=30)
    assert response.status_code == 400 and response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"].startswith(f"{bad} must be"), response.json()


def test_the_client_lists_tasks_through_the_relay(relay: Relay) -> None:
    node = Node.from_url(relay.url)
    got = node.tasks(status=TaskStatus.COMPLETED, sort_by="created.desc", limit=5)
    assert [t.uuid for t in got] == expected(lambda f: f["status"] == 40, desc=True)[:5]
    assert all(t.status == TaskStatus.COMPLETED for t in got)
    assert [t.uuid for t in node.tasks(status=[10, 30], name="north")] == expected(
        lambda f: f["status"] in (10, 30) and "north" in f["name"])
    assert [t.uuid for t in node.tasks(sort_by="images.desc", offset=3, limit=4)] == expected(
        sort="images", desc=True)[3:7]


def test_the_client_filters_and_sorts_itself_against_a_plain_node(fast_node, sample_images: list[Path]) -> None:
    node = Node.from_url(fast_node().url)
    made = [node.create_task(sample_images[:n], name=f"run {n}") for n in (2, 3, 2)]
    for task in made:
        task.wait_for_completion(interval=0.1)
    made[1].restart()  # not awaited: whatever status it then has, the filters below must agree with it
    every = {t.uuid: t for t in node.tasks()}
    assert set(every) >= {t.uuid for t in made}
    newest = node.tasks(sort_by="created.desc", limit=2)
    ordered = sorted(every.values(), key=lambda t: (t.date_created, t.uuid), reverse=True)
    assert [t.uuid for t in newest] == [t.uuid for t in ordered[:2]]
    done = node.tasks(status=40, sort_by="images.desc")
    assert all(t.status == TaskStatus.COMPLETED for t in done)
    assert [t.images_count for t in done] == sorted((t.images_count for t in done), reverse=True)
    assert [t.uuid for t in node.tasks(name="RUN 3")] == [made[1].uuid]
    with pytest.raises(ValueError):
        node.tasks(sort_by="size")
