"""Slow-drip uploads: a client that sends a few bytes and stalls is answered with a JSON error after
`--upload-timeout` seconds, its connection is closed, its partial file removed, and the node it was
being forwarded to never keeps the cut-off file."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.hostile.hostile_helpers import CLIENT_TOKEN, Hostile, open_upload, read_until_closed, with_token
from tests.relay.relay_helpers import COMPLETED, commit, get_json, init_task, upload, wait_for, wait_status

pytestmark = pytest.mark.slow

FILE_HEAD = (b'--hostile-boundary-5c2e\r\nContent-Disposition: form-data; name="images"; filename="slow.jpg"\r\n'
             b"Content-Type: image/jpeg\r\n\r\n")
STALLS = {
    "mid-file": FILE_HEAD + b"\xff\xd8" + b"x" * 5000,
    "in the part headers": b'--hostile-boundary-5c2e\r\nContent-Disposition: form-da',
    "before the first byte": b"",
}


def stalled_answer(hostile: Hostile, path: str, head: bytes) -> tuple[dict, float]:
    """Drip `head`, stall, and wait for the relay to answer and close; (the JSON answer, seconds taken)."""
    started = time.monotonic()
    sock = open_upload(hostile.relay, with_token(path), head, declared_length=10 * 1024 * 1024)
    try:
        data = read_until_closed(sock, timeout=hostile.upload_timeout + 15)
    finally:
        sock.close()
    elapsed = time.monotonic() - started
    head_part, _, body = data.partition(b"\r\n\r\n")
    assert head_part.startswith(b"HTTP/1.1 200"), data[:300]
    assert b"application/json" in head_part.lower()
    return json.loads(body), elapsed


@pytest.mark.parametrize("where", list(STALLS))
def test_a_stalled_upload_is_dropped_and_its_file_removed(hostile: Hostile, sample_images: list[Path],
                                                          where: str) -> None:
    uuid = init_task(hostile.relay, token=CLIENT_TOKEN)["uuid"]  # forwarded to the node as it arrives
    answer, elapsed = stalled_answer(hostile, f"/task/new/upload/{uuid}", STALLS[where])
    assert "timed out" in answer["error"], answer
    assert hostile.upload_timeout <= elapsed < hostile.upload_timeout + 5, elapsed
    assert hostile.staged(uuid) == []
    # the task is still usable, and the node has only the files that arrived whole
    assert upload(hostile.relay, uuid, sample_images[:2], token=CLIENT_TOKEN) == {"success": True}
    assert commit(hostile.relay, uuid, token=CLIENT_TOKEN) == {"uuid": uuid}
    assert wait_status(hostile.relay, uuid, [COMPLETED], token=CLIENT_TOKEN)["imagesCount"] == 2
    assert get_json(hostile.node, f"/task/{uuid}/info")["imagesCount"] == 2


def test_a_stalled_one_shot_task_leaves_nothing(hostile: Hostile) -> None:
    before = set(os.listdir(hostile.relay.data_dir / "staging"))
    answer, _ = stalled_answer(hostile, "/task/new", STALLS["mid-file"])
    assert "timed out" in answer["error"]
    assert set(os.listdir(hostile.relay.data_dir / "staging")) == before


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_many_stalled_uploads_free_every_connection_and_file(hostile: Hostile) -> None:
    relay = hostile.relay
    uuids = [init_task(relay, token=CLIENT_TOKEN)["uuid"] for _ in range(12)]
    baseline = open_files(relay.process.pid)
    socks = [open_upload(relay, with_token(f"/task/new/upload/{u}"), STALLS["mid-file"], 10 * 1024 * 1024)
             for u in uuids]
    try:
        wait_for(lambda: open_files(relay.process.pid) >= baseline + len(socks), timeout=10, what="uploads open")
        # the relay answers everyone else meanwhile
        assert get_json(relay, "/info", token=CLIENT_TOKEN)["relay"]["online"] == 1
        for sock in socks:
            assert b"timed out" in read_until_closed(sock, timeout=hostile.upload_timeout + 15)
    finally:
        for sock in socks:
            sock.close()
    wait_for(lambda: open_files(relay.process.pid) <= baseline + 2, timeout=10, what="descriptors freed")
    assert all(hostile.staged(u) == [] for u in uuids)


def test_a_slow_drip_is_cut_off_by_the_rate_floor(hostile: Hostile) -> None:
    """64 bytes every 0.3 s never trips the 1.5 s idle timeout; the 1 KB/s floor does, soon after 1.5 s."""
    uuid = init_task(hostile.relay, token=CLIENT_TOKEN)["uuid"]
    sock = open_upload(hostile.relay, with_token(f"/task/new/upload/{uuid}"), FILE_HEAD, 10 * 1024 * 1024)
    started, data = time.monotonic(), b""
    try:
        sock.settimeout(0.3)
        while time.monotonic() - started < 15 and not data:
            try:
                sock.sendall(b"x" * 64)
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:  # closed by the relay between two drips
                break
        data += read_until_closed(sock, timeout=5)
    finally:
        sock.close()
    elapsed = time.monotonic() - started
    answer = json.loads(data.partition(b"\r\n\r\n")[2])
    assert answer["error"].startswith("Upload too slow") and "at least 1 KB/s" in answer["error"], answer
    assert hostile.upload_timeout < elapsed < hostile.upload_timeout + 5, elapsed
    assert hostile.staged(uuid) == []
