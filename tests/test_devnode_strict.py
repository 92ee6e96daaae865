"""Devnode parses request bodies as strictly as a real NodeODX 2.3.1: the same request, the same outcome.

The relay once passed every test against devnode yet dropped every task's options on a real node, because
devnode read url-encoded `/task/new/init` fields that NodeODX (multer, form-data only) silently ignores.
Each test here sends one request to a real NodeODX and to devnode, both started for the test, and asserts
that the two outcomes are equal and are what NodeODX is known to do, so that a wrong expectation fails
too, not only a difference.
"""
from __future__ import annotations

import json
import queue
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from shared.types import TaskStatus
from testkit.devnode import DevNode
from testkit.nodeodx import NodeODX, available
from testkit.servers import ServerProcess, WebhookReceiver

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not available(), reason="NodeODX is not built (make setup builds it)")]

TOKEN = "strict-token"
BOUNDARY = "strictBoundary7MA4YWxk"
FORM_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
FIELDS = {"name": "strict", "options": json.dumps([{"name": "fast-orthophoto", "value": True}]),
          "skipPostProcessing": "true"}
POST_PROCESSING = ["pc-ept", "cog", "gltf"]
ENDED = {int(TaskStatus.FAILED), int(TaskStatus.COMPLETED), int(TaskStatus.CANCELED)}
CANCELED = int(TaskStatus.CANCELED)


# ---- helpers -------------------------------------------------------------------------------------------

@pytest.fixture
def nodes(nodeodx_factory: Callable[..., NodeODX], devnode_factory: Callable[..., DevNode]) -> list[ServerProcess]:
    """A real NodeODX first, then a devnode, both wanting the same token."""
    return [nodeodx_factory(token=TOKEN), devnode_factory(token=TOKEN)]


def on_both(nodes: list[ServerProcess], probe: Callable[[ServerProcess], Any]) -> Any:
    """Run `probe` on NodeODX and on devnode; their outcomes must be equal, and that outcome is returned."""
    real, dev = (probe(node) for node in nodes)
    assert dev == real, f"NodeODX gave {real!r}, devnode gave {dev!r}"
    return real


