"""One contract, two backends: the SQLite store and the Redis store behave the same (the `store` fixture,
in tests/conftest.py, gives each test both)."""
from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from pathlib import Path

import pytest
import redis

from proxy.models import NodeRecord, Stage, TaskRecord, UserRecord
from proxy.redis_store import RedisStore
from proxy.store import ListQuery, SQLiteStore


@pytest.fixture
def store(store):
    """tests/conftest.py's stores, a Redis one under a prefix of its own: the tests of the indexes read whole
    sets, and the prefix made there from id(tmp_path) can repeat between tests."""
    run, backend = store
    if isinstance(backend, RedisStore):
        backend.prefix = f"t{uuid.uuid4().hex}:"
    return run, backend


def test_tasks_round_trip_and_index_by_stage_and_owner(store):
    run, s = store
    a = TaskRecord(uuid="a", owner="alice", created_ms=1, options={"dsm": True}, image_count=3)
    b = TaskRecord(uuid="b", owner="bob", created_ms=2, stage=Stage.QUEUED)
    run(s.put_task(a))
    run(s.put_task(b))
    assert run(s.get_task("a")) == a
    assert [t.uuid for t in run(s.tasks_in(Stage.QUEUED))] == ["b"]
    a.stage = Stage.QUEUED
    run(s.put_task(a))
    assert [t.uuid for t in run(s.tasks_in(Stage.QUEUED))] == ["a", "b"]
    assert run(s.tasks_in(Stage.UPLOADING)) == []
    assert [t.uuid for t in run(s.list_tasks("alice"))] == ["a"]
    assert {t.uuid for t in run(s.list_tasks())} == {"a", "b"}
    run(s.delete_task("a"))
    assert run(s.get_task("a")) is None and [t.uuid for t in run(s.list_tasks())] == ["b"]


def test_nodes_and_users(store):
    run, s = store
    run(s.put_node(NodeRecord("n1", "http://x:1", token="secret", locked=True)))
    assert run(s.list_nodes()) == [NodeRecord("n1", "http://x:1", token="secret", locked=True)]
    run(s.delete_node("n1"))
    assert run(s.list_nodes()) == []
    run(s.put_user(UserRecord("ann", "00", "h", "tok1")))
    run(s.put_user(UserRecord("ann", "00", "h", "tok2")))
    assert run(s.user_by_token_hash("tok2")).username == "ann"
    assert run(s.user_by_token_hash("tok1")) is None


def test_reservations_never_overbook(store):
    run, s = store
    assert run(s.reserve("n1", "t1", 1000, free_slots=2, headroom_mb=3000))
    assert run(s.reserve("n1", "t2", 1000, free_slots=2, headroom_mb=3000))
    assert not run(s.reserve("n1", "t3", 10, free_slots=2, headroom_mb=None)), "slots are full"
    assert not run(s.reserve("n2", "t4", 5000, free_slots=5, headroom_mb=4000)), "memory is short"
    run(s.commit_reservation("t1", 10.0))
    run(s.settle_reservations("n1", 5.0))
    assert set(run(s.reservations())["n1"]) == {"t1", "t2"}, "settled only by an /info asked after commit"
    run(s.settle_reservations("n1", 11.0))
    assert set(run(s.reservations())["n1"]) == {"t2"}
    run(s.drop_reservation("t2"))
    assert not run(s.reservations()).get("n1")


def test_claim_once_is_true_for_the_first_caller_only_until_the_task_is_deleted(store):
    run, s = store
    run(s.put_task(TaskRecord(uuid="c", owner="alice")))
    assert run(s.claim_once("c", "webhook:0")) is True
    assert run(s.claim_once("c", "webhook:0")) is False
    assert run(s.claim_once("c", "webhook:1")) is True  # another run of the same task
    run(s.delete_task("c"))
    assert run(s.claim_once("c", "webhook:0")) is True


