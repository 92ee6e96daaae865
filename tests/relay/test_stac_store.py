"""The store's result facts, on SQLite and Redis alike: the STAC search's bbox and datetime tests (open ends, the
antimeridian), its order and cursor, owners apart, only completed tasks, facts of an earlier run dropped when a task
completes again, the backfill's due list, and a removed task's facts gone with it. No thumbnail bytes in the store
(they live in the results store): a store from when they were kept there drops them when it is opened."""
from __future__ import annotations

import base64
import os
import uuid as uuids

from proxy.models import Stage, TaskRecord
from proxy.store import FactsQuery

DAY = 86_400_000


def new_owner() -> str:
    """An owner of this test alone (the Redis store's key prefix may repeat from one test to the next)."""
    return f"owner-{uuids.uuid4()}"


def completed(owner: str, created: int = 1_000) -> TaskRecord:
    return TaskRecord(uuid=str(uuids.uuid4()), owner=owner, stage=Stage.ON_NODE, node_id="n", created_ms=created,
                      last_info={"status": {"code": 40}})


def facts(west: float, south: float, east: float, north: float, start: int, end: int | None = None) -> dict:
    return {"bbox": [west, south, east, north], "start_ms": start, "end_ms": start if end is None else end,
            "geometry": {"type": "Point", "coordinates": [west, south]}, "missing": []}


def test_search_by_bbox_datetime_ids_and_pages(store) -> None:
    run, backend = store
    owner, owner_b = new_owner(), new_owner()
    berlin, tokyo, fiji, other = completed(owner), completed(owner), completed(owner), completed(owner_b)
    running = TaskRecord(uuid=str(uuids.uuid4()), owner=owner, stage=Stage.ON_NODE, node_id="n",
                         last_info={"status": {"code": 20}})
    for task in (berlin, tokyo, fiji, other, running):
        run(backend.put_task(task))
    run(backend.put_facts(berlin.uuid, owner, facts(13.3, 52.4, 13.5, 52.6, 10 * DAY, 10 * DAY + 600_000)))
    run(backend.put_facts(tokyo.uuid, owner, facts(139.6, 35.6, 139.8, 35.8, 20 * DAY)))
    run(backend.put_facts(fiji.uuid, owner, facts(179.9, -17.0, 179.95, -16.9, 30 * DAY)))
    run(backend.put_facts(other.uuid, owner_b, facts(13.3, 52.4, 13.5, 52.6, 10 * DAY)))
    run(backend.put_facts(running.uuid, owner, facts(13.3, 52.4, 13.5, 52.6, 10 * DAY)))  # restarted since

    def found(limit: int = 10, **query) -> list[str]:
        return [u for u, _ in run(backend.search_facts(owner, FactsQuery(**query), limit))]

    assert found() == [fiji.uuid, tokyo.uuid, berlin.uuid]  # newest capture first; b's and the running one apart
    assert found(bbox=(13.0, 52.0, 14.0, 53.0)) == [berlin.uuid]
    assert found(bbox=(13.5, 52.6, 13.6, 52.7)) == [berlin.uuid]  # touching counts
    assert found(bbox=(13.51, 52.0, 14.0, 53.0)) == []
    assert found(bbox=(179.0, -18.0, -179.0, -16.0)) == [fiji.uuid]  # across the antimeridian
    assert found(start_ms=10 * DAY + 300_000, end_ms=10 * DAY + 300_000) == [berlin.uuid]  # within the flight
    assert found(start_ms=15 * DAY) == [fiji.uuid, tokyo.uuid]
    assert found(end_ms=15 * DAY) == [berlin.uuid]
    assert found(start_ms=11 * DAY, end_ms=19 * DAY) == []
    assert found(ids=(tokyo.uuid, other.uuid)) == [tokyo.uuid]
    first = found(limit=2)
    last = run(backend.search_facts(owner, FactsQuery(), 2))[-1]
    assert found(after=(last[1]["start_ms"], last[0])) == [berlin.uuid] and first == [fiji.uuid, tokyo.uuid]
    assert [u for u, _ in run(backend.search_facts(owner_b, FactsQuery(), 10))] == [other.uuid]
    extent = run(backend.facts_extent(owner))
    assert extent["bbox"][0] <= 13.3 and extent["bbox"][2] >= 179.95 and extent["start_ms"] <= 10 * DAY
    assert run(backend.facts_extent("nobody")) is None
    assert run(backend.get_facts(berlin.uuid))["bbox"] == [13.3, 52.4, 13.5, 52.6]

    run(backend.delete_task(berlin.uuid))
    assert run(backend.get_facts(berlin.uuid)) is None
    assert berlin.uuid not in found()


