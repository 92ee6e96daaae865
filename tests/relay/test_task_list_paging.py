"""`/task/list` from the store's index: without parameters the whole list as NodeODX answers it (the owner's
committed tasks, oldest first), with `limit` and `offset` one page of it; bad values are refused with 400.
On both stores, with records written into the store before the relay starts, as a relay that has run for
a while holds them."""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from proxy.auth import ANONYMOUS
from proxy.models import Stage, TaskRecord
from proxy.routes import uuid_objects
from testkit.relay import Relay
from tests.relay.relay_helpers import relay_holding

TASKS = 250


def records() -> list[TaskRecord]:
    """TASKS of the anonymous owner, created two by two at the same millisecond (then ordered by uuid), written
    newest first; another owner's tasks and an upload never committed between them."""
    made = []
    for i in reversed(range(TASKS)):
        stage = (Stage.ON_NODE, Stage.QUEUED, Stage.FAILED, Stage.CANCELED)[i % 4]
        made.append(TaskRecord(uuid=f"{i % 2}{i:07d}-aaaa-4aaa-8aaa-aaaaaaaaaaaa", owner=ANONYMOUS,
                               created_ms=1_000 + i // 2, stage=stage, node_id="n1" if stage == Stage.ON_NODE else None,
                               ended_ms=None if i % 8 else 2_000))
        if i % 50 == 0:
            made.append(TaskRecord(uuid=f"b{i:07d}-bbbb-4bbb-8bbb-bbbbbbbbbbbb", owner="user:bob", created_ms=1_000,
                                   stage=Stage.QUEUED))
            made.append(TaskRecord(uuid=f"c{i:07d}-cccc-4ccc-8ccc-cccccccccccc", owner=ANONYMOUS, created_ms=1_000))
    return made


def listed_order() -> list[str]:
    mine = [t for t in records() if t.owner == ANONYMOUS and t.stage != Stage.UPLOADING]
    return [t.uuid for t in sorted(mine, key=lambda t: (t.created_ms, t.uuid))]


@pytest.fixture(params=["sqlite", "redis"], scope="module")
def relay(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    """A relay (no node needed) whose store already holds `records()`."""
    with relay_holding(request.param, tmp_path_factory.mktemp(f"list-{request.param}"), records()) as started:
        yield started


def get(relay: Relay, **query: Any) -> requests.Response:
    return requests.get(relay.api("/task/list", **query), timeout=30)


def test_without_parameters_the_whole_list_as_nodeodx_answers_it(relay: Relay) -> None:
    response = get(relay)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    assert response.json() == [{"uuid": uuid} for uuid in listed_order()]  # oldest first, ties by uuid


def test_limit_and_offset_answer_one_page_of_that_list(relay: Relay) -> None:
    every = listed_order()
    assert [t["uuid"] for t in get(relay, limit=100).json()] == every[:100]
    pages: list[str] = []
    for offset in range(0, TASKS + 100, 100):
        pages += [t["uuid"] for t in get(relay, limit=100, offset=offset).json()]
    assert pages == every, "the pages, end to end, are the whole list"
    assert [t["uuid"] for t in get(relay, limit=7, offset=13).json()] == every[13:20]
    assert [t["uuid"] for t in get(relay, offset=TASKS - 3).json()] == every[-3:], "from offset to the end"
    assert get(relay, limit=10, offset=TASKS).json() == []
    assert get(relay, limit=5, offset="00010").json() == [{"uuid": u} for u in every[10:15]]
    assert get(relay, limit=10**30).json() == [{"uuid": u} for u in every], "more than there is: all of it"
    assert get(relay, limit=1, offset=10**30).json() == []


@pytest.mark.parametrize(("bad", "query"), [
    ("limit", {"limit": 0}), ("limit", {"limit": -1}), ("limit", {"limit": "ten"}), ("limit", {"limit": ""}),
    ("limit", {"limit": "1e3"}), ("offset", {"offset": -5}), ("offset", {"offset": "1.5"}),
    ("offset", {"limit": 10, "offset": "x"})])
def test_bad_values_are_refused_with_a_clear_error(relay: Relay, bad: str, query: dict[str, Any]) -> None:
    response = get(relay, **query)
    assert response.status_code == 400 and response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error.startswith(f"{bad} must be a whole number of at least"), error


@pytest.mark.parametrize("uuids", [[], ["a"], ["a", "b", "c"], ['x"y', "z"], ['a","b', "c"], ["é", "\\"]])
def test_the_list_is_encoded_as_json_of_uuid_objects_whatever_the_strings(uuids: list[str]) -> None:
    assert json.loads(uuid_objects(uuids)) == [{"uuid": uuid} for uuid in uuids]
