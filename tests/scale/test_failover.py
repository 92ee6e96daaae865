"""A node dies holding tasks: after `--failover-after` the relay sends them again, from its staged inputs and
under the same uuid, to another node; without the inputs, the task fails and says why."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from testkit.cluster import Cluster
from tests.relay.relay_helpers import (
    COMPLETED,
    FAILED,
    FINAL,
    QUEUED,
    RUNNING,
    post_json,
    submit,
    task_info,
    wait_for,
    wait_status,
)
from tests.scale.scale_helpers import ADMIN, set_locked

pytestmark = pytest.mark.slow


def statuses_until_final(relay, uuid: str, timeout: float = 40) -> list[int]:
    """Every status the client sees, in order, until the task ends (never an error answer)."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = task_info(relay, uuid)
        assert "error" not in info, info
        code = info["status"]["code"]
        if not seen or seen[-1] != code:
            seen.append(code)
        if code in FINAL:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"{uuid} did not end in {timeout} s: {seen}")


def busy_node_then_killed(cluster: Cluster, sample_images: list[Path]) -> tuple[str, str, str]:
    """On the first node (2 slots; the second node locked): `running` runs, so does `unseen` (whose info
    nobody asked yet), and `restarted` (done, then restarted) waits in the node's own queue behind them.
    Then the first node is killed -9 and the second unlocked."""
    doomed, spare = cluster.nodes
    first, second = cluster.replicas
    set_locked(cluster, spare.url, True)
    restarted = submit(first, sample_images[:2])
    assert wait_status(second, restarted)["status"]["code"] == COMPLETED
    if cluster.relay_flags.get("keep_inputs") == 0:  # inputs are let go as soon as their task ends
        wait_for(lambda: not (cluster.staging / restarted).exists(), timeout=5, what="inputs let go")
    running = submit(second, sample_images[:6])
    wait_status(first, running, [RUNNING])
    unseen = submit(first, sample_images[:5])
    # both of the node's slots taken before the restart (asked of the node: nobody asks the relay about `unseen`)
    wait_for(lambda: task_info(doomed, unseen).get("status", {}).get("code") == RUNNING, timeout=20,
             what="the second task running on the node")
    assert post_json(first, "/task/restart", {"uuid": restarted}) == {"success": True}
    assert wait_status(second, restarted, [QUEUED])["status"]["code"] == QUEUED  # queued on the node itself
    assert task_info(doomed, restarted)["status"]["code"] == QUEUED
    set_locked(cluster, spare.url, False)
    doomed.process.kill()
    doomed.process.wait(10)
    return running, restarted, unseen


def test_tasks_of_a_dead_node_are_sent_again_under_the_same_uuid(cluster_factory, sample_images: list[Path]) -> None:
    cluster = cluster_factory([{"seconds_per_image": 1.0, "slots": 2}, {"slots": 3}], admin_token=ADMIN,
                              failover_after=1)
    spare = cluster.nodes[1]
    first, second = cluster.replicas
    running, restarted, unseen = busy_node_then_killed(cluster, sample_images)
    seen = statuses_until_final(second, running)
    assert seen[0] == RUNNING and seen[-1] == COMPLETED
    # back in a queue or running again: never an error (the QUEUED spell can be too short to be polled;
    # that it really moved is checked on the spare node below)
    assert set(seen[1:-1]) <= {QUEUED, RUNNING}, seen
    assert statuses_until_final(first, restarted)[-1] == COMPLETED
    assert statuses_until_final(second, unseen)[-1] == COMPLETED  # waiting, never an error, then done
    for uuid, images in ((running, 6), (restarted, 2), (unseen, 5)):
        on_spare = task_info(spare, uuid)  # the same uuid, on the other node
        assert on_spare["uuid"] == uuid and on_spare["imagesCount"] == images
        assert on_spare["status"]["code"] == COMPLETED
        assert requests.get(first.api(f"/task/{uuid}/download/all.zip"), timeout=30).status_code == 200


def test_without_its_inputs_a_task_of_a_dead_node_fails_and_says_why(cluster_factory,
                                                                    sample_images: list[Path]) -> None:
    cluster = cluster_factory([{"seconds_per_image": 1.0, "slots": 2}, {"slots": 3}], admin_token=ADMIN,
                              failover_after=1, keep_inputs=0)
    first, second = cluster.replicas
    running, restarted, _ = busy_node_then_killed(cluster, sample_images)
    assert statuses_until_final(second, running)[-1] == COMPLETED  # a running task keeps them until it ends
    info = wait_status(first, restarted, [FAILED], timeout=20)
    assert "went offline" in info["status"]["errorMessage"]
    assert "no longer keeps the task's inputs" in info["status"]["errorMessage"]
