"""The task panel's network side (`qgis_plugin/core/task_list.py`), without widgets: one snapshot per refresh
through a relay (one list request with every task's info), against a plain node (one info per task), and
which tasks ended between two snapshots."""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qgis_plugin.core.task_list import (
    MAX_TASKS,
    TaskEntry,
    ended_between,
    ended_entries,
    fetch_tasks,
    health_from_info,
    list_query,
    matches,
    newest_created,
    newest_first,
    take_snapshot,
)
from qgis_plugin.deps import shared
from testkit.devnode import start_devnode
from testkit.relay import start_relay
from testkit.servers import ServerGroup
from tests.plugin.plugin_helpers import FAST

TaskStatus = shared.TaskStatus
TOKEN = "panel-token"


@pytest.fixture(scope="module")
def two_node_relay(tmp_path_factory) -> Iterator:
    tmp = tmp_path_factory.mktemp("panel-relay")
    with ServerGroup(tmp) as group:
        fast = group.start(start_devnode, slots=1, **FAST)
        slow = group.start(start_devnode, slots=1, seconds_per_image=0.5)
        yield group.add(start_relay(tmp, [fast.url, slow.url], token=TOKEN, check_interval=0.3))


def info(uuid: str, status: TaskStatus, created_s: int = 0) -> shared.TaskInfo:
    return shared.TaskInfo(uuid=uuid, status=status,
                           date_created=dt.datetime.fromtimestamp(created_s, tz=dt.UTC))


def test_a_relay_answers_the_whole_list_in_one_request_with_nodes(two_node_relay, sample_images: list[Path]):
    client = shared.Node.from_url(two_node_relay.url, token=TOKEN)
    first = client.create_task(sample_images[:3], name="older")
    time.sleep(0.01)
    second = client.create_task(sample_images[:3], name="newer")
    node = shared.Node.from_url(two_node_relay.url, token=TOKEN)
    calls: list[str] = []
    original = node.request
    node.request = lambda method, path, query=None, **kw: calls.append(path) or original(method, path, query, **kw)
    snapshot = take_snapshot(node)
    assert snapshot.error == "" and snapshot.with_info
    assert calls == ["/info", "/task/list"]  # one request for every task
    assert [e.uuid for e in snapshot.tasks][:2] == [second.uuid, first.uuid]  # newest first
    assert {e.title for e in snapshot.tasks[:2]} == {"older", "newer"} and all(e.node for e in snapshot.tasks[:2])
    health = snapshot.health
    assert health is not None and health.is_relay and (health.online, health.total, health.slots) == (2, 2, 2)
    assert health.warning == "" and "Nodes online: 2/2" in health.text
    for task in (first, second):
        task.wait_for_completion(interval=0.1)


def test_a_plain_node_is_asked_for_each_tasks_info(devnode_factory, sample_images: list[Path]):
    plain = devnode_factory(slots=2, **FAST)
    client = shared.Node.from_url(plain.url)
    tasks = [client.create_task(sample_images[:2], name=f"task {i}") for i in range(2)]
    snapshot = take_snapshot(shared.Node.from_url(plain.url))
    assert snapshot.error == "" and not snapshot.with_info
    assert [e.uuid for e in snapshot.tasks] == [t.uuid for t in reversed(tasks)]
    assert all(e.node is None for e in snapshot.tasks)
    assert snapshot.health is not None and not snapshot.health.is_relay and snapshot.health.slots == 2

    for task in tasks:
        task.wait_for_completion(interval=0.1)
    node = shared.Node.from_url(plain.url)
    ended = ended_entries(take_snapshot(node))
    calls: list[str] = []
    original = node.request
    node.request = lambda method, path, query=None, **kw: calls.append(path) or original(method, path, query, **kw)
    again = take_snapshot(node, ended=ended)  # tasks that had ended are not asked for again
    assert calls == ["/info", "/task/list"] and [e.uuid for e in again.tasks] == [t.uuid for t in reversed(tasks)]


def test_a_real_nodeodx_node_works_too(nodeodx_factory, sample_images: list[Path]):
    real = nodeodx_factory()
    task = shared.Node.from_url(real.url).create_task(sample_images[:3], name="on NodeODX")
    snapshot = take_snapshot(shared.Node.from_url(real.url))
    assert snapshot.error == "" and not snapshot.with_info
    assert [(e.uuid, e.title) for e in snapshot.tasks] == [(task.uuid, "on NodeODX")]
    task.wait_for_completion(interval=0.2)