def post(node: ServerProcess, path: str, **kwargs: Any) -> Any:
    response = requests.post(node.api(path), timeout=30, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def get(node: ServerProcess, path: str) -> Any:
    response = requests.get(node.api(path), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def without_uuid(reply: dict) -> dict:
    """A reply with its fresh uuid masked, so that two nodes' replies compare."""
    return {k: "<uuid>" if k == "uuid" else v for k, v in reply.items()}


def form_data(fields: dict[str, str]) -> dict[str, tuple[None, str]]:
    return {k: (None, v) for k, v in fields.items()}


def raw_form(*parts: tuple[str, bytes]) -> bytes:
    """A multipart body written by hand: (headers of the part, content), for parts `requests` cannot make."""
    body = b"".join(f"--{BOUNDARY}\r\n{headers}\r\n\r\n".encode() + data + b"\r\n" for headers, data in parts)
    return body + f"--{BOUNDARY}--\r\n".encode()


def images(sample_images: list[Path], count: int = 2) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in sample_images[:count]]


def upload_and_commit(node: ServerProcess, task_uuid: str, sample_images: list[Path]) -> None:
    assert post(node, f"/task/new/upload/{task_uuid}", files=images(sample_images)) == {"success": True}
    assert post(node, f"/task/new/commit/{task_uuid}") == {"uuid": task_uuid}


def wait_ended(node: ServerProcess, task_uuid: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while (info := get(node, f"/task/{task_uuid}/info"))["status"]["code"] not in ENDED:
        assert time.monotonic() < deadline, f"task never ended: {info}"
        time.sleep(0.1)
    return info


def new_task(node: ServerProcess, sample_images: list[Path]) -> str:
    """A task made the one-shot way, with form-data as both nodes read it; its uuid."""
    reply = post(node, "/task/new", files=images(sample_images))
    assert "uuid" in reply, reply
    return reply["uuid"]


def status_code(node: ServerProcess, task_uuid: str) -> int | str:
    info = get(node, f"/task/{task_uuid}/info")
    return info["status"]["code"] if "status" in info else info["error"]


# ---- /task/new/init ------------------------------------------------------------------------------------

@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


@pytest.mark.parametrize("encoding, expected", [
    ("form-data", {"name": "strict", "options": ["fast-orthophoto"], "webhook called": True}),
    ("url-encoded", {"name": None, "options": POST_PROCESSING, "webhook called": False}),
    ("json", {"name": None, "options": POST_PROCESSING, "webhook called": False}),
    ("text/plain", {"name": None, "options": POST_PROCESSING, "webhook called": False}),
])
def test_init_reads_its_fields_from_form_data_only(nodes: list[ServerProcess], sample_images: list[Path],
                                                   webhook_receiver: WebhookReceiver, encoding: str,
                                                   expected: dict) -> None:
    """Any other body still opens a task, but without a name (no `name` key at all), with default options
    (post-processing ones: `skipPostProcessing` was dropped too) and without calling the webhook."""
    fields = {**FIELDS, "webhook": webhook_receiver.url}
    body = {"form-data": {"files": form_data(fields)}, "url-encoded": {"data": fields}, "json": {"json": fields},
            "text/plain": {"data": json.dumps(fields), "headers": {"Content-Type": "text/plain"}}}[encoding]

    def probe(node: ServerProcess) -> dict:
        reply = post(node, "/task/new/init", **body)
        assert "uuid" in reply, reply
        upload_and_commit(node, reply["uuid"], sample_images)
        info = wait_ended(node, reply["uuid"])
        try:
            called = webhook_receiver.next(timeout=2)["uuid"] == reply["uuid"]
        except queue.Empty:
            called = False
        return {"name": info.get("name"), "options": [o["name"] for o in info["options"]],
                "webhook called": called}

    assert on_both(nodes, probe) == expected


def test_init_refuses_what_multer_none_refuses(nodes: list[ServerProcess]) -> None:
    """multer().none(): no files, named fields of at most 1 MB, and multipart/form-data as the only subtype."""
    def probe(node: ServerProcess) -> list[dict]:
        sent = [
            {"files": {"name": (None, "x"), "images": ("a.jpg", b"jpeg", "image/jpeg")}},
            {"data": raw_form(("Content-Disposition: form-data", b"nameless")), "headers": {"Content-Type": FORM_TYPE}},
            {"files": {"name": (None, "y" * (1024 * 1024 + 1))}},
            {"data": raw_form(('Content-Disposition: form-data; name="name"', b"mixed")),
             "headers": {"Content-Type": f"multipart/mixed; boundary={BOUNDARY}"}},
        ]
        return [post(node, "/task/new/init", **kwargs) for kwargs in sent]

    assert on_both(nodes, probe) == [{"error": "Unexpected field"}, {"error": "Field name missing"},
                                     {"error": "Field value too long"},
                                     {"error": f"Unsupported content type: multipart/mixed; boundary={BOUNDARY}"}]


def test_init_drops_parts_busboy_takes_for_nameless_files(nodes: list[ServerProcess],
                                                          sample_images: list[Path]) -> None:
    """A file part with an empty filename, or any part typed application/octet-stream without one, is
    neither a file nor a field: init goes through and the field's value is lost."""
    body = raw_form(('Content-Disposition: form-data; name="images"; filename=""', b"jpeg"),
                    ('Content-Disposition: form-data; name="name"\r\nContent-Type: application/octet-stream',
                     b"lost"))

    def probe(node: ServerProcess) -> dict:
        reply = post(node, "/task/new/init", data=body, headers={"Content-Type": FORM_TYPE})
        assert "uuid" in reply, reply
        upload_and_commit(node, reply["uuid"], sample_images)
        return {"has name": "name" in get(node, f"/task/{reply['uuid']}/info")}

    assert on_both(nodes, probe) == {"has name": False}


# ---- /task/new and /task/new/upload --------------------------------------------------------------------

def test_one_shot_task_new_reads_form_data_only(nodes: list[ServerProcess], sample_images: list[Path]) -> None:
    """Without form-data there are no files and no fields (not even a `zipurl`); with it, fields count."""
    def probe(node: ServerProcess) -> list[Any]:
        fields = {**FIELDS, "zipurl": "http://127.0.0.1:9/photos.zip"}
        url_encoded = post(node, "/task/new", data=fields)
        as_json = post(node, "/task/new", json=fields)
        reply = post(node, "/task/new", files=[*form_data(FIELDS).items(), *images(sample_images)])
        info = get(node, f"/task/{reply['uuid']}/info")
        return [url_encoded, as_json, without_uuid(reply), info.get("name"), [o["name"] for o in info["options"]]]

    refused = {"error": "Need at least 1 file or a zip file url."}
    assert on_both(nodes, probe) == [refused, refused, {"uuid": "<uuid>"}, "strict", ["fast-orthophoto"]]


def test_upload_reads_form_data_only_and_a_refused_upload_keeps_nothing(nodes: list[ServerProcess],
                                                                        sample_images: list[Path]) -> None:
    """A url-encoded upload or an unnamed file carries no file; a request refused half way leaves none behind."""
    photo = sample_images[0].read_bytes()

    def probe(node: ServerProcess) -> list[Any]:
        task_uuid = post(node, "/task/new/init")["uuid"]
        path = f"/task/new/upload/{task_uuid}"
        answers = [
            post(node, path, data={"images": "not a file"}),
            post(node, path, data=raw_form(('Content-Disposition: form-data; name="images"; filename=""', photo)),
                 headers={"Content-Type": FORM_TYPE}),
            post(node, path, files=[*images(sample_images), ("other", ("b.jpg", photo, "image/jpeg"))]),
        ]
        return answers + [post(node, f"/task/new/commit/{task_uuid}")]

    no_file = {"error": "Need at least 1 file.", "noRetry": True}
    assert on_both(nodes, probe) == [no_file, no_file, {"error": "Unexpected field"},
                                     {"error": "Need at least 1 file."}]


# ---- /task/cancel, /task/remove, /task/restart ---------------------------------------------------------

def test_commands_ignore_a_multipart_body(nodes: list[ServerProcess], sample_images: list[Path]) -> None:
    """A form-data cancel/restart/remove reaches NodeODX without a uuid and changes nothing; url-encoded works."""
    def probe(node: ServerProcess) -> list[Any]:
        task_uuid = new_task(node, sample_images)
        wait_ended(node, task_uuid)
        seen = []
        for command in ("cancel", "restart", "remove"):
            seen.append(post(node, f"/task/{command}", files=form_data({"uuid": task_uuid})))
            seen.append(status_code(node, task_uuid) == CANCELED)
            seen.append(post(node, f"/task/{command}", data={"uuid": task_uuid}))
            seen.append(status_code(node, task_uuid) == CANCELED)
            if command == "restart":
                post(node, "/task/cancel", data={"uuid": task_uuid})  # so that remove below finds it canceled
        seen.append(status_code(node, task_uuid) == f"{task_uuid} not found")
        return seen

    missing, done = {"error": "uuid param missing."}, {"success": True}
    assert on_both(nodes, probe) == [missing, False, done, True,   # cancel
                                     missing, True, done, False,   # restart
                                     missing, True, done, False,   # remove (info then says "not found")
                                     True]


@pytest.mark.parametrize("label, kwargs, expected", [
    ("empty JSON", {"data": b"", "headers": {"Content-Type": "application/json"}}, {"error": "uuid param missing."}),
    ("JSON array", {"json": ["x"]}, {"error": "uuid param missing."}),
    ("JSON uuid 0", {"json": {"uuid": 0}}, {"error": "uuid param missing."}),
    ("JSON uuid false", {"json": {"uuid": False}}, {"error": "uuid param missing."}),
    ("JSON uuid number", {"json": {"uuid": 5}}, {"success": False, "error": "5 not found"}),
    ("JSON with charset", {"data": b'{"uuid": "x"}', "headers": {"Content-Type": "application/json; charset=utf-8"}},
     {"success": False, "error": "x not found"}),
    ("JSON of another type", {"data": b'{"uuid": "x"}', "headers": {"Content-Type": "application/vnd.api+json"}},
     {"error": "uuid param missing."}),
    ("text/plain", {"data": b"uuid=x", "headers": {"Content-Type": "text/plain"}}, {"error": "uuid param missing."}),
    ("repeated key", {"data": b"uuid=a&uuid=b", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
     {"success": False, "error": "a,b not found"}),
    ("over 100 kB", {"data": {"uuid": "x", "pad": "x" * 101 * 1024}}, {"error": "request entity too large"}),
    ("under 100 kB", {"data": {"uuid": "x", "pad": "x" * 99 * 1024}}, {"success": False, "error": "x not found"}),
])
def test_command_bodies_are_read_as_body_parser_reads_them(nodes: list[ServerProcess], label: str,
                                                           kwargs: dict, expected: dict) -> None:
    assert on_both(nodes, lambda node: post(node, "/task/cancel", **kwargs)) == expected


@pytest.mark.parametrize("body", [b"{bad", b'"x"', b"5"])
def test_command_json_that_body_parser_refuses_is_an_error(nodes: list[ServerProcess], sample_images: list[Path],
                                                           body: bytes) -> None:
    """Malformed JSON, or JSON that is not an object or an array (strict mode), is refused before the uuid is
    looked at. The words differ (V8's against Python's), so only the shape of the answer is compared."""
    def probe(node: ServerProcess) -> dict:
        reply = post(node, "/task/cancel", data=body, headers={"Content-Type": "application/json"})
        return {"keys": sorted(reply), "says uuid missing": reply.get("error") == "uuid param missing."}

    assert on_both(nodes, probe) == {"keys": ["error"], "says uuid missing": False}


def test_restart_takes_options_as_a_json_list_or_a_url_encoded_string(nodes: list[ServerProcess],
                                                                      sample_images: list[Path]) -> None:
    """Options replace the task's; NodeODX adds the post-processing ones again (the task did not skip them)."""
    wanted = [{"name": "fast-orthophoto", "value": True}]

    def probe(node: ServerProcess) -> list[Any]:
        task_uuid = new_task(node, sample_images)
        wait_ended(node, task_uuid)
        seen = []
        for body in ({"json": {"uuid": task_uuid, "options": wanted}},
                     {"data": {"uuid": task_uuid, "options": json.dumps(wanted)}}):
            seen.append(post(node, "/task/restart", **body))
            seen.append([o["name"] for o in get(node, f"/task/{task_uuid}/info")["options"]])
            post(node, "/task/cancel", data={"uuid": task_uuid})
        return seen

    options = ["fast-orthophoto", *POST_PROCESSING]
    assert on_both(nodes, probe) == [{"success": True}, options, {"success": True}, options]


def test_a_set_uuid_init_sent_url_encoded_still_takes_the_uuid(nodes: list[ServerProcess]) -> None:
    """`set-uuid` is a header, read before the body: only the fields are lost."""
    def probe(node: ServerProcess) -> bool:
        chosen = str(uuidlib.uuid4())
        reply = post(node, "/task/new/init", data={"name": "lost"}, headers={"set-uuid": chosen})
        return reply == {"uuid": chosen}

    assert on_both(nodes, probe) is True
