"""Missing or wrong credentials, on every operation of the OpenAPI document: 401 or 403 with a JSON error,
and nothing done. Operations that need no token (auth, the document, the nodes' webhook) say why."""
from __future__ import annotations

from pathlib import Path

import pytest
import requests

from proxy.openapi import document
from tests.hostile.hostile_helpers import ADMIN_TOKEN, CLIENT_TOKEN, Hostile, new_uuid
from tests.relay.relay_helpers import COMPLETED, admin_nodes, submit, wait_status

DOC = document()
OPERATIONS = [(method.upper(), path, op) for path, item in DOC["paths"].items() for method, op in item.items()]
CLIENT_OPS = [(m, p) for m, p, op in OPERATIONS if op.get("security", DOC["security"]) == DOC["security"]]
ADMIN_OPS = [(m, p) for m, p, op in OPERATIONS if p.startswith("/admin/")]
OPEN_OPS = [(m, p) for m, p, op in OPERATIONS if op.get("security") == []]


@pytest.fixture(scope="module")
def task(hostile: Hostile, sample_images: list[Path]) -> str:
    uuid = submit(hostile.relay, sample_images[:2], token=CLIENT_TOKEN)
    wait_status(hostile.relay, uuid, [COMPLETED], token=CLIENT_TOKEN)
    return uuid


def fill(path: str, uuid: str, node_id: str) -> str:
    return path.replace("{uuid}", uuid).replace("{asset}", "all.zip").replace("{node_id}", node_id)


def call(hostile: Hostile, method: str, path: str, *, query: dict | None = None,
         headers: dict | None = None) -> requests.Response:
    body = {"uuid": path.split("/")[2]} if path.startswith("/task/") else {}
    return requests.request(method, hostile.relay.url + path, params=query, headers=headers, data=body, timeout=10)


def test_the_operations_are_sorted_into_client_admin_and_open() -> None:
    assert len(CLIENT_OPS) + len(ADMIN_OPS) + len(OPEN_OPS) == len(OPERATIONS)
    assert {p for _, p in OPEN_OPS} == {"/auth/info", "/auth/login", "/auth/register", "/openapi.json",
                                        "/_relay/webhook/{uuid}", "/task/{uuid}/signed/{expires}/{sig}/{asset}"}


@pytest.mark.parametrize("method,path", CLIENT_OPS)
def test_client_operations_need_the_token(hostile: Hostile, task: str, method: str, path: str) -> None:
    url = fill(path, task, "x")
    for query, headers, status in [
        ({}, {}, 401), ({"token": ""}, {}, 401), ({}, {"Authorization": "Bearer "}, 401),
        ({"token": "wrong"}, {}, 403), ({"token": CLIENT_TOKEN.upper()}, {}, 403),
        ({"token": CLIENT_TOKEN + "x"}, {}, 403), ({}, {"Authorization": "Bearer wrong"}, 403),
        ({"token": ADMIN_TOKEN}, {}, 403),  # the admin token is not a client token
    ]:
        response = call(hostile, method, url, query=query, headers=headers)
        assert response.status_code == status, (query, headers, response.text)
        assert response.headers["Content-Type"].startswith("application/json")
        assert "token" in response.json()["error"].lower()
    assert wait_status(hostile.relay, task, token=CLIENT_TOKEN)["status"]["code"] == COMPLETED  # untouched


@pytest.mark.parametrize("method,path", ADMIN_OPS)
def test_admin_operations_need_the_admin_token(hostile: Hostile, method: str, path: str) -> None:
    node_id = admin_nodes(hostile.relay)[0]["id"]
    url = fill(path, new_uuid(), node_id)
    for query, headers, status in [
        ({}, {}, 401), ({}, {"Authorization": "Bearer "}, 401), ({}, {"Authorization": ADMIN_TOKEN}, 401),
        ({}, {"Authorization": "Bearer wrong"}, 403), ({}, {"Authorization": f"Bearer {ADMIN_TOKEN}x"}, 403),
        ({}, {"Authorization": f"Bearer {CLIENT_TOKEN}"}, 403),  # a client token is not an admin token
        ({"token": CLIENT_TOKEN}, {}, 401), ({"admin_token": "wrong"}, {}, 403),
    ]:
        response = call(hostile, method, url, query=query, headers=headers)
        assert response.status_code == status, (query, headers, response.text)
        assert "error" in response.json()
    assert [n["id"] for n in admin_nodes(hostile.relay)] == [node_id]  # nothing removed, added or locked
    assert admin_nodes(hostile.relay)[0]["locked"] is False


def test_operations_without_a_token(hostile: Hostile, task: str) -> None:
    relay = hostile.relay
    assert requests.get(relay.url + "/auth/info", timeout=10).status_code == 200
    assert requests.get(relay.url + "/openapi.json", timeout=10).status_code == 200
    login = requests.post(relay.url + "/auth/login", data={"username": "eve", "password": "guess"}, timeout=10)
    assert login.status_code == 403 and "error" in login.json()
    register = requests.post(relay.url + "/auth/register", data={"username": "eve", "password": "long enough"},
                             timeout=10)
    assert register.status_code == 403 and "error" in register.json()
    for query in ({}, {"sig": "0" * 32}, {"sig": "é"}, {"sig": "0" * 32, "token": CLIENT_TOKEN}):
        response = requests.post(f"{relay.url}/_relay/webhook/{task}", params=query, timeout=10,
                                 json={"uuid": task, "status": {"code": 30}})
        assert response.status_code == 403 and "error" in response.json(), response.text
    for expires, sig in (("9999999999", "0" * 32), ("soon", "0" * 32), ("9999999999", "é"), ("-1", "0" * 32)):
        for query in ({}, {"token": CLIENT_TOKEN}):  # a signed download takes its signature, never a token
            response = requests.get(f"{relay.url}/task/{task}/signed/{expires}/{sig}/orthophoto.tif", params=query,
                                    timeout=10)
            assert response.status_code == 403 and "error" in response.json(), response.text
    assert wait_status(relay, task, token=CLIENT_TOKEN)["status"]["code"] == COMPLETED
