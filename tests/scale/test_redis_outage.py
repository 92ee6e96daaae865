"""Redis going away: every replica answers a clear 503 while it is gone, and recovers by itself, with no
task lost, once it is back (restarted on the same port with its append-only file)."""
from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.relay.relay_helpers import COMPLETED, QUEUED, RUNNING, get_json, submit, task_info, wait_for, wait_status

pytestmark = pytest.mark.slow


def answers_503(response: requests.Response) -> bool:
    return (response.status_code == 503 and response.headers["Content-Type"].startswith("application/json")
            and "Redis" in response.json()["error"])


def test_redis_away_is_a_clear_503_and_the_relay_recovers_with_every_task(cluster_factory,
                                                                          sample_images: list[Path]) -> None:
    cluster = cluster_factory([{"slots": 1, "seconds_per_image": 0.4}])
    first, second = cluster.replicas
    done = submit(first, sample_images[:2])
    assert wait_status(second, done)["status"]["code"] == COMPLETED
    slow = submit(second, sample_images[:6])  # runs through the outage, and may end during it
    wait_status(first, slow, [RUNNING])
    waiting = submit(first, sample_images[:2])  # the only slot is busy: it waits in the relay's queue
    assert task_info(second, waiting)["status"]["code"] == QUEUED

    cluster.kill_redis()
    for replica in (first, second):
        for path in ("/info", f"/task/{waiting}/info"):
            response = requests.get(replica.api(path), timeout=15)
            assert answers_503(response), (path, response.status_code, response.text)
        assert answers_503(requests.post(replica.api("/task/new/init"), data={}, timeout=15))
    assert first.running and second.running

    cluster.restart_redis()
    for replica in (first, second):  # by itself: nobody restarts the replicas
        wait_for(lambda r=replica: requests.get(r.api("/task/list"), timeout=10).status_code == 200, timeout=20,
                 what="the replica to answer again")
        assert {t["uuid"] for t in get_json(replica, "/task/list")} == {done, slow, waiting}
    for uuid in (done, slow, waiting):
        assert wait_status(first, uuid, timeout=40)["status"]["code"] == COMPLETED
        assert requests.get(second.api(f"/task/{uuid}/download/all.zip"), timeout=30).status_code == 200
    after = submit(second, sample_images[:2])
    assert wait_status(first, after)["status"]["code"] == COMPLETED