def test_due_facts_retry_and_completing_again(store) -> None:
    run, backend = store
    owner = new_owner()
    task = completed(owner)
    run(backend.put_task(task))
    run(backend.mark_facts_due(task.uuid))
    assert run(backend.due_facts(now=1.0, limit=10)) == [task.uuid]
    assert run(backend.retry_facts(task.uuid, now=100.0, delay=60.0)) == 1
    assert run(backend.due_facts(now=159.0, limit=10)) == []
    assert run(backend.due_facts(now=160.0, limit=10)) == [task.uuid]
    assert run(backend.retry_facts(task.uuid, now=200.0, delay=60.0)) == 2  # the wait doubles
    assert run(backend.due_facts(now=319.0, limit=10)) == []
    run(backend.put_facts(task.uuid, owner, facts(1, 1, 2, 2, DAY)))
    assert run(backend.due_facts(now=1e12, limit=10)) == []  # described: no longer due
    run(backend.mark_facts_due(task.uuid))  # completed again (a restart): the old run's facts go
    assert run(backend.get_facts(task.uuid)) is None
    assert run(backend.search_facts(owner, FactsQuery(), 10)) == []
    assert run(backend.due_facts(now=0.0, limit=10)) == [task.uuid]
    run(backend.delete_task(task.uuid))
    assert run(backend.due_facts(now=1e12, limit=10)) == []


def test_a_search_walks_past_many_non_matching_items(store) -> None:
    """Hits far down the order, past several of Redis's search calls (their budget made small here), one of
    them restarted since it was described: the page still holds the two completed ones, oldest last."""
    run, backend = store
    owner = new_owner()
    if hasattr(backend, "SEARCH_BUDGET"):
        backend.SEARCH_BUDGET = 300
        backend.GEO_CANDIDATES = 2  # the three items near Berlin are too many: the search walks by time
    else:
        backend.RTREE_CANDIDATES = 2  # the same on SQLite: the index by owner and time, not the R*Tree
    tasks = [completed(owner) for _ in range(900)]
    for index, task in enumerate(tasks):
        near = index in (3, 5, 7)  # the oldest but a few: far down the newest-first order
        run(backend.put_task(task))
        run(backend.put_facts(task.uuid, owner, facts(13.3 if near else -70.0, 52.4 if near else -30.0,
                                                    13.5 if near else -69.9, 52.6 if near else -29.9,
                                                    (index + 1) * 1000)))
    tasks[5].last_info = {"status": {"code": 20}}  # restarted: running again
    run(backend.put_task(tasks[5]))
    hits = run(backend.search_facts(owner, FactsQuery(bbox=(13.0, 52.0, 14.0, 53.0)), 2))
    assert [uuid for uuid, _ in hits] == [tasks[7].uuid, tasks[3].uuid]
    assert run(backend.search_facts(owner, FactsQuery(bbox=(13.0, 52.0, 14.0, 53.0)), 1))[0][0] == tasks[7].uuid
    page = run(backend.search_facts(owner, FactsQuery(after=(8000, tasks[7].uuid)), 3))
    assert [uuid for uuid, _ in page] == [tasks[6].uuid, tasks[4].uuid, tasks[3].uuid]


