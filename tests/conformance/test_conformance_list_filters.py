"""`/task/list`'s filters and orders (`status`, `sort`, ...), an extension of its paging (differences.py,
`list-paging`): a real NodeODX ignores them and answers its whole list; the relay answers the filtered, ordered
list, and refuses a bad value with HTTP 400 naming the parameter."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conformance.differences import difference
from tests.conformance.sides import Cluster

pytestmark = pytest.mark.slow


@difference("list-paging")
def test_the_task_list_filters_and_sorts_on_the_relay_only(cluster: Cluster, sample_images: list[Path]) -> None:
    uuids = [cluster.both(lambda side, i=i: side.submit(sample_images[:2], {"name": f"filtered {i}"}))
             for i in range(2)]
    for pair in uuids:
        cluster.each(lambda side, uuid: side.wait(uuid), pair)
    whole = cluster.both(lambda side: side.get("/task/list").json())
    newest = cluster.both(lambda side: side.get("/task/list", status="40", sort="created.desc", limit=1).json())
    assert newest[0] == whole[0], "NodeODX ignores the filters and the order"
    assert newest[1] == [{"uuid": uuids[1][1]}], newest[1]
    named = cluster.both(lambda side: side.get("/task/list", name="FILTERED 0", status="completed").json())
    assert named[0] == whole[0] and named[1] == [{"uuid": uuids[0][1]}]
    refused = cluster.both(lambda side: side.get("/task/list", sort="size.desc"))
    assert refused[0].status_code == 200 and refused[0].json() == whole[0]
    assert refused[1].status_code == 400 and refused[1].json()["error"].startswith("sort must be")
