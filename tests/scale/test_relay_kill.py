"""`kill -9` of a relay while it takes an upload (forwarding it to a node as it arrives), while it sends a
queued task from its staging folder to a node, and while a node processes a task: after a restart every
committed task is reachable and finishes, and the upload is resumed by the client sending its files again.
Run on both stores: SQLite (a lone relay) and Redis."""
from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path

import pytest
import redis
import requests

from testkit.cluster import Cluster
from tests.relay.relay_helpers import (
    COMPLETED,
    QUEUED,
    RUNNING,
    commit,
    get_json,
    init_task,
    submit,
    task_info,
    upload,
    wait_for,
    wait_status,
)
from tests.scale.scale_helpers import ADMIN, set_locked

pytestmark = pytest.mark.slow

BIG = 24 * 1024 * 1024  # bytes added to each photo (after its JPEG end: still a valid photo), so sending takes time


@pytest.fixture(scope="module")
def big_images(sample_images: list[Path], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("big")
    padded = []
    for path in sample_images[:3]:
        target = folder / path.name
        target.write_bytes(path.read_bytes() + bytes(BIG))
        padded.append(target)
    return padded


def stalled_upload(port: int, uuid: str, image: Path) -> socket.socket:
    """Send half of one file to `/task/new/upload/{uuid}` and stop there, as a client cut off mid-file."""
    boundary = "odx-scale-boundary"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="{image.name}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n").encode()
    data, tail = image.read_bytes(), f"\r\n--{boundary}--\r\n".encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"POST /task/new/upload/{uuid} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                 f"Content-Length: {len(head) + len(data) + len(tail)}\r\n\r\n".encode() + head + data[:len(data) // 2])
    return sock


def stage_in_store(cluster: Cluster, uuid: str) -> str:
    """Where the relay's state says the task is, read from the store itself (the relay is dead)."""
    if cluster.redis is not None:
        client = redis.Redis.from_url(cluster.redis.url)
        try:
            return json.loads(client.get(f"odx:task:{uuid}"))["stage"]
        finally:
            client.close()
    with sqlite3.connect(cluster.replicas[0].data_dir / "relay.sqlite3") as db:
        return db.execute("SELECT stage FROM tasks WHERE uuid = ?", (uuid,)).fetchone()[0]


@pytest.mark.parametrize("with_redis", [False, True], ids=["sqlite", "redis"])
def test_kill_9_during_upload_forwarding_and_processing(cluster_factory, sample_images: list[Path],
                                                       big_images: list[Path], with_redis: bool) -> None:
    cluster = cluster_factory([{"seconds_per_image": 0.4}, {}, {"max_images": 2}], replicas=1,
                              with_redis=with_redis, admin_token=ADMIN)
    busy, spare, front = cluster.nodes
    relay = cluster.replicas[0]
    set_locked(cluster, spare.url, True)
    processing = submit(relay, sample_images[:6])  # more than `front` takes: it runs on `busy`
    wait_status(relay, processing, [RUNNING])
    forwarding = submit(relay, big_images)  # `busy` is busy, `spare` locked, `front` too small: the relay's queue
    assert task_info(relay, forwarding)["status"]["code"] == QUEUED
    uploading = init_task(relay)["uuid"]  # forwarded to `front` as it arrives
    assert upload(relay, uploading, sample_images[:1]) == {"success": True}
    cut = stalled_upload(relay.port, uploading, big_images[1])

    set_locked(cluster, spare.url, False, wait=False)  # the relay starts sending `forwarding` to `spare`...
    wait_for(lambda: f"task {forwarding} upload opened" in spare.log(), timeout=10, interval=0.005)
    cluster.kill_replica(0)  # ...and dies half way, with an upload coming in and a task processing
    cut.close()
    stage_at_kill = stage_in_store(cluster, forwarding)
    wait_for(lambda: task_info(busy, processing)["status"]["code"] == COMPLETED, timeout=30,
             what="the task to end on its node while the relay is down")

    relay = cluster.restart_replica(0)
    assert {t["uuid"] for t in get_json(relay, "/task/list")} == {processing, forwarding}
    assert wait_status(relay, processing)["status"]["code"] == COMPLETED
    info = wait_status(relay, forwarding, timeout=40)
    assert info["status"]["code"] == COMPLETED and info["imagesCount"] == 3, (stage_at_kill, info)
    # the client of the cut upload sends the file it was sending again, then commits
    assert upload(relay, uploading, big_images[1:2]) == {"success": True}
    assert commit(relay, uploading) == {"uuid": uploading}
    info = wait_status(relay, uploading, timeout=40)
    assert info["status"]["code"] == COMPLETED and info["imagesCount"] == 2
    for uuid, images in ((forwarding, 3), (processing, 6), (uploading, 2)):  # one node ran it, with each file once
        ran = [info for info in (task_info(node, uuid) for node in cluster.nodes) if "imagesCount" in info]
        assert [info["imagesCount"] for info in ran] == [images], (uuid, ran)
    assert requests.get(relay.api(f"/task/{forwarding}/download/all.zip"), timeout=30).status_code == 200
    assert stage_at_kill == "dispatching", "the relay was not killed while sending the queued task"


def test_a_replica_killed_while_sending_a_task_is_relieved_by_the_other(cluster_factory, sample_images: list[Path],
                                                                      big_images: list[Path]) -> None:
    """The replica that was sending a queued task to a node dies and does not come back: once its claim on the
    task runs out, the other replica finds the task half sent and sends it again."""
    cluster = cluster_factory([{"seconds_per_image": 0.3}, {}], admin_token=ADMIN)
    busy, spare = cluster.nodes
    set_locked(cluster, spare.url, True)
    running = submit(cluster.replicas[0], sample_images[:4])
    wait_status(cluster.replicas[1], running, [RUNNING])
    queued = submit(cluster.replicas[1], big_images)
    set_locked(cluster, spare.url, False, wait=False)
    wait_for(lambda: f"task {queued} upload opened" in spare.log(), timeout=10, interval=0.005)
    client = redis.Redis.from_url(cluster.redis.url, decode_responses=True)
    sender = int(client.get(f"odx:lease:dispatch:{queued}").rsplit(":", 1)[1])  # the claim names its replica
    client.close()
    index = next(i for i, r in enumerate(cluster.replicas) if r.port == sender)
    cluster.kill_replica(index)
    assert stage_in_store(cluster, queued) == "dispatching"
    survivor = cluster.replicas[1 - index]
    info = wait_status(survivor, queued, timeout=40)
    assert info["status"]["code"] == COMPLETED and info["imagesCount"] == 3
    ran = [i for i in (task_info(node, queued) for node in cluster.nodes) if "imagesCount" in i]
    assert [i["imagesCount"] for i in ran] == [3]
    assert wait_status(survivor, running)["status"]["code"] == COMPLETED
