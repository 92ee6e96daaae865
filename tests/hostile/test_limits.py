"""Oversized bodies: `--max-upload-mb` (all of a task's files together), `--max-images`, the form-body
cap and text fields of a multipart body. Each is refused with a clear JSON error and leaves no partial
file behind; a task that was refused a file can still go on with files that fit."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests

from proxy.config import parse_config
from tests.hostile.hostile_helpers import CLIENT_TOKEN, Hostile, multipart, raw, with_token
from tests.relay.relay_helpers import COMPLETED, commit, get_json, init_task, post_json, upload, wait_status

MB = 1024 * 1024


def upload_bytes(hostile: Hostile, uuid: str, files: list[tuple[str, bytes]]) -> dict:
    parts = [("images", (name, content, "image/jpeg")) for name, content in files]
    return post_json(hostile.relay, f"/task/new/upload/{uuid}", files=parts, token=CLIENT_TOKEN)


def staging_folders(hostile: Hostile) -> set[str]:
    return {p.name for p in (hostile.relay.data_dir / "staging").iterdir()}


def test_a_file_past_the_byte_limit_is_refused_and_removed(hostile: Hostile, sample_images: list[Path]) -> None:
    uuid = init_task(hostile.relay, token=CLIENT_TOKEN)["uuid"]  # forwarded to the node as it arrives
    result = upload_bytes(hostile, uuid, [("huge.jpg", os.urandom(int(1.5 * MB)))])
    assert "Upload too large" in result["error"] and "1 MB" in result["error"], result
    assert hostile.staged(uuid) == []
    # the task goes on with files that fit, and the node never kept the cut-off file
    assert upload(hostile.relay, uuid, sample_images[:2], token=CLIENT_TOKEN) == {"success": True}
    assert commit(hostile.relay, uuid, token=CLIENT_TOKEN) == {"uuid": uuid}
    info = wait_status(hostile.relay, uuid, [COMPLETED], token=CLIENT_TOKEN)
    assert info["imagesCount"] == 2
    assert get_json(hostile.node, f"/task/{uuid}/info")["imagesCount"] == 2


def test_the_byte_limit_counts_every_file_of_the_task(hostile: Hostile) -> None:
    uuid = init_task(hostile.relay, token=CLIENT_TOKEN)["uuid"]
    assert upload_bytes(hostile, uuid, [("a.jpg", os.urandom(int(0.6 * MB)))]) == {"success": True}
    assert "Upload too large" in upload_bytes(hostile, uuid, [("b.jpg", os.urandom(int(0.6 * MB)))])["error"]
    assert hostile.staged(uuid) == ["a.jpg"]


def test_a_one_shot_task_past_the_byte_limit_leaves_nothing(hostile: Hostile, sample_images: list[Path]) -> None:
    before = staging_folders(hostile)
    files = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in sample_images[:2]]
    files.append(("images", ("huge.jpg", os.urandom(int(1.2 * MB)), "image/jpeg")))
    result = post_json(hostile.relay, "/task/new", data={"name": "too big"}, files=files, token=CLIENT_TOKEN)
    assert "Upload too large" in result["error"]
    assert staging_folders(hostile) == before


def test_more_images_than_the_relay_takes(hostile: Hostile, sample_images: list[Path]) -> None:
    assert hostile.max_images == 4 < len(sample_images)
    uuid = init_task(hostile.relay, token=CLIENT_TOKEN)["uuid"]
    result = upload(hostile.relay, uuid, sample_images[:5], token=CLIENT_TOKEN)
    assert "Too many images" in result["error"] and "at most 4" in result["error"], result
    assert len(hostile.staged(uuid)) == 4 and not any(n.endswith(".part") for n in hostile.staged(uuid))
    # side files are not photos and do not count
    assert upload_bytes(hostile, uuid, [("geo.txt", b"EPSG:4326\n")]) == {"success": True}
    assert "Too many images" in upload(hostile.relay, uuid, sample_images[5:6], token=CLIENT_TOKEN)["error"]
    assert commit(hostile.relay, uuid, token=CLIENT_TOKEN) == {"uuid": uuid}
    assert wait_status(hostile.relay, uuid, [COMPLETED], token=CLIENT_TOKEN)["imagesCount"] == 4

    before = staging_folders(hostile)
    files = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in sample_images[:5]]
    result = post_json(hostile.relay, "/task/new", files=files, token=CLIENT_TOKEN)
    assert "Too many images" in result["error"]
    assert staging_folders(hostile) == before


def test_a_form_body_over_16_mb_is_413_in_json(hostile: Hostile) -> None:
    response = requests.post(hostile.relay.api("/task/new/init"), data={"name": "x" * (17 * MB)}, timeout=60)
    assert response.status_code == 413 and "error" in response.json()


def test_a_huge_text_field_in_a_multipart_body_is_refused(hostile: Hostile, sample_images: list[Path]) -> None:
    before = staging_folders(hostile)
    content_type, body = multipart([("name", None, b"n" * (2 * MB)),
                                    *[("images", p.name, p.read_bytes()) for p in sample_images[:2]]])
    answer = raw(hostile.relay, "POST", with_token("/task/new"), body=body, headers={"Content-Type": content_type})
    assert answer.status == 200 and "too large" in answer.json["error"]
    assert staging_folders(hostile) == before


def test_malformed_multipart_bodies_are_refused_in_json(hostile: Hostile) -> None:
    uuid = init_task(hostile.relay, token=CLIENT_TOKEN)["uuid"]
    cases = [
        ("multipart/form-data", b"--x\r\n\r\n"),  # no boundary
        ("multipart/form-data; boundary=" + "b" * 80, b"--" + b"b" * 80 + b"--\r\n"),  # boundary too long
        ("multipart/form-data; boundary=x", b"not multipart at all"),
        ("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data; name=\"images\"; "
                                            b"filename=\"a.jpg\"\r\n\r\nabc"),  # cut short
        ("multipart/form-data; boundary=x", b"--x\r\nBad Header Line\r\n\r\nabc\r\n--x--\r\n"),
        ("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data; name=\"name\"\r\n"
                                            b"Content-Transfer-Encoding: rot13\r\n\r\nabc\r\n--x--\r\n"),
        ("text/plain", b"hello"),
    ]
    for path in (f"/task/new/upload/{uuid}", "/task/new", "/task/new/init", "/task/cancel"):
        for content_type, body in cases:
            answer = raw(hostile.relay, "POST", with_token(path), body=body, headers={"Content-Type": content_type})
            assert answer.status == 200, (path, content_type, body, answer.body[:300])
            if path != "/task/new/init":  # init has no required field: a body it cannot read is an empty one
                assert "error" in answer.json, (path, content_type, body, answer.body[:300])
    assert not any(n.endswith(".part") for n in hostile.staged(uuid))


def test_the_limits_are_flags_and_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_config([])
    assert (config.max_upload_mb, config.max_images, config.upload_timeout) == (0, 0, 60)  # no limits by default
    monkeypatch.setenv("ODX_RELAY_MAX_UPLOAD_MB", "2048")
    monkeypatch.setenv("ODX_RELAY_MAX_IMAGES", "500")
    monkeypatch.setenv("ODX_RELAY_UPLOAD_TIMEOUT", "30")
    config = parse_config([])
    assert (config.max_upload_mb, config.max_images, config.upload_timeout) == (2048, 500, 30)
    config = parse_config(["--max-upload-mb", "1.5", "--max-images", "7", "--upload-timeout", "5"])
    assert (config.max_upload_mb, config.max_images, config.upload_timeout) == (1.5, 7, 5)