def test_open_tasks_per_node_follow_moves_ends_and_deletes(store):
    """A task is open on a node while its record names the node in an on-node stage and it has not ended."""
    run, s = store
    a = TaskRecord(uuid="a", created_ms=1, stage=Stage.ON_NODE, node_id="n1")
    b = TaskRecord(uuid="b", created_ms=2, stage=Stage.DISPATCHING, node_id="n1")
    c = TaskRecord(uuid="c", created_ms=3, stage=Stage.COMMITTING, node_id="n2")
    done = TaskRecord(uuid="done", created_ms=0, stage=Stage.ON_NODE, node_id="n1", ended_ms=5)
    queued = TaskRecord(uuid="q", created_ms=4, stage=Stage.QUEUED)
    for task in (a, b, c, done, queued):
        run(s.put_task(task))
    assert [t.uuid for t in run(s.open_tasks_on("n1"))] == ["a", "b"]
    assert run(s.open_tasks_on("n1"))[0] == a, "the whole record"
    assert run(s.nodes_with_open_tasks()) == {"n1", "n2"}
    b.node_id = "n2"  # sent elsewhere: it leaves n1's set
    run(s.put_task(b))
    assert [t.uuid for t in run(s.open_tasks_on("n1"))] == ["a"]
    assert [t.uuid for t in run(s.open_tasks_on("n2"))] == ["b", "c"]
    a.ended_ms = 9  # ended on its node: no longer open
    run(s.put_task(a))
    c.stage, c.node_id = Stage.QUEUED, None  # back to the relay's queue
    run(s.put_task(c))
    assert run(s.open_tasks_on("n1")) == []
    assert run(s.nodes_with_open_tasks()) == {"n2"}
    run(s.delete_task("b"))
    assert run(s.open_tasks_on("n2")) == [] and run(s.nodes_with_open_tasks()) == set()
    a.ended_ms, a.runs = None, 1  # restarted on its node: open again
    run(s.put_task(a))
    assert [t.uuid for t in run(s.open_tasks_on("n1"))] == ["a"]


def test_listed_uuids_are_the_owners_committed_tasks_oldest_first_a_page_at_a_time(store):
    run, s = store
    for i in range(12):
        run(s.put_task(TaskRecord(uuid=f"t{i:02d}", owner="alice", created_ms=100 + i // 2,  # pairs share a time
                                  stage=Stage.ON_NODE if i % 3 else Stage.QUEUED, node_id="n1")))
    run(s.put_task(TaskRecord(uuid="up", owner="alice", created_ms=1)))  # still uploading: not listed
    run(s.put_task(TaskRecord(uuid="b0", owner="bob", created_ms=50, stage=Stage.QUEUED)))
    every = [f"t{i:02d}" for i in range(12)]
    assert run(s.listed_uuids("alice")) == every
    assert run(s.listed_uuids("alice", offset=0, limit=5)) == every[:5]
    assert run(s.listed_uuids("alice", offset=5, limit=5)) == every[5:10]
    assert run(s.listed_uuids("alice", offset=10, limit=5)) == every[10:]
    assert run(s.listed_uuids("alice", offset=12, limit=5)) == []
    assert run(s.listed_uuids("alice", offset=7)) == every[7:]
    assert run(s.listed_uuids("bob")) == ["b0"] and run(s.listed_uuids("nobody")) == []
    up = TaskRecord(uuid="up", owner="alice", created_ms=1, stage=Stage.QUEUED)  # committed: listed, first
    run(s.put_task(up))
    assert run(s.listed_uuids("alice", limit=2)) == ["up", "t00"]
    run(s.delete_task("t00"))
    assert run(s.listed_uuids("alice", limit=2)) == ["up", "t01"]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5])
def test_a_long_listing_is_read_in_pieces_and_is_the_same_list(store, chunk: int):
    run, s = store
    s.LIST_CHUNK = chunk  # pieces end inside groups of tasks created at the same millisecond
    for i in range(13):
        run(s.put_task(TaskRecord(uuid=f"t{12 - i:02d}", owner="alice", created_ms=100 + (12 - i) // 3,
                                  stage=Stage.QUEUED)))
    every = [f"t{i:02d}" for i in range(13)]
    assert run(s.listed_uuids("alice")) == every
    for offset in range(0, 14):
        assert run(s.listed_uuids("alice", offset=offset)) == every[offset:], offset
        for limit in (1, 2, 4, 7, 20):
            assert run(s.listed_uuids("alice", offset=offset, limit=limit)) == every[offset:offset + limit]


