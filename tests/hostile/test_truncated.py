"""Multipart bodies that end in the middle of a file: the request's body is over (its Content-Length reached,
its last chunk sent, or its connection closed) but the part never got its closing boundary. The cut-off file
must not be kept, on the relay or on the node it was being forwarded to, as if it were whole; parts that
were whole before it are kept. Sent byte for byte over a raw socket."""
from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import requests

from tests.hostile.hostile_helpers import ADMIN_TOKEN, CLIENT_TOKEN, Hostile, with_token
from tests.relay.relay_helpers import (
    COMPLETED,
    admin_nodes,
    commit,
    get_json,
    init_task,
    upload,
    wait_for,
    wait_status,
)

BOUNDARY = "truncated-boundary-41f"


def part(name: str, filename: str | None, content: bytes) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\nContent-Type: image/jpeg\r\n\r\n"
    return head.encode() + content


def whole(name: str, filename: str | None, content: bytes) -> bytes:
    return part(name, filename, content) + b"\r\n"


def send(hostile: Hostile, path: str, body: bytes, *, chunked: bool = False, declared: int | None = None,
         close_early: bool = False) -> dict | None:
    """POST `body` as multipart; with `chunked`, as one chunk and the last chunk; with `declared`, a
    Content-Length larger than what is sent; with `close_early`, the socket is closed after the body.
    The JSON answer, or None when the connection was closed first."""
    head = f"POST {with_token(path)} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    head += f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
    if chunked:
        head += "Transfer-Encoding: chunked\r\n\r\n"
        payload = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    else:
        head += f"Content-Length: {declared or len(body)}\r\n\r\n"
        payload = body
    with socket.create_connection(("127.0.0.1", hostile.relay.port), timeout=30) as sock:
        sock.sendall(head.encode() + payload)
        if close_early:
            time.sleep(0.3)
            return None
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    assert b" 200 " in status_line, data[:300]
    body_bytes = rest.split(b"\r\n\r\n", 1)[1]
    if b"transfer-encoding: chunked" in rest.lower().split(b"\r\n\r\n", 1)[0]:
        body_bytes = body_bytes.split(b"\r\n", 1)[1].rsplit(b"\r\n0\r\n", 1)[0]
    return json.loads(body_bytes)


def cut(content: bytes) -> bytes:
    return content[: len(content) // 2]


@pytest.mark.parametrize("forwarded", [True, False], ids=["forwarded-to-the-node", "staged-only"])
def test_a_file_cut_off_at_the_end_of_the_body_is_not_kept(hostile: Hostile, sample_images: list[Path],
                                                            forwarded: bool) -> None:
    """Content-Length reached, or the chunked body ended, in the middle of a file: answered with an error;
    the whole part before it is kept, the cut one is not, and the node never holds it either."""
    node_id = admin_nodes(hostile.relay)[0]["id"]
    if not forwarded:  # no node to forward to at init: files are only staged until commit
        lock(hostile, node_id, "lock")
    uuid = init_task(hostile.relay, token=CLIENT_TOKEN)["uuid"]
    lock(hostile, node_id, "unlock")
    first, second = (p.read_bytes() for p in sample_images[:2])
    for chunked, name in ((False, "cut-by-length.jpg"), (True, "cut-chunked.jpg")):
        body = whole("images", sample_images[0].name, first) + part("images", name, cut(second))
        answer = send(hostile, f"/task/new/upload/{uuid}", body, chunked=chunked)
        assert answer is not None and "error" in answer, answer
        assert hostile.staged(uuid) == [sample_images[0].name], (chunked, hostile.staged(uuid))
    assert upload(hostile.relay, uuid, sample_images[1:3], token=CLIENT_TOKEN) == {"success": True}
    assert commit(hostile.relay, uuid, token=CLIENT_TOKEN) == {"uuid": uuid}
    assert wait_status(hostile.relay, uuid, [COMPLETED], token=CLIENT_TOKEN)["imagesCount"] == 3
    assert get_json(hostile.node, f"/task/{uuid}/info")["imagesCount"] == 3
    assert "cut short" in answer["error"], answer


def lock(hostile: Hostile, node_id: str, action: str) -> None:
    response = requests.post(f"{hostile.relay.url}/admin/nodes/{node_id}/{action}",
                             headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
    assert response.status_code == 200, response.text


def test_a_one_shot_task_cut_off_leaves_nothing(hostile: Hostile, sample_images: list[Path]) -> None:
    staging = hostile.relay.data_dir / "staging"
    before = {p.name for p in staging.iterdir()} if staging.is_dir() else set()
    body = whole("name", None, b"cut short") + b"".join(whole("images", p.name, p.read_bytes())
                                                        for p in sample_images[:2])
    body += part("images", sample_images[2].name, cut(sample_images[2].read_bytes()))
    for chunked in (False, True):
        answer = send(hostile, "/task/new", body, chunked=chunked)
        after = {p.name for p in staging.iterdir()} if staging.is_dir() else set()
        assert after == before
        assert answer is not None and "cut short" in answer.get("error", ""), answer


def test_a_client_gone_mid_file_leaves_no_file(hostile: Hostile, sample_images: list[Path]) -> None:
    uuid = init_task(hostile.relay, token=CLIENT_TOKEN)["uuid"]
    content = sample_images[0].read_bytes()
    body = part("images", "gone.jpg", cut(content))
    assert send(hostile, f"/task/new/upload/{uuid}", body, declared=len(body) + 10_000, close_early=True) is None
    wait_for(lambda: hostile.staged(uuid) == [], timeout=10, what="the partial file to go")
    time.sleep(0.5)
    assert hostile.staged(uuid) == []
