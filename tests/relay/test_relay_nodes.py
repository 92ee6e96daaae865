"""Nodes at run time: health (offline and back), the admin API and its token, `odx-relay nodes ...`."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from testkit.servers import REPO
from tests.relay.relay_helpers import (
    COMPLETED,
    admin_nodes,
    get_json,
    restart_devnode,
    submit,
    task_info,
    wait_for,
    wait_status,
)

pytestmark = pytest.mark.slow

ADMIN = "admin-secret-77"
NODE_TOKEN = "node-token-b-31337"


def by_url(relay, url: str) -> dict:
    return next(n for n in admin_nodes(relay) if n["url"] == url)


def test_a_node_going_offline_and_coming_back(servers, relay_factory, fast_node, sample_images: list[Path]) -> None:
    a, b = fast_node(slots=1), fast_node(slots=2, token=NODE_TOKEN)
    relay = relay_factory([a, b], admin_token=ADMIN, offline_after=2)
    a_id = by_url(relay, a.url)["id"]
    requests.post(f"{relay.url}/admin/nodes/{a_id}/lock", headers=relay.admin_headers(), timeout=10)
    on_b = submit(relay, sample_images[:3])
    assert wait_status(relay, on_b)["status"]["code"] == COMPLETED
    requests.post(f"{relay.url}/admin/nodes/{a_id}/unlock", headers=relay.admin_headers(), timeout=10)
    assert get_json(relay, "/info")["maxParallelTasks"] == 3
    wait_for((relay.data_dir / "results" / on_b / "all.zip").is_file, what="its results archived by the relay")

    b.stop()
    gone = wait_for(lambda: (n := by_url(relay, b.url)) and not n["online"] and n, what="b offline")
    assert gone["failures"] >= 2 and "unreachable" in gone["lastError"] and gone["hasToken"] is True
    assert NODE_TOKEN not in str(gone)
    info = get_json(relay, "/info")
    assert info["relay"]["online"] == 1 and info["relay"]["offline"] == 1 and info["relay"]["nodes"] == 2
    assert info["maxParallelTasks"] == 1 and info["totalMemory"] == get_json(a, "/info")["totalMemory"]
    # the task held by the offline node: its last known state, and clear errors for the rest
    assert task_info(relay, on_b)["status"]["code"] == COMPLETED
    assert "unreachable" in get_json(relay, f"/task/{on_b}/output")["error"]
    assert requests.get(relay.api(f"/task/{on_b}/download/all.zip"), timeout=30).status_code == 200  # the relay's copy
    # new tasks go to the node that is online
    on_a = submit(relay, sample_images[:2])
    assert task_info(a, on_a)["uuid"] == on_a

    b = restart_devnode(servers, b, slots=2)
    back = wait_for(lambda: (n := by_url(relay, b.url)) and n["online"] and n, what="b online again")
    assert back["failures"] == 0 and back["lastError"] == ""
    info = wait_for(lambda: (i := get_json(relay, "/info"))["relay"]["online"] == 2 and i, what="/info sees b")
    assert info["relay"]["offline"] == 0 and info["maxParallelTasks"] == 3
    assert requests.get(relay.api(f"/task/{on_b}/download/all.zip"), timeout=30).status_code == 200
    assert wait_status(relay, on_a)["status"]["code"] == COMPLETED
    assert NODE_TOKEN not in relay.log()


def test_a_node_down_at_start_is_offline_then_joins(servers, relay_factory, fast_node) -> None:
    node = fast_node()
    node.stop()
    relay = relay_factory([node], admin_token=ADMIN)
    assert by_url(relay, node.url)["online"] is False
    info = get_json(relay, "/info")
    assert info["relay"]["online"] == 0 and info["maxParallelTasks"] == 0 and info["totalMemory"] == 0
    restart_devnode(servers, node)
    wait_for(lambda: get_json(relay, "/info")["relay"]["online"] == 1, what="the node joins")


def test_the_admin_api_needs_the_admin_token(relay_factory, fast_node) -> None:
    node = fast_node()
    relay = relay_factory([node], admin_token=ADMIN, token="client-token")
    cases = [({}, 401), ({"Authorization": "Bearer "}, 401), ({"Authorization": "Bearer wrong"}, 403),
             ({"Authorization": "Bearer client-token"}, 403),  # the relay's client token is not an admin token
             ({"Authorization": f"Bearer {ADMIN}x"}, 403), ({"Authorization": ADMIN}, 401)]
    for headers, status in cases:
        for method, path in [("GET", "/admin/nodes"), ("POST", "/admin/nodes"), ("DELETE", "/admin/nodes/x"),
                             ("POST", "/admin/nodes/x/lock"), ("POST", "/admin/nodes/x/unlock")]:
            response = requests.request(method, relay.url + path, headers=headers, json={"url": node.url},
                                        timeout=10)
            assert response.status_code == status, (headers, method, path, response.text)
            assert "error" in response.json()
    assert len(admin_nodes(relay)) == 1


def test_the_admin_api_is_off_without_an_admin_token(relay_factory, fast_node) -> None:
    relay = relay_factory([fast_node()])
    response = requests.get(relay.url + "/admin/nodes", headers={"Authorization": "Bearer "}, timeout=10)
    assert response.status_code == 403 and "admin" in response.json()["error"]
    response = requests.get(relay.url + "/admin/nodes", headers={"Authorization": "Bearer anything"}, timeout=10)
    assert response.status_code == 403


def test_admin_api_add_lock_unlock_remove(relay_factory, fast_node) -> None:
    a, b = fast_node(), fast_node(token=NODE_TOKEN, slots=3)
    relay = relay_factory([a], admin_token=ADMIN)
    h = relay.admin_headers()
    response = requests.post(relay.url + "/admin/nodes", headers=h, timeout=10,
                             json={"url": f"{b.url}?token={NODE_TOKEN}", "label": "bee"})
    assert response.status_code == 201, response.text
    added = response.json()
    assert added["online"] is True and added["label"] == "bee" and added["hasToken"] is True
    assert added["info"]["maxParallelTasks"] == 3
    assert NODE_TOKEN not in response.text
    assert requests.post(relay.url + "/admin/nodes", headers=h, json={"url": b.url}, timeout=10).status_code == 409
    assert requests.post(relay.url + "/admin/nodes", headers=h, json={"nope": 1}, timeout=10).status_code == 400
    assert requests.post(relay.url + "/admin/nodes", headers=h, data="not json", timeout=10).status_code == 400
    assert get_json(relay, "/info")["maxParallelTasks"] == 4
    node_id = added["id"]
    assert requests.post(f"{relay.url}/admin/nodes/{node_id}/lock", headers=h, timeout=10).json()["locked"] is True
    assert get_json(relay, "/info")["relay"]["locked"] == 1
    assert requests.post(f"{relay.url}/admin/nodes/{node_id}/unlock", headers=h, timeout=10).json()["locked"] is False
    for method, path in [("DELETE", "/admin/nodes/nope"), ("POST", "/admin/nodes/nope/lock")]:
        response = requests.request(method, relay.url + path, headers=h, timeout=10)
        assert response.status_code == 404 and "error" in response.json()
    assert requests.delete(f"{relay.url}/admin/nodes/{node_id}", headers=h, timeout=10).json() == {"removed": node_id}
    assert [n["url"] for n in admin_nodes(relay)] == [a.url]
    assert get_json(relay, "/info")["relay"]["nodes"] == 1


def cli(relay, *args: str, admin_token: str | None = ADMIN, env: dict | None = None) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "proxy", "nodes", "--relay", relay.url]
    if admin_token is not None:
        argv += ["--admin-token", admin_token]
    return subprocess.run([*argv, *args], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_the_nodes_command_line(relay_factory, fast_node) -> None:
    a, b = fast_node(slots=2), fast_node(token=NODE_TOKEN)
    relay = relay_factory([a], admin_token=ADMIN)
    listed = cli(relay, "list")
    assert listed.returncode == 0, listed.stderr
    a_id = by_url(relay, a.url)["id"]
    assert a_id in listed.stdout and "online" in listed.stdout and a.url in listed.stdout
    assert "slots=2" in listed.stdout

    added = cli(relay, "add", f"{b.url}?token={NODE_TOKEN}", "--label", "second")
    assert added.returncode == 0, added.stdout + added.stderr
    assert NODE_TOKEN not in added.stdout and '"label": "second"' in added.stdout
    b_id = by_url(relay, b.url)["id"]
    assert by_url(relay, b.url)["online"] is True

    assert cli(relay, "lock", b_id).returncode == 0
    assert by_url(relay, b.url)["locked"] is True
    assert "locked" in cli(relay, "list").stdout
    assert cli(relay, "unlock", b_id).returncode == 0
    assert by_url(relay, b.url)["locked"] is False
    assert cli(relay, "remove", b_id).returncode == 0
    assert [n["id"] for n in admin_nodes(relay)] == [a_id]

    missing = cli(relay, "lock", "nope")
    assert missing.returncode == 1 and "404" in missing.stdout
    wrong = cli(relay, "list", admin_token="wrong")
    assert wrong.returncode == 1 and "403" in wrong.stdout
    by_env = cli(relay, "list", admin_token=None, env={"ODX_RELAY_ADMIN_TOKEN": ADMIN})
    assert by_env.returncode == 0 and a_id in by_env.stdout
    assert NODE_TOKEN not in relay.log()