@pytest.mark.parametrize("removed", [1, 2])  # the last one read before the pause, or one not read yet
def test_a_task_removed_between_two_pieces_of_a_listing_shifts_nothing(store, monkeypatch, removed: int):
    run, s = store
    s.LIST_CHUNK = 2
    for i in range(6):
        run(s.put_task(TaskRecord(uuid=f"t{i}", owner="alice", created_ms=100 + i // 2, stage=Stage.QUEUED)))
    real_sleep, paused = asyncio.sleep, []

    async def remove_once(delay: float) -> None:  # what another request does while the listing waits
        if not paused:
            paused.append(True)
            await s.delete_task(f"t{removed}")
        await real_sleep(delay)

    monkeypatch.setattr(asyncio, "sleep", remove_once)
    listed = run(s.listed_uuids("alice"))
    assert paused and listed == [f"t{i}" for i in range(6) if i < 2 or i != removed]  # t0, t1 read before


def test_ghosts_are_kept_per_node_until_dropped_and_outlive_the_task(store):
    run, s = store
    run(s.add_ghost("n1", "a"))
    run(s.add_ghost("n1", "b"))
    run(s.add_ghost("n1", "a"))
    run(s.add_ghost("n2", "c"))
    run(s.put_task(TaskRecord(uuid="a")))
    run(s.delete_task("a"))  # the client removed it: it may still run on n1, so the ghost stays
    assert run(s.ghosts("n1")) == ["a", "b"] and run(s.ghosts("n2")) == ["c"]
    assert run(s.ghost_nodes()) == {"n1", "n2"}
    run(s.drop_ghost("n1", "a"))
    run(s.drop_ghost("n1", "zzz"))
    assert run(s.ghosts("n1")) == ["b"]
    run(s.drop_ghost("n1", "b"))
    assert run(s.ghosts("n1")) == [] and run(s.ghost_nodes()) == {"n2"}
    run(s.drop_ghosts("n2"))
    assert run(s.ghost_nodes()) == set() and run(s.ghosts("n2")) == []


OLD_RECORDS = [  # as a relay from before the indexes wrote them
    TaskRecord(uuid="run", owner="alice", created_ms=3, stage=Stage.ON_NODE, node_id="n1"),
    TaskRecord(uuid="sent", owner="alice", created_ms=2, stage=Stage.DISPATCHING, node_id="n2"),
    TaskRecord(uuid="end", owner="alice", created_ms=1, stage=Stage.ON_NODE, node_id="n1", ended_ms=7),
    TaskRecord(uuid="up", owner="alice", created_ms=0),
    TaskRecord(uuid="bob", owner="bob", created_ms=4, stage=Stage.FAILED, ended_ms=8),
]


def write_old_sqlite(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE tasks (uuid TEXT PRIMARY KEY, owner TEXT, stage TEXT, created INTEGER, data TEXT);
        CREATE INDEX tasks_owner ON tasks(owner);
        CREATE INDEX tasks_stage ON tasks(stage);""")
    db.executemany("INSERT INTO tasks VALUES (?, ?, ?, ?, ?)",
                   [(t.uuid, t.owner, t.stage.value, t.created_ms, json.dumps(t.to_json())) for t in OLD_RECORDS])
    db.commit()
    db.close()


def write_old_redis(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    for t in OLD_RECORDS:
        client.set(f"{prefix}task:{t.uuid}", json.dumps(t.to_json()))
        client.zadd(f"{prefix}stage:{t.stage.value}", {t.uuid: t.created_ms})
        client.zadd(f"{prefix}owner:{t.owner}", {t.uuid: t.created_ms})
    client.hset(f"{prefix}resv:n9", "held", json.dumps([1000, None]))  # found by SCAN before, by a set now
    client.set(f"{prefix}nodeinfo:n9", json.dumps({"online": True}))
    client.close()


def test_a_store_from_before_the_indexes_is_indexed_when_opened(tmp_path, redis_url):
    write_old_sqlite(tmp_path / "old.sqlite3")
    write_old_redis(redis_url, "old:")
    for backend in (SQLiteStore(tmp_path / "old.sqlite3"), RedisStore(redis_url, prefix="old:")):
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(backend.open())
            run = loop.run_until_complete
            assert [t.uuid for t in run(backend.open_tasks_on("n1"))] == ["run"], backend
            assert [t.uuid for t in run(backend.open_tasks_on("n2"))] == ["sent"], backend
            assert run(backend.listed_uuids("alice")) == ["end", "sent", "run"], backend
            assert run(backend.listed_uuids("bob")) == ["bob"], backend
            assert run(backend.get_task("run")) == OLD_RECORDS[0]
            if isinstance(backend, RedisStore):
                assert run(backend.reservations()) == {"n9": {"held": (1000, None)}}
                assert run(backend.node_infos()) == {"n9": {"online": True}}
            assert run(backend.query_uuids("alice", ListQuery(statuses=(10,), sort="created", desc=True))) == [
                "run", "sent", "end"], backend  # (on a node with no info learned: 10)
            task = run(backend.get_task("run"))  # and kept in step from then on
            task.ended_ms = 9
            run(backend.put_task(task))
            assert run(backend.nodes_with_open_tasks()) == {"n2"}, backend
            run(backend.close())
            run(backend.open())  # opened again: nothing to do twice
            assert run(backend.nodes_with_open_tasks()) == {"n2"}, backend
            run(backend.close())
        finally:
            loop.close()


def test_the_listing_indexes_follow_status_changes_moves_and_deletes(store):
    """`query_uuids` reads each task's last known status, images, processing time and name from the indexes: a
    record written again (a status learned, the task canceled in the relay, requeued) moves in them, a task
    deleted or never committed is never in them."""
    run, s = store

    def on_node(uuid: str, created: int, code: int | None, seconds: int = 0, name: str = "") -> TaskRecord:
        info = None if code is None else {"status": {"code": code}, "processingTime": seconds * 1000,
                                          "imagesCount": created}
        return TaskRecord(uuid=uuid, owner="alice", created_ms=created, stage=Stage.ON_NODE, node_id="n1",
                          last_info=info, name=name or None, image_count=created)

    tasks = [on_node("a", 1, 40, 30, "North A"), on_node("b", 2, 20, 5, "south"), on_node("c", 3, None),
             TaskRecord(uuid="d", owner="alice", created_ms=4, stage=Stage.QUEUED, name="north d"),
             TaskRecord(uuid="e", owner="alice", created_ms=5, stage=Stage.CANCELED),
             TaskRecord(uuid="f", owner="alice", created_ms=6, stage=Stage.FAILED),
             TaskRecord(uuid="g", owner="alice", created_ms=7, name="north upload"),  # never committed
             on_node("h", 8, 40, 60), TaskRecord(uuid="x", owner="bob", created_ms=1, stage=Stage.CANCELED)]
    for task in tasks:
        run(s.put_task(task))

    def q(**kw) -> list[str]:
        offset, limit = kw.pop("offset", 0), kw.pop("limit", None)
        return run(s.query_uuids("alice", ListQuery(**kw), offset=offset, limit=limit))

    assert q() == ["a", "b", "c", "d", "e", "f", "h"]
    assert q(statuses=(40,), desc=True) == ["h", "a"]
    assert q(statuses=(10,)) == ["c", "d"] and q(statuses=(50, 30)) == ["e", "f"]
    assert q(statuses=(40, 10), desc=True, limit=2, offset=1) == ["d", "c"]
    assert q(name="north") == ["a", "d"]
    assert q(min_duration=5000, max_duration=30000) == ["a", "b"]
    assert q(max_duration=0) == ["c", "d", "e", "f"]  # (-1: not started)
    assert q(created_after=2, created_before=5) == ["b", "c", "d"]
    assert q(sort="status") == ["c", "d", "b", "f", "a", "h", "e"]
    assert q(sort="duration", desc=True) == ["h", "a", "b", "f", "e", "d", "c"]
    assert q(sort="images", desc=True, limit=4) == ["h", "c", "b", "a"]  # (d, e, f: 0 images)

    b = run(s.get_task("b"))
    b.last_info = {"status": {"code": 40}, "processingTime": 90_000}
    run(s.put_task(b))
    run(s.put_task(TaskRecord(uuid="d", owner="alice", created_ms=4, stage=Stage.CANCELED, name="north d")))
    run(s.delete_task("h"))
    assert q(statuses=(40,)) == ["a", "b"] and q(statuses=(20,)) == [] and q(statuses=(50,)) == ["d", "e"]
    assert q(sort="duration", desc=True, limit=1) == ["b"]
    assert run(s.query_uuids("bob", ListQuery(statuses=(50,)))) == ["x"]
