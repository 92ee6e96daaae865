"""`/task/cancel` of a task that has already completed: a real NodeODX turns it into a canceled task (status
50) though its outputs are still there; the relay refuses and leaves it completed (differences.py). Side by
side against a real NodeODX."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conformance.differences import difference
from tests.conformance.sides import CANCELED, COMPLETED, Cluster, Side, answer

pytestmark = pytest.mark.slow


@difference("cancel-ended-refused")
def test_cancel_of_a_completed_task(cluster: Cluster, sample_images: list[Path]) -> None:
    uuids = cluster.both(lambda side: side.submit(sample_images[:3], {"name": "cancel me when done"}))
    assert [info["status"]["code"] for info in cluster.each(Side.wait, uuids)] == [COMPLETED, COMPLETED]
    direct, relay = cluster.each(lambda side, uuid: side.task_post("/task/cancel", {"uuid": uuid}), uuids)
    assert direct == {"success": True}
    assert relay["success"] is False and "has completed" in relay["error"] and uuids[1] in relay["error"], relay
    direct, relay = cluster.each(Side.info, uuids)
    assert direct["status"]["code"] == CANCELED  # NodeODX: the finished task now reads as canceled
    assert relay["status"]["code"] == COMPLETED  # the relay: nothing changed
    status, kind, _ = answer(cluster.relay.get(f"/task/{uuids[1]}/download/all.zip"))
    assert (status, kind) == (200, "application/zip")
    again = cluster.relay.task_post("/task/cancel", {"uuid": uuids[1]}, as_json=True)
    assert again["success"] is False and "has completed" in again["error"]
