"""Path tricks in task uuids (every task route), in asset names and in upload file names: each answers
with a JSON error (or, for a trick that normalises to a real route, with that route), never a 5xx,
never a file from outside the task, and never a file written outside the task's staging folder."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from tests.hostile.hostile_helpers import CLIENT_TOKEN, Hostile, multipart, new_uuid, raw, with_token
from tests.relay.relay_helpers import COMPLETED, get_json, init_task, submit, task_info, wait_status

SECRETS = (b"SQLite format", b"root:x:0:0")  # relay.sqlite3, /etc/passwd
UUID_TRICKS = [
    "..", "...", "%2e%2e", "..%2F..%2Frelay.sqlite3", "..%2f..%2f..%2f..%2fetc%2fpasswd", "%2E%2E%2F%2E%2E",
    "..%5C..%5Crelay.sqlite3", "%252e%252e%252frelay.sqlite3", "relay.sqlite3", "staging", "cache",
    "%00", "{real}%00", "{real}%0A", "{real}%0D%0A", "{real}%20", "%20{real}", "{real}.json", "{real}..",
    "{real}%2F..%2F..%2Frelay.sqlite3", "{REAL}", "{real}x", "x{real}", "{real}%2Fall.zip", "*", "%2A",
    "~", "%7E", "a" * 4000, "%C0%AE%C0%AE", "%E2%80%AE{real}", "%EF%BC%8E%EF%BC%8E", "null", "undefined",
]
TASK_ROUTES = [("GET", "/task/{uuid}/info"), ("GET", "/task/{uuid}/output"),
               ("GET", "/task/{uuid}/download/all.zip"), ("GET", "/task/{uuid}/download/orthophoto.tif"),
               ("POST", "/task/new/upload/{uuid}"), ("POST", "/task/new/commit/{uuid}"),
               ("POST", "/_relay/webhook/{uuid}?sig=0")]
BODY_ROUTES = ["/task/cancel", "/task/remove", "/task/restart"]


@pytest.fixture(scope="module")
def done(hostile: Hostile, sample_images: list[Path]) -> str:
    uuid = submit(hostile.relay, sample_images[:2], token=CLIENT_TOKEN)
    wait_status(hostile.relay, uuid, [COMPLETED], token=CLIENT_TOKEN)
    return uuid


def trick(text: str, real: str) -> str:
    return text.replace("{real}", real).replace("{REAL}", real.upper())


def assert_refused(answer, what: str) -> None:
    assert answer.status < 500, (what, answer.status, answer.body[:300])
    assert not any(secret in answer.body for secret in SECRETS), what
    if answer.status != 404 or answer.headers.get("content-type", "").startswith("application/json"):
        assert "error" in answer.json, (what, answer.body[:300])


@pytest.mark.parametrize("method,route", TASK_ROUTES)
def test_uuid_tricks_in_every_task_route(hostile: Hostile, done: str, method: str, route: str) -> None:
    content_type, body = multipart([("images", "a.jpg", b"x")])
    for text in UUID_TRICKS:
        path = route.replace("{uuid}", trick(text, done))
        answer = raw(hostile.relay, method, with_token(path), body=body if method == "POST" else b"",
                     headers={"Content-Type": content_type} if method == "POST" else None)
        if text == "{REAL}" and method == "GET":  # an uppercase uuid is the same task, as on NodeODX
            assert answer.status == 200, answer.body[:300]
            continue
        assert_refused(answer, path)
    assert wait_status(hostile.relay, done, token=CLIENT_TOKEN)["status"]["code"] == COMPLETED


@pytest.mark.parametrize("route", BODY_ROUTES)
def test_uuid_tricks_in_form_bodies(hostile: Hostile, done: str, route: str) -> None:
    tricks = [t for t in UUID_TRICKS if t != "{REAL}"]  # the same task: it would really be removed
    for text in tricks + ["../" + done, done + "/..", done + "\n", " " + done, done + "\x00"]:
        value = requests.utils.unquote(trick(text, done))
        for body, headers in [(requests.compat.urlencode({"uuid": value}).encode(),
                               {"Content-Type": "application/x-www-form-urlencoded"}),
                              (json.dumps({"uuid": value}).encode(), {"Content-Type": "application/json"})]:
            answer = raw(hostile.relay, "POST", with_token(route), body=body, headers=headers)
            assert_refused(answer, f"{route} {value!r}")
    assert wait_status(hostile.relay, done, token=CLIENT_TOKEN)["status"]["code"] == COMPLETED
    assert done in task_info(hostile.relay, done, token=CLIENT_TOKEN)["uuid"]


def test_set_uuid_tricks(hostile: Hostile, done: str) -> None:
    for value in ["../../etc", "..", done, done + "x", "%2e%2e", new_uuid() + "/..", "a" * 300]:
        result = init_task(hostile.relay, headers={"set-uuid": value}, token=CLIENT_TOKEN)
        assert "error" in result, (value, result)
    assert not (hostile.relay.data_dir / "staging" / "..").resolve().joinpath("etc").exists()
    # uuids are case-sensitive, as on NodeODX: the upper-case twin is another task, and the first is untouched
    assert init_task(hostile.relay, headers={"set-uuid": done.upper()}, token=CLIENT_TOKEN) == {"uuid": done.upper()}
    assert get_json(hostile.relay, f"/task/{done}/info", token=CLIENT_TOKEN)["status"]["code"] == COMPLETED


@pytest.mark.parametrize("name", [
    "..%2F..%2Frelay.sqlite3", "..%5C..%5Crelay.sqlite3", "%2e%2e%2f%2e%2e%2frelay.sqlite3",
    "ept-data%2F..%2F..%2F..", "ept-data/%2e%2e/%2e%2e/%2e%2e/relay.sqlite3", "%252e%252e/relay.sqlite3",
    "ept/ept-data/../../../relay.sqlite3", "C:%5Cwindows%5Cwin.ini", "all.zip%00", "all.zip%0A", "all.zip/",
    "all.zip/..", "./all.zip", "ept-data/" + "a" * 3000, "ept-hierarchy/0-0-0-0.json%00",
    "%C0%AE%C0%AE/relay.sqlite3", "assets/orthophoto.tif", "../cache/",
])
def test_asset_name_tricks(hostile: Hostile, done: str, name: str) -> None:
    answer = raw(hostile.relay, "GET", with_token(f"/task/{done}/download/{name}"))
    assert_refused(answer, name)


@pytest.mark.parametrize("filename", [
    "../../evil.jpg", "..\\..\\evil.jpg", "/etc/evil.jpg", "C:\\evil.jpg", "....//evil.jpg", ".hidden.jpg",
    "..", ".", "", "a/../../b.jpg", "evil.jpg\x00.txt", "%2e%2e%2fevil.jpg", "x" * 1000 + ".jpg", "évil ü.jpg",
    ".forwarded", ".body.json",
])
def test_upload_file_name_tricks_stay_in_the_tasks_folder(hostile: Hostile, filename: str) -> None:
    uuid = init_task(hostile.relay, token=CLIENT_TOKEN)["uuid"]
    before = hostile.files_under_data_dir()
    content_type, body = multipart([("images", filename, b"\xff\xd8 not really a photo")])
    answer = raw(hostile.relay, "POST", with_token(f"/task/new/upload/{uuid}"), body=body,
                 headers={"Content-Type": content_type})
    assert answer.status == 200, answer.body[:300]
    folder = (hostile.relay.data_dir / "staging" / uuid).resolve()
    for path in hostile.files_under_data_dir() - before:
        assert folder in path.resolve().parents, path
        assert not path.name.endswith(".part"), path
    if "success" in answer.json:
        assert len(hostile.staged(uuid)) == 1 and not hostile.staged(uuid)[0].startswith(".")
    else:
        assert hostile.staged(uuid) == []


def test_concurrent_inits_with_one_set_uuid_have_exactly_one_winner(hostile: Hostile) -> None:
    from concurrent.futures import ThreadPoolExecutor
    wanted = new_uuid()
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: init_task(hostile.relay, headers={"set-uuid": wanted}, token=CLIENT_TOKEN),
                                range(10)))
    assert answers.count({"uuid": wanted}) == 1, answers
    assert answers.count({"error": f"Invalid set-uuid: {wanted}"}) == 9
