"""A task's life after commit, directly on NodeODX and through the relay: `/task/cancel`, `/task/remove`,
`/task/restart` (with and without `options`), with url-encoded and JSON bodies as NodeODX reads them, on
running, queued, canceled and completed tasks; and their answers for missing, unknown and bad uuids."""
from __future__ import annotations

import json
import uuid as uuidlib
from pathlib import Path

import pytest

from tests.conformance.differences import difference
from tests.conformance.sides import (
    CANCELED,
    COMPLETED,
    QUEUED,
    RUNNING,
    Cluster,
    Mismatches,
    Side,
    answer,
    assert_same_info,
    json_of,
    multipart,
    option_map,
)

pytestmark = pytest.mark.slow

NEW_OPTIONS = [{"name": "dsm", "value": True}, {"name": "orthophoto-resolution", "value": 12}]
CALLS = ("/task/cancel", "/task/remove", "/task/restart")


def submit_and_wait(side: Side, images: list[Path], name: str, codes=(RUNNING,)) -> str:
    uuid = side.submit(images, {"name": name})
    side.wait(uuid, codes)
    return uuid


@pytest.mark.parametrize("as_json", [False, True], ids=["url-encoded", "json"])
def test_missing_unknown_and_bad_uuids(cluster: Cluster, as_json: bool) -> None:
    unknown = str(uuidlib.uuid4())
    for path in CALLS:
        for body, expected in (({}, {"error": "uuid param missing."}),
                               ({"uuid": ""}, {"error": "uuid param missing."}),
                               ({"uuid": unknown}, {"success": False, "error": f"{unknown} not found"}),
                               ({"uuid": "not-a-uuid"}, {"success": False, "error": "not-a-uuid not found"})):
            sent = {"json": body} if as_json else {"data": body}
            direct, relay = cluster.both(lambda side: answer(side.post(path, **sent)))
            assert direct == (200, "application/json", expected), (path, body, direct)
            assert relay == direct, f"POST {path} {body}: direct {direct}, relay {relay}"


def test_multipart_bodies_are_not_read(cluster: Cluster, sample_images: list[Path]) -> None:
    """NodeODX reads cancel/remove/restart bodies url-encoded or JSON only: a multipart uuid is no uuid."""
    uuids = cluster.both(lambda side: side.submit(sample_images[:3], {"name": "multipart commands"}))
    cluster.each(Side.wait, uuids)
    seen = Mismatches()
    for path in CALLS:
        direct, relay = cluster.each(lambda side, uuid: answer(side.post(path, files=multipart({"uuid": uuid}))), uuids)
        assert direct == (200, "application/json", {"error": "uuid param missing."}), (path, direct)
        seen.same(f"POST {path} (multipart uuid of a completed task)", direct, relay)
    infos = cluster.each(Side.info, uuids)  # nothing was done to the task
    seen.same("the task's info after them", infos[0].get("status"), infos[1].get("status"))
    seen.check()


def test_cancel_then_restart_with_and_without_options(slow_cluster: Cluster, sample_images: list[Path]) -> None:
    cluster = slow_cluster
    uuids = cluster.both(lambda side: submit_and_wait(side, sample_images[:3], "cancel me"))
    assert cluster.each(lambda side, uuid: answer(side.get(f"/task/{uuid}/download/all.zip")), uuids) == \
        ((200, "application/json", {"error": "Asset not ready"}),) * 2
    assert cluster.each(lambda side, uuid: side.task_post("/task/restart", {"uuid": uuid}), uuids) == \
        ({"success": False, "error": "Task cannot be restarted"},) * 2  # running

    assert cluster.each(lambda side, uuid: side.task_post("/task/cancel", {"uuid": uuid}), uuids) == \
        ({"success": True},) * 2
    direct, relay = cluster.each(Side.info, uuids)
    assert direct["status"]["code"] == CANCELED
    assert_same_info(direct, relay)
    assert cluster.each(lambda side, uuid: side.task_post("/task/cancel", {"uuid": uuid}, as_json=True), uuids) == \
        ({"success": True},) * 2  # canceling a canceled task is no error on NodeODX

    # restart with options, in a JSON body (options as a list, as JSON clients send them)
    restarted = cluster.each(lambda side, uuid: side.task_post("/task/restart", {"uuid": uuid, "options": NEW_OPTIONS},
                                                               as_json=True), uuids)
    assert restarted == ({"success": True},) * 2
    direct, relay = cluster.each(Side.wait, uuids)
    assert direct["status"]["code"] == COMPLETED
    assert_same_info(direct, relay)
    assert option_map(relay["options"])["orthophoto-resolution"] == 12

    # restart without options, url-encoded: the options stay
    assert cluster.each(lambda side, uuid: side.task_post("/task/restart", {"uuid": uuid}), uuids) == \
        ({"success": True},) * 2
    direct, relay = cluster.each(Side.wait, uuids)
    assert direct["status"]["code"] == COMPLETED
    assert_same_info(direct, relay)
    assert option_map(direct["options"])["orthophoto-resolution"] == 12


