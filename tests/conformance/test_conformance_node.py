"""Node-level endpoints, directly on NodeODX and through the relay: `/info`, `/options`, `/auth/info`,
`/task/list`, and what a token does. Intended differences are in test_conformance_differences.py."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conformance.sides import Cluster, Side, json_of, media_type

pytestmark = pytest.mark.slow

NODEODX_INFO_KEYS = {"version", "taskQueueCount", "totalMemory", "availableMemory", "cpuCores", "maxImages",
                     "maxParallelTasks", "engineVersion", "engine"}


def test_info_keys_types_and_values(cluster: Cluster) -> None:
    direct, relay = cluster.both(lambda side: side.idle())
    assert set(direct) == NODEODX_INFO_KEYS
    assert set(relay) - {"relay"} == set(direct)
    for key in NODEODX_INFO_KEYS:
        assert type(relay[key]) is type(direct[key]), (key, direct[key], relay[key])
    for key in ("version", "engine", "engineVersion", "maxImages", "maxParallelTasks", "taskQueueCount"):
        assert relay[key] == direct[key], (key, direct[key], relay[key])
    assert direct["version"] == "2.3.1"


def test_info_counts_queued_and_running_tasks(cluster: Cluster, sample_images: list[Path]) -> None:
    uuids = cluster.both(lambda side: side.submit(sample_images[:3]))
    busy = cluster.both(lambda side: json_of(side.get("/info"))["taskQueueCount"])
    assert busy == (1, 1), f"taskQueueCount right after a commit: direct {busy[0]}, relay {busy[1]}"
    cluster.each(Side.wait, uuids)
    assert cluster.both(lambda side: side.idle()["taskQueueCount"]) == (0, 0)


def test_options_are_the_nodes_options(cluster: Cluster) -> None:
    direct, relay = cluster.both(lambda side: side.get("/options"))
    expected = (200, "application/json")
    assert (relay.status_code, media_type(relay)) == (direct.status_code, media_type(direct)) == expected
    assert relay.json() == direct.json()
    assert {"name", "type", "value", "domain", "help"} <= set(direct.json()[0])


def test_auth_info_needs_no_token_and_has_the_same_keys(cluster: Cluster) -> None:
    direct, relay = cluster.both(lambda side: json_of(side.get("/auth/info", token="")))
    assert set(relay) == set(direct) == {"message", "loginUrl", "registerUrl"}
    assert relay["loginUrl"] is direct["loginUrl"] is None
    assert relay["registerUrl"] is direct["registerUrl"] is None


def test_task_list_lists_committed_tasks_only(cluster: Cluster, sample_images: list[Path]) -> None:
    pending = cluster.both(lambda side: side.init({"name": "never committed"})["uuid"])
    committed = cluster.both(lambda side: side.submit(sample_images[:3], {"name": "listed"}))
    listed = cluster.both(lambda side: json_of(side.get("/task/list")))
    for side, tasks, mine, not_mine in zip(cluster.sides, listed, committed, pending):
        assert isinstance(tasks, list) and all(isinstance(t, dict) and set(t) == {"uuid"} for t in tasks), (side, tasks)
        assert {"uuid": mine} in tasks, side
        assert {"uuid": not_mine} not in tasks, side
    cluster.each(Side.wait, committed)


def test_the_right_token_works_everywhere(cluster: Cluster) -> None:
    """Each side's own token opens every read-only endpoint (the relay swaps in its nodes' tokens)."""
    for path in ("/info", "/options", "/task/list"):
        for side in cluster.sides:
            body = json_of(side.get(path))
            assert not (isinstance(body, dict) and "error" in body), (side, path, body)
