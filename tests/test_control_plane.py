"""The relay's background rounds read the store's indexes, never every task: failover reads only the unfinished
tasks of the nodes that are gone, the catch-up after a restart only unfinished tasks, and ghosts (runs left on
a node that failover took a task from) are canceled and removed there once it is back. In process, on both
stores (the `store` fixture), with a node stand-in that records what it is asked; the same with real nodes
is tests/scale/test_ghosts.py."""
from __future__ import annotations

import time
import uuid as uuids
from pathlib import Path
from typing import Any

import pytest

from proxy.auth import Auth
from proxy.config import RelayConfig
from proxy.downloads import DownloadCache
from proxy.errors import UpstreamError
from proxy.housekeeping import catch_up, fail_over, lay_ghosts
from proxy.models import NodeRecord, Stage, TaskRecord
from proxy.nodes import NodeHandle, NodeRegistry
from proxy.redis_store import RedisStore
from proxy.results import DiskResults
from proxy.staging import Staging
from proxy.state import Relay

ENDED_TASKS = 500


@pytest.fixture
def store(store):
    """tests/conftest.py's stores, a Redis one under a prefix of its own: these tests read whole indexes, and
    the prefix made there from id(tmp_path) can repeat between tests."""
    run, backend = store
    if isinstance(backend, RedisStore):
        backend.prefix = f"t{uuids.uuid4().hex}:"
    return run, backend


class Counting:
    """The store, counting the records each kind of read hands out; reading every task is refused."""

    def __init__(self, store: Any):
        self.store = store
        self.read: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.store, name)
        if name in ("tasks_in", "list_tasks"):
            async def refused(*args: Any, **kwargs: Any) -> Any:
                raise AssertionError(f"{name}{args} reads every task of a stage")
            return refused
        if name not in ("open_tasks_on", "get_task"):
            return method

        async def counted(*args: Any, **kwargs: Any) -> Any:
            result = await method(*args, **kwargs)
            got = result if isinstance(result, list) else [result] if result is not None else []
            self.read[name] = self.read.get(name, 0) + len(got)
            return result
        return counted