def test_a_relay_is_asked_for_its_newest_tasks_only(two_node_relay, sample_images):
    client = shared.Node.from_url(two_node_relay.url, token=TOKEN)
    made = [client.create_task(sample_images[:2], name=f"many {i}") for i in range(3)]
    node = shared.Node.from_url(two_node_relay.url, token=TOKEN)
    queries: list = []
    original = node.request
    node.request = lambda method, path, query=None, **kw: queries.append((path, query)) or original(
        method, path, query, **kw)
    tasks, with_info, total = fetch_tasks(node, most=2)
    assert queries == [("/task/list", {"sort": "created.desc", "limit": 2, "with_info": "true"})]
    assert with_info and total == 2 and [e.uuid for e in tasks] == [made[2].uuid, made[1].uuid]
    assert all(e.seen_at is not None for e in tasks)
    assert list_query() == {"sort": "created.desc", "limit": MAX_TASKS, "with_info": "true"}
    for task in made:
        task.wait_for_completion(interval=0.1)


def test_a_plain_node_ignores_the_query_and_still_gives_its_newest_first(devnode_factory, sample_images):
    plain = devnode_factory(slots=3, **FAST)
    client = shared.Node.from_url(plain.url)
    made = [client.create_task(sample_images[:2], name=f"plain {i}") for i in range(3)]
    tasks, with_info, total = fetch_tasks(shared.Node.from_url(plain.url), most=2)
    assert not with_info and total == 3 and [e.uuid for e in tasks] == [made[2].uuid, made[1].uuid]
    for task in made:
        task.wait_for_completion(interval=0.1)


def test_a_server_that_does_not_answer_is_an_error_in_words():
    snapshot = take_snapshot(shared.Node.from_url("http://127.0.0.1:9"), "http://127.0.0.1:9")
    assert snapshot.tasks == [] and snapshot.health is None and "Cannot reach the server" in snapshot.error


def test_ends_since_the_last_snapshot_are_announced_once():
    before = {"a": TaskStatus.RUNNING, "b": TaskStatus.COMPLETED, "c": TaskStatus.QUEUED}
    after = [TaskEntry(info(u, s)) for u, s in (("a", TaskStatus.COMPLETED), ("b", TaskStatus.COMPLETED),
                                                 ("c", TaskStatus.RUNNING), ("d", TaskStatus.FAILED))]
    assert [e.uuid for e in ended_between(before, after)] == ["a", "d"]  # d: created and ended in between
    assert ended_between(None, after) == []  # the first snapshot: old ends are not news
    older = [TaskEntry(info("e", TaskStatus.COMPLETED, 5))]  # came into view as newer ones were removed
    assert ended_between(before, older, dt.datetime.fromtimestamp(10, tz=dt.UTC)) == []
    assert newest_created(after + older) == dt.datetime.fromtimestamp(5, tz=dt.UTC)


def test_health_filter_order_and_elapsed():
    relay = health_from_info(shared.NodeInfo.from_json({"maxParallelTasks": 2, "taskQueueCount": 5, "relay": {
        "nodes": 3, "online": 0, "queued": 3}}))
    assert (relay.free_slots, relay.queued, relay.online, relay.total) == (0, 3, 0, 3)
    assert "No node is online" in relay.warning
    entries = newest_first([TaskEntry(info("old", TaskStatus.RUNNING, 10)),
                            TaskEntry(info("new", TaskStatus.FAILED, 20))])
    assert [e.uuid for e in entries] == ["new", "old"]
    assert [e.uuid for e in entries if matches(e, [TaskStatus.RUNNING])] == ["old"]
    assert all(matches(e, None) for e in entries)
    now = dt.datetime.fromtimestamp(70, tz=dt.UTC)
    assert entries[1].elapsed_ms(now) == 60_000 and entries[0].elapsed_ms(now) == 0
    running = TaskEntry(shared.TaskInfo(uuid="r", status=TaskStatus.RUNNING, processing_time=5_000),
                        seen_at=dt.datetime.fromtimestamp(60, tz=dt.UTC))
    assert running.elapsed_ms(now) == 15_000  # the server's count runs on from when it was said
    ended = TaskEntry(shared.TaskInfo(uuid="e", status=TaskStatus.COMPLETED, processing_time=5_000),
                      seen_at=dt.datetime.fromtimestamp(60, tz=dt.UTC))
    assert ended.elapsed_ms(now) == 5_000