def test_a_large_footprint_is_found_by_a_box_far_from_its_centre(store) -> None:
    run, backend = store
    owner = new_owner()
    wide, small = completed(owner), completed(owner)
    for task in (wide, small):
        run(backend.put_task(task))
    run(backend.put_facts(wide.uuid, owner, facts(10.0, 50.0, 14.0, 53.0, DAY)))  # centre 12, 51.5
    run(backend.put_facts(small.uuid, owner, facts(13.95, 52.95, 13.96, 52.96, DAY)))
    hits = run(backend.search_facts(owner, FactsQuery(bbox=(13.9, 52.9, 14.5, 53.5)), 10))
    assert {uuid for uuid, _ in hits} == {wide.uuid, small.uuid}
    assert run(backend.search_facts(owner, FactsQuery(bbox=(14.1, 53.1, 14.5, 53.5)), 10)) == []
    polar = completed(owner)
    run(backend.put_task(polar))
    run(backend.put_facts(polar.uuid, owner, facts(10.0, 88.0, 10.1, 88.1, DAY)))  # past Redis's geo limit
    assert [u for u, _ in run(backend.search_facts(owner, FactsQuery(bbox=(9.9, 87.9, 10.2, 88.05)), 10))] == [
        polar.uuid]
    assert run(backend.search_facts(owner, FactsQuery(bbox=(9.9, 88.2, 10.2, 88.3)), 10)) == []


OLD_THUMBNAIL = os.urandom(100_000)  # what a relay before the move kept per task (a devnode thumbnail: ~100 KB)


def facts_bytes(run, backend, names: list[str]) -> int:
    """What the store spends on result facts: SQLite, the pages of its `facts` table; Redis, the memory of the keys
    that hold one of `names` (the tasks' uuids and their owner: the prefix may repeat from one test to the next)."""
    if hasattr(backend, "db"):
        (size,), = backend.db.execute("SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name = 'facts'")
        return size

    async def used() -> int:
        keys = {key for name in names async for key in backend.r.scan_iter(match=f"{backend.prefix}*{name}*")}
        return sum([await backend.r.memory_usage(key) or 0 for key in keys])
    return run(used())


def test_a_store_with_thumbnails_from_before_drops_them_when_opened(store) -> None:
    """SQLite from before the move has a `thumbnail` column in `facts`, Redis at schema 5 a thumb:<uuid> key per
    task (base64): opened again, those bytes are gone, the facts and their search are as they were."""
    run, backend = store
    owner = new_owner()
    tasks = [completed(owner, created=i) for i in range(3)]
    for task in tasks:
        run(backend.put_task(task))
        run(backend.put_facts(task.uuid, owner, facts(13.3, 52.4, 13.5, 52.6, DAY)))
    names = [owner, *(task.uuid for task in tasks)]
    described = facts_bytes(run, backend, names)
    if hasattr(backend, "db"):
        backend.db.execute("ALTER TABLE facts ADD COLUMN thumbnail BLOB")
        for task in tasks:
            backend.db.execute("UPDATE facts SET thumbnail = ? WHERE uuid = ?", (OLD_THUMBNAIL, task.uuid))
    else:
        for task in tasks:
            run(backend.r.set(backend.k("thumb", task.uuid), base64.b64encode(OLD_THUMBNAIL)))
        run(backend.r.set(backend.k("schema"), "5"))
    assert facts_bytes(run, backend, names) > described + 3 * len(OLD_THUMBNAIL)

    run(backend.close())
    run(backend.open())
    assert described < 3 * 8192 and facts_bytes(run, backend, names) < 3 * 8192  # a few KB a task, as before
    if hasattr(backend, "db"):
        assert "thumbnail" not in {row[1] for row in backend.db.execute("PRAGMA table_info(facts)")}
    else:
        assert run(backend.r.get(backend.k("schema"))) == "6"
        assert not run(backend.r.exists(*[backend.k("thumb", task.uuid) for task in tasks]))
    assert run(backend.get_facts(tasks[0].uuid))["bbox"] == [13.3, 52.4, 13.5, 52.6]
    assert {u for u, _ in run(backend.search_facts(owner, FactsQuery(bbox=(13.0, 52.0, 14.0, 53.0)), 10))} == {
        task.uuid for task in tasks}
    run(backend.put_facts(tasks[0].uuid, owner, facts(1, 1, 2, 2, DAY)))  # and facts are written as before
    assert run(backend.get_facts(tasks[0].uuid))["bbox"] == [1, 1, 2, 2]