class NodeStandIn:
    """`relay.upstream`: records each call; answers task info with `infos`, anything else with `answer`."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, Any]] = []
        self.infos: dict[str, dict] = {}
        self.down: set[str] = set()
        self.answer: dict = {"success": True}

    async def call(self, node: NodeRecord, method: str, path: str, **kwargs: Any) -> Any:
        self.calls.append((node.id, method, path, (kwargs.get("data") or {}).get("uuid")))
        if node.id in self.down:
            raise UpstreamError(f"node {node.id} is unreachable")
        if path.startswith("/task/") and path.endswith("/info"):
            return self.infos.get(path.split("/")[2], {"error": "not found"})
        return self.answer


def make_relay(store: Any, tmp_path: Path, nodes: dict[str, bool]) -> Relay:
    """A relay around `store` with the nodes {id: online} (offline ones offline for an hour)."""
    upstream = NodeStandIn()
    registry = NodeRegistry(store, upstream)  # type: ignore[arg-type]
    for node_id, online in nodes.items():
        registry.handles[node_id] = NodeHandle(NodeRecord(node_id, f"http://{node_id}:1"), online=online,
                                               offline_since=None if online else time.time() - 3600)
    config = RelayConfig(failover_after=10, check_interval=0.5)
    return Relay(config=config, store=store, upstream=upstream, registry=registry,  # type: ignore[arg-type]
                 staging=Staging(tmp_path / "staging"), auth=Auth(store), cache=DownloadCache(tmp_path / "cache"),
                 results=DiskResults(tmp_path / "results"), secret=b"s" * 32)


def new_uuid() -> str:
    return str(uuids.uuid4())


def seed(run: Any, store: Any, tasks: list[TaskRecord]) -> None:
    for task in tasks:
        run(store.put_task(task))


def ended(node_id: str, count: int) -> list[TaskRecord]:
    return [TaskRecord(uuid=new_uuid(), created_ms=i, stage=Stage.ON_NODE, node_id=node_id, ended_ms=i + 1,
                       last_info={"status": {"code": 40}}) for i in range(count)]


def test_failover_reads_only_the_open_tasks_of_the_nodes_that_are_gone(store, tmp_path: Path) -> None:
    run, backend = store
    counting = Counting(backend)
    relay = make_relay(counting, tmp_path, {"gone": False, "alive": True, "late": False})
    relay.config.failover_after = 10
    relay.registry.handles["late"].offline_since = time.time() - 1  # offline, but not for long yet
    running, sending, committing, busy = (
        TaskRecord(uuid=new_uuid(), created_ms=10_000, stage=Stage.ON_NODE, node_id="gone"),
        TaskRecord(uuid=new_uuid(), created_ms=10_001, stage=Stage.DISPATCHING, node_id="gone"),
        TaskRecord(uuid=new_uuid(), created_ms=10_002, stage=Stage.COMMITTING, node_id="gone"),
        TaskRecord(uuid=new_uuid(), created_ms=10_003, stage=Stage.ON_NODE, node_id="gone"))
    on_alive = TaskRecord(uuid=new_uuid(), created_ms=10_004, stage=Stage.ON_NODE, node_id="alive")
    on_late = TaskRecord(uuid=new_uuid(), created_ms=10_005, stage=Stage.ON_NODE, node_id="late")
    on_removed = TaskRecord(uuid=new_uuid(), created_ms=10_006, stage=Stage.ON_NODE, node_id="removed")
    seed(run, backend, ended("gone", ENDED_TASKS) + ended("alive", ENDED_TASKS)
         + [running, sending, committing, busy, on_alive, on_late, on_removed])
    relay.staging.create(running.uuid).joinpath("a.jpg").write_bytes(b"jpeg")  # its inputs are kept

    async def round_while_busy() -> None:
        async with relay.locks.hold(busy.uuid):  # this replica is sending it right now
            await fail_over(relay)

    run(round_while_busy())
    assert counting.read["open_tasks_on"] == 4 + 1, "the gone node's open tasks and the removed node's"
    assert counting.read["get_task"] <= 4, "a fresh look at each task moved"
    again = {t.uuid: t for t in [run(backend.get_task(t.uuid)) for t in
                                 (running, sending, committing, busy, on_alive, on_late, on_removed)]}
    assert (again[running.uuid].stage, again[running.uuid].node_id) == (Stage.QUEUED, None)
    for task in (sending, committing):  # no inputs kept: failed, and held by no node
        assert (again[task.uuid].stage, again[task.uuid].node_id) == (Stage.FAILED, None)
        assert "went offline" in again[task.uuid].error
    assert "removed from the relay" in again[on_removed.uuid].error
    assert again[busy.uuid] == busy, "left to the send under way"
    assert again[on_alive.uuid] == on_alive and again[on_late.uuid] == on_late
    assert run(backend.ghosts("gone")) == sorted([running.uuid, sending.uuid, committing.uuid])
    assert run(backend.ghost_nodes()) == {"gone"}, "a removed node gets no ghosts"
    assert relay.upstream.calls == [], "a gone node is not asked anything"

    counting.read.clear()
    run(fail_over(relay))  # the next round: only the task left to the send is read
    assert counting.read["open_tasks_on"] == 1
    assert run(backend.open_tasks_on("gone")) == []


def test_ghosts_are_canceled_and_removed_once_their_node_is_back(store, tmp_path: Path) -> None:
    run, backend = store
    relay = make_relay(backend, tmp_path, {"back": True, "still-off": False, "unreachable": True})
    upstream: NodeStandIn = relay.upstream  # type: ignore[assignment]
    upstream.answer = {"error": "not found"}  # already gone there: fine too
    moved = TaskRecord(uuid=new_uuid(), stage=Stage.ON_NODE, node_id="other")
    queued = TaskRecord(uuid=new_uuid(), stage=Stage.QUEUED)
    back_there = TaskRecord(uuid=new_uuid(), stage=Stage.ON_NODE, node_id="back", ended_ms=5)
    being_sent = TaskRecord(uuid=new_uuid(), stage=Stage.DISPATCHING, node_id="back")
    deleted = new_uuid()
    seed(run, backend, [moved, queued, back_there, being_sent])
    for uuid in (moved.uuid, queued.uuid, back_there.uuid, being_sent.uuid, deleted):
        run(backend.add_ghost("back", uuid))
    run(backend.add_ghost("still-off", moved.uuid))
    run(backend.add_ghost("unreachable", queued.uuid))
    run(backend.add_ghost("unreachable", moved.uuid))
    run(backend.add_ghost("removed", queued.uuid))
    upstream.down.add("unreachable")  # online a moment ago, not answering now

    run(lay_ghosts(relay))
    told = [(node, path, uuid) for node, _, path, uuid in upstream.calls if node == "back"]
    expected = sorted([moved.uuid, queued.uuid, deleted])
    assert sorted(uuid for _, path, uuid in told if path == "/task/cancel") == expected
    assert sorted(uuid for _, path, uuid in told if path == "/task/remove") == expected
    assert all(told[i][1:] == ("/task/cancel", told[i][2]) and told[i + 1][1:] == ("/task/remove", told[i][2])
               for i in range(0, len(told), 2)), "cancel, then remove"
    assert run(backend.ghosts("back")) == [being_sent.uuid], "sent there again: decided once it is there"
    assert run(backend.ghosts("still-off")) == [moved.uuid], "offline: nothing is asked of it yet"
    assert run(backend.ghosts("unreachable")) == sorted([queued.uuid, moved.uuid]), "kept until the node answers"
    assert len([c for c in upstream.calls if c[0] == "unreachable"]) == 1, "one try a round, not one per ghost"
    assert "removed" not in run(backend.ghost_nodes()), "a node no longer registered takes its ghosts along"
    assert not any(node == "still-off" for node, *_ in upstream.calls)

    being_sent.stage = Stage.ON_NODE  # it reached the node: that run is the task's own
    run(backend.put_task(being_sent))
    upstream.calls.clear()
    run(lay_ghosts(relay))
    assert run(backend.ghosts("back")) == [] and not [c for c in upstream.calls if c[0] == "back"]


def test_catch_up_reads_only_open_tasks(store, tmp_path: Path) -> None:
    run, backend = store
    counting = Counting(backend)
    relay = make_relay(counting, tmp_path, {"n1": True})
    finished = TaskRecord(uuid=new_uuid(), created_ms=10_000, stage=Stage.ON_NODE, node_id="n1")
    running = TaskRecord(uuid=new_uuid(), created_ms=10_001, stage=Stage.ON_NODE, node_id="n1")
    sending = TaskRecord(uuid=new_uuid(), created_ms=10_002, stage=Stage.DISPATCHING, node_id="n1")
    seed(run, backend, ended("n1", ENDED_TASKS) + [finished, running, sending])
    upstream: NodeStandIn = relay.upstream  # type: ignore[assignment]
    upstream.infos[finished.uuid] = {"uuid": finished.uuid, "status": {"code": 40}}
    upstream.infos[running.uuid] = {"uuid": running.uuid, "status": {"code": 20}}
    run(catch_up(relay))
    assert counting.read["open_tasks_on"] == 3
    asked = [path.split("/")[2] for _, _, path, _ in upstream.calls if path.endswith("/info")]  # (not the archive's)
    assert asked == [finished.uuid, running.uuid], "ON_NODE ones only; a send cut short is recover's"
    assert run(backend.get_task(finished.uuid)).ended_ms is not None
    assert run(backend.nodes_with_open_tasks()) == {"n1"}
    assert {t.uuid for t in run(backend.open_tasks_on("n1"))} == {running.uuid, sending.uuid}


def test_an_end_learnt_after_a_check_that_showed_it_frees_no_slot_twice(store, tmp_path: Path) -> None:
    """Found by the fault suite (a node overbooked by one): a task's end, learnt late (its replica was killed),
    took one off a node count that a health check had already taken it off, so the relay saw a slot free that
    was not, and sent the node a third task for its two slots."""
    run, backend = store
    relay = make_relay(backend, tmp_path, {"n1": True})
    handle = relay.registry.handles["n1"]
    still, ending = (TaskRecord(uuid=new_uuid(), created_ms=i, stage=Stage.ON_NODE, node_id="n1") for i in (1, 2))
    seed(run, backend, [still, ending])
    handle.info = {"taskQueueCount": 1, "maxParallelTasks": 2}  # checked after `ending` ended there: only `still`
    run(relay.registry.task_left("n1", ending.uuid))
    assert handle.info["taskQueueCount"] == 1, "the check already counted the end"
    handle.info = {"taskQueueCount": 2, "maxParallelTasks": 2}  # checked before the end: both
    run(relay.registry.task_left("n1", ending.uuid))
    assert handle.info["taskQueueCount"] == 1, "the end frees its slot at once"