def test_restart_with_options_url_encoded_and_invalid(cluster: Cluster, sample_images: list[Path]) -> None:
    uuids = cluster.both(lambda side: side.submit(sample_images[:3], {"name": "restart me"}))
    cluster.each(Side.wait, uuids)
    for options in (json.dumps([{"name": "feature-quality", "value": "nonsense"}]), "not JSON"):
        direct, relay = cluster.each(lambda side, uuid: side.task_post("/task/restart",
                                                                       {"uuid": uuid, "options": options}),
                                     uuids)
        assert set(relay) == set(direct) == {"error"}, (options, direct, relay)  # worded apart: options-checked-early
    assert cluster.each(Side.info, uuids)[1]["status"]["code"] == COMPLETED  # a refused restart changes nothing
    restarted = cluster.each(lambda side, uuid: side.task_post(
        "/task/restart", {"uuid": uuid, "options": json.dumps([{"name": "orthophoto-resolution", "value": "9"}])}),
        uuids)
    assert restarted == ({"success": True},) * 2
    direct, relay = cluster.each(Side.wait, uuids)
    assert_same_info(direct, relay)
    assert option_map(direct["options"])["orthophoto-resolution"] == 9


def test_remove(cluster: Cluster, sample_images: list[Path]) -> None:
    done = cluster.both(lambda side: side.submit(sample_images[:3], {"name": "remove me when done"}))
    cluster.each(Side.wait, done)
    running = cluster.both(lambda side: side.submit(sample_images[:3], {"name": "remove me while running"}))
    for uuids in (done, running):
        assert cluster.each(lambda side, uuid: side.task_post("/task/remove", {"uuid": uuid}), uuids) == \
            ({"success": True},) * 2
        for path in ("/task/{}/info", "/task/{}/output", "/task/{}/download/all.zip"):
            gone = cluster.each(lambda side, uuid: answer(side.get(path.format(uuid))), uuids)
            assert gone == tuple((200, "application/json", {"error": f"{uuid} not found"}) for uuid in uuids), path
        listed = cluster.both(lambda side: json_of(side.get("/task/list")))
        assert {"uuid": uuids[0]} not in listed[0] and {"uuid": uuids[1]} not in listed[1]
        again = cluster.each(lambda side, uuid: side.task_post("/task/remove", {"uuid": uuid}, as_json=True), uuids)
        assert again == tuple({"success": False, "error": f"{uuid} not found"} for uuid in uuids)


@difference("restart-in-relay-queue")
def test_queued_task(slow_cluster: Cluster, sample_images: list[Path]) -> None:
    """Both sides have 2 slots: with 2 tasks running, a third waits (on the node, or in the relay's queue);
    it must look, cancel and restart the same either way. Every difference is collected, then reported."""
    cluster, seen = slow_cluster, Mismatches()
    cluster.both(lambda side: side.idle())
    blockers = [cluster.both(lambda side: side.submit(sample_images[:3], {"name": f"blocker {n}"})) for n in (1, 2)]
    uuids = cluster.both(lambda side: side.submit(sample_images[:4], {"name": "waits its turn"}))
    direct, relay = cluster.each(lambda side, uuid: side.wait(uuid, (QUEUED,), timeout=5), uuids)
    assert direct["processingTime"] == -1 and direct["progress"] == 0
    seen.same_info("info while queued", direct, relay)
    answers = cluster.each(lambda side, uuid: {
        "output": answer(side.get(f"/task/{uuid}/output")),
        "download": answer(side.get(f"/task/{uuid}/download/all.zip")),
        "restart": side.task_post("/task/restart", {"uuid": uuid}),
        "listed": {"uuid": uuid} in json_of(side.get("/task/list")),
        "taskQueueCount": json_of(side.get("/info"))["taskQueueCount"]}, uuids)
    assert answers[0] == {"output": (200, "application/json", []),
                          "download": (200, "application/json", {"error": "Asset not ready"}),
                          "restart": {"success": False, "error": "Task cannot be restarted"}, "listed": True,
                          "taskQueueCount": 3}
    assert answers[1]["restart"] == {"success": True}  # the intended difference: still in the relay's queue
    for key in answers[0].keys() - {"restart"}:
        seen.same(f"{key} while queued", answers[0][key], answers[1][key])

    canceled = cluster.each(lambda side, uuid: side.task_post("/task/cancel", {"uuid": uuid}), uuids)
    assert canceled[0] == {"success": True}
    seen.same("cancel while queued", *canceled)
    direct, relay = cluster.each(Side.info, uuids)
    assert direct["status"]["code"] == CANCELED
    seen.same_info("info once canceled", direct, relay)
    restarted = cluster.each(lambda side, uuid: side.task_post(
        "/task/restart", {"uuid": uuid, "options": json.dumps(NEW_OPTIONS)}), uuids)
    assert restarted[0] == {"success": True}
    seen.same("restart with options", *restarted)
    direct, relay = cluster.each(Side.wait, uuids)
    assert direct["status"]["code"] == COMPLETED and option_map(direct["options"])["orthophoto-resolution"] == 12
    seen.same_info("info once restarted with options and done", direct, relay)
    for pair in blockers:
        cluster.each(Side.wait, pair)
    seen.check()
