"""Two relay replicas on one Redis and one staging folder behave as one relay."""
from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyodx
import pytest
import requests

from tests.relay.relay_helpers import (
    COMPLETED,
    QUEUED,
    Receiver,
    commit,
    get_json,
    init_task,
    submit,
    task_info,
    upload,
    wait_status,
)

pytestmark = pytest.mark.slow


def test_a_task_made_through_one_replica_is_followed_and_downloaded_through_the_other(
        cluster_factory, sample_images: list[Path]) -> None:
    cluster = cluster_factory([{}])
    first, second = cluster.replicas
    uuid = submit(first, sample_images[:3])
    assert {"uuid": uuid} in get_json(second, "/task/list")
    info = wait_status(second, uuid)
    assert info["status"]["code"] == COMPLETED and info["imagesCount"] == 3
    assert any("ODX app finished" in line for line in get_json(second, f"/task/{uuid}/output"))
    whole = requests.get(second.api(f"/task/{uuid}/download/all.zip"), timeout=30)
    assert whole.status_code == 200
    assert requests.get(first.api(f"/task/{uuid}/download/all.zip"), timeout=30).content == whole.content
    ranged = requests.get(second.api(f"/task/{uuid}/download/all.zip"), headers={"Range": "bytes=10-19"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == whole.content[10:20]
    assert requests.get(second.api(f"/task/{uuid}/download/orthophoto.tif"), timeout=30).status_code == 200


def test_an_upload_spread_over_both_replicas_works(cluster_factory, sample_images: list[Path]) -> None:
    """init on one, each file on the other in turn (some at the same moment), commit on the other."""
    cluster = cluster_factory([{}])
    replicas = cluster.replicas
    uuid = init_task(replicas[0])["uuid"]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: upload(replicas[i % 2], uuid, [sample_images[i]]), range(5)))
    assert results == [{"success": True}] * 5
    assert commit(replicas[1], uuid) == {"uuid": uuid}
    info = wait_status(replicas[0], uuid)
    assert info["status"]["code"] == COMPLETED and info["imagesCount"] == 5


def test_pyodx_parallel_uploads_behind_a_round_robin_balancer(cluster_factory, sample_images: list[Path]) -> None:
    cluster = cluster_factory([{}, {}])
    balancer = cluster.balancer
    node = pyodx.Node("127.0.0.1", balancer.port)
    task = node.create_task([str(p) for p in sample_images], parallel_uploads=4)
    assert all(count >= 3 for count in balancer.served.values()) and len(balancer.served) == 2  # both served
    task.wait_for_completion(interval=0.2)
    assert task.info().status.value == COMPLETED and task.info().images_count == len(sample_images)
    folder = Path(task.download_assets(str(cluster.root / "assets")))
    assert (folder / "odm_orthophoto" / "odm_orthophoto.tif").exists()


def test_replicas_placing_at_the_same_moment_never_overbook_a_node(cluster_factory,
                                                                  sample_images: list[Path]) -> None:
    """A 1-slot node and eight tasks committed at once over both replicas: the node holds at most one
    task at any time (its taskQueueCount, watched every 10 ms), the rest wait in the relay's queue."""
    cluster = cluster_factory([{"slots": 1, "seconds_per_image": 0.1}])
    node, replicas = cluster.nodes[0], cluster.replicas
    most, stop = [0], threading.Event()

    def watch() -> None:
        while not stop.is_set():
            most[0] = max(most[0], int(requests.get(node.api("/info"), timeout=5).json()["taskQueueCount"]))
            time.sleep(0.01)

    def one(i: int) -> tuple[str, int]:
        # init, upload and commit each on the next replica, as a round-robin balancer would send them
        uuid = init_task(replicas[i % 2])["uuid"]
        assert upload(replicas[(i + 1) % 2], uuid, sample_images[:2]) == {"success": True}
        assert commit(replicas[i % 2], uuid) == {"uuid": uuid}
        return uuid, task_info(replicas[(i + 1) % 2], uuid)["status"]["code"]

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            submitted = list(pool.map(one, range(8)))
        assert sum(code == QUEUED for _, code in submitted) >= 4  # most wait in the relay's queue
        for uuid, _ in submitted:
            assert wait_status(replicas[0], uuid, timeout=60)["status"]["code"] == COMPLETED
    finally:
        stop.set()
        watcher.join(5)
    assert most[0] == 1, f"the 1-slot node held {most[0]} tasks at once"
    assert len(get_json(node, "/task/list")) == 8  # each task reached the node once


def count_info_requests(log: str) -> int:
    return len(re.findall(r"GET /info \d{3}", log))


def test_node_health_is_checked_once_per_interval_across_replicas(cluster_factory) -> None:
    """The node's own request log: about as many /info calls with two replicas as with one."""
    cluster = cluster_factory([{"log_level": "DEBUG"}], replicas=1, check_interval=0.3)
    node = cluster.nodes[0]
    window = 3.0

    def calls_in_window() -> int:
        before = count_info_requests(node.log())
        time.sleep(window)
        return count_info_requests(node.log()) - before

    alone = calls_in_window()
    cluster.start_replica()
    time.sleep(0.5)  # its start-up check is not part of the interval's work
    together = calls_in_window()
    assert window / 0.3 * 0.6 <= alone <= window / 0.3 * 1.2, alone
    assert together <= alone * 1.3 + 1, (alone, together)


def test_the_clients_webhook_is_called_once_whichever_replica_learns_the_end(
        cluster_factory, sample_images: list[Path]) -> None:
    """The node tells one replica; clients poll both at once: every one of them sees the end, one calls."""
    cluster = cluster_factory([{"seconds_per_image": 0.05}])
    receiver = Receiver()
    try:
        uuid = submit(cluster.replicas[0], sample_images[:3], {"webhook": receiver.url + "/end"})
        with ThreadPoolExecutor(4) as pool:
            infos = list(pool.map(lambda i: wait_status(cluster.replicas[i % 2], uuid), range(4)))
        assert all(info["status"]["code"] == COMPLETED for info in infos)
        deadline = time.monotonic() + 10
        while not receiver.calls and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(3)  # a second call, if any, would have come by now
        assert [path for path, _ in receiver.calls] == ["/end"]
        assert receiver.calls[0][1]["uuid"] == uuid
    finally:
        receiver.close()
