"""One contract, two backends: the SQLite store and the Redis store behave the same (the `store` fixture,
in tests/conftest.py, gives each test both)."""
from __future__ import annotations

from proxy.models import NodeRecord, Stage, TaskRecord, UserRecord


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
