"""Tokens: the relay's own (401 missing, 403 wrong), accounts, ownership, and node tokens that never leak."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from tests.relay.relay_helpers import (
    CANCELED,
    COMPLETED,
    api,
    commit,
    get_json,
    init_task,
    post_json,
    submit,
    task_info,
    upload,
    wait_for,
    wait_status,
)

pytestmark = pytest.mark.slow

TOKEN = "relay-client-token-9"
NODE_SECRET = "NodeSecret-d41d8cd98f00b204"


def test_relay_token_missing_is_401_and_wrong_is_403(relay_factory, fast_node, sample_images: list[Path]) -> None:
    relay = relay_factory([fast_node()], token=TOKEN)
    uuid = submit(relay, sample_images[:2])
    calls = [("GET", "/info", None), ("GET", "/options", None), ("GET", "/task/list", None),
             ("GET", f"/task/{uuid}/info", None), ("GET", f"/task/{uuid}/output", None),
             ("GET", f"/task/{uuid}/download/all.zip", None), ("POST", "/task/new/init", {}),
             ("POST", f"/task/new/upload/{uuid}", {}), ("POST", f"/task/new/commit/{uuid}", None),
             ("POST", "/task/new", {}), ("POST", "/task/cancel", {"uuid": uuid}),
             ("POST", "/task/remove", {"uuid": uuid}), ("POST", "/task/restart", {"uuid": uuid})]
    for token, status in (("", 401), ("wrong", 403), (TOKEN.upper(), 403)):
        for method, path, data in calls:
            response = requests.request(method, api(relay, path, token), data=data, timeout=10)
            assert response.status_code == status, (token, method, path, response.text)
            assert response.headers["Content-Type"].startswith("application/json")
            assert "error" in response.json() and "token" in response.json()["error"].lower()
    # nothing above touched the task
    assert wait_status(relay, uuid)["status"]["code"] == COMPLETED
    assert get_json(relay, "/task/list") == [{"uuid": uuid}]
    # the token also works as a bearer header; /auth/info needs none
    response = requests.get(f"{relay.url}/task/list", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.json() == [{"uuid": uuid}]
    assert requests.get(f"{relay.url}/auth/info", timeout=10).status_code == 200


def test_without_registration(relay_factory) -> None:
    relay = relay_factory()
    info = get_json(relay, "/auth/info")
    assert info["loginUrl"] is None and info["registerUrl"] is None and "not enabled" in info["message"]
    response = requests.post(f"{relay.url}/auth/register", data={"username": "eve", "password": "long enough"},
                             timeout=10)
    assert response.status_code == 403 and "Registration is turned off" in response.json()["error"]
    response = requests.post(f"{relay.url}/auth/login", data={"username": "eve", "password": "long enough"},
                             timeout=10)
    assert response.status_code == 403 and "error" in response.json()
    assert isinstance(get_json(relay, "/task/list"), list)  # no token needed on an open relay


def register(relay, username: str, password: str = "correct horse", as_json: bool = False) -> requests.Response:
    body = {"username": username, "password": password}
    if as_json:
        return requests.post(f"{relay.url}/auth/register", json=body, timeout=30)
    return requests.post(f"{relay.url}/auth/register", data=body, timeout=30)


def test_accounts_and_ownership(relay_factory, fast_node, sample_images: list[Path]) -> None:
    node = fast_node(slots=2, seconds_per_image=0.3)
    relay = relay_factory([node], allow_registration=True, token=TOKEN)
    info = get_json(relay, "/auth/info")
    assert info["loginUrl"] == "/auth/login" and info["registerUrl"] == "/auth/register"
    alice = register(relay, "alice").json()["token"]
    bob = register(relay, "bob", as_json=True).json()["token"]
    assert alice and bob and alice != bob
    assert register(relay, "alice").status_code == 409
    assert register(relay, "carol", "short").status_code == 400
    assert register(relay, "../carol").status_code == 400
    assert requests.get(f"{relay.url}/task/list", timeout=10).status_code == 401  # accounts: a token is needed

    wrong = requests.post(f"{relay.url}/auth/login", data={"username": "alice", "password": "nope"}, timeout=30)
    assert wrong.status_code == 403 and "error" in wrong.json()
    login = requests.post(f"{relay.url}/auth/login", data={"username": "alice", "password": "correct horse"},
                          timeout=30)
    assert login.status_code == 200
    old, alice = alice, login.json()["token"]
    assert requests.get(api(relay, "/task/list", old), timeout=10).status_code == 403  # the old one is gone

    mine = submit(relay, sample_images[:3], token=alice)
    admins = submit(relay, sample_images[:2], token=TOKEN)
    assert get_json(relay, "/task/list", alice) == [{"uuid": mine}]
    assert get_json(relay, "/task/list", TOKEN) == [{"uuid": admins}]
    assert get_json(relay, "/task/list", bob) == []
    # every door is shut to bob, and looks exactly like a task that does not exist
    for uuid in (mine, admins):
        assert task_info(relay, uuid, bob) == {"error": f"{uuid} not found"}
        assert get_json(relay, f"/task/{uuid}/output", bob) == {"error": f"{uuid} not found"}
        assert "error" in get_json(relay, f"/task/{uuid}/download/all.zip", bob)
        assert "error" in get_json(relay, f"/task/{uuid}/download/orthophoto.tif", bob)
        for action in ("cancel", "remove", "restart"):
            assert "error" in post_json(relay, f"/task/{action}", {"uuid": uuid}, bob)
    assert get_json(relay, f"/task/{mine}/info", alice)["status"]["code"] != CANCELED
    assert wait_status(relay, mine, token=alice)["status"]["code"] == COMPLETED
    assert requests.get(api(relay, f"/task/{mine}/download/all.zip", alice), timeout=30).status_code == 200
    # nor may bob upload to, or commit, alice's task in the making
    pending = init_task(relay, token=alice)["uuid"]
    assert "error" in upload(relay, pending, sample_images[:2], bob)
    assert "error" in commit(relay, pending, bob)
    assert upload(relay, pending, sample_images[:2], alice) == {"success": True}
    assert commit(relay, pending, alice) == {"uuid": pending}
    # nor reuse alice's uuid with set-uuid
    assert "error" in init_task(relay, headers={"set-uuid": mine}, token=bob)
    assert {t["uuid"] for t in get_json(relay, "/task/list", alice)} == {mine, pending}


def test_node_tokens_never_appear_in_replies_or_the_log(relay_factory, fast_node, sample_images: list[Path]) -> None:
    node = fast_node(slots=1, token=NODE_SECRET)
    relay = relay_factory([f"{node.url}?token={NODE_SECRET}"], admin_token="adm", log_level="DEBUG",
                          offline_after=1)
    replies: list[str] = []

    def keep(response: requests.Response) -> requests.Response:
        replies.append(response.url.split("?")[0] + " " + json.dumps(dict(response.headers)) + " " +
                       response.content.decode("latin-1"))
        return response

    def get(path: str, **kwargs) -> requests.Response:
        return keep(requests.get(relay.url + path, timeout=30, **kwargs))

    def post(path: str, **kwargs) -> requests.Response:
        return keep(requests.post(relay.url + path, timeout=30, **kwargs))

    files = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in sample_images[:3]]
    uuid = post("/task/new/init", files={"name": (None, "leak?")}).json()["uuid"]
    post(f"/task/new/upload/{uuid}", files=files)
    post(f"/task/new/commit/{uuid}")
    wait_for(lambda: get(f"/task/{uuid}/info").json()["status"]["code"] == COMPLETED, what="completion")
    for path in ("/info", "/options", "/task/list", f"/task/{uuid}/output", "/auth/info",
                 f"/task/{uuid}/info?with_output=0", f"/task/{uuid}/download/orthophoto.tif",
                 f"/task/{uuid}/download/nothing.tif", f"/task/{uuid}/download/all.zip"):
        get(path)
    get(f"/task/{uuid}/download/all.zip", headers={"Range": "bytes=0-99"})
    get("/admin/nodes", headers={"Authorization": "Bearer adm"})
    post("/task/restart", data={"uuid": uuid})
    post("/task/cancel", data={"uuid": uuid})
    second = post("/task/new", files=files).json()["uuid"]  # one node, one slot: waits in the relay's queue
    # the node goes away: every error now names it, and must still not carry its token
    node.stop()
    wait_for(lambda: not get("/admin/nodes", headers={"Authorization": "Bearer adm"}).json()[0]["online"],
             what="node offline")
    for path in (f"/task/{uuid}/info", f"/task/{uuid}/output", f"/task/{uuid}/download/all.zip",
                 f"/task/{second}/info", f"/task/{second}/output", "/info", "/options"):
        get(path)
    post("/task/remove", data={"uuid": uuid})
    post("/task/cancel", data={"uuid": second})
    post("/admin/nodes", headers={"Authorization": "Bearer adm"}, json={"url": f"{node.url}?token={NODE_SECRET}"})
    for bad in (f"ftp://127.0.0.1:1?token={NODE_SECRET}", f"http://127.0.0.1:port?token={NODE_SECRET}"):
        refused = post("/admin/nodes", headers={"Authorization": "Bearer adm"}, json={"url": bad})
        assert refused.status_code == 400
    assert len(replies) > 30
    leaks = [reply[:300] for reply in replies if NODE_SECRET in reply]
    assert not leaks, leaks
    assert any("unreachable" in reply for reply in replies)  # errors about the node were part of the replies
    log = relay.log()
    assert "node offline" in log and uuid in log
    assert NODE_SECRET not in log
