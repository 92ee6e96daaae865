"""Helpers for the relay's tests: talking NodeODX to a relay or a node, waiting, a webhook receiver.

Imported as `tests.relay.relay_helpers` (never `from conftest import ...`, which depends on which
conftest.py was imported last).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from proxy.models import TaskRecord
from proxy.redis_store import RedisStore
from proxy.store import SQLiteStore
from testkit.devnode import DevNode
from testkit.relay import Relay, start_redis, start_relay
from testkit.servers import ServerGroup, flags_to_argv, start_server

FAST = {"seconds_per_image": 0.02}
CHECK_INTERVAL = 0.3
QUEUED, RUNNING, FAILED, COMPLETED, CANCELED = 10, 20, 30, 40, 50
FINAL = (FAILED, COMPLETED, CANCELED)


def node_url(node: str | DevNode) -> str:
    if isinstance(node, str):
        return node
    return node.url + (f"?token={node.token}" if node.token else "")


# --- talking to a relay (or a node: the same API) ---------------------------------------------------
def api(server: Any, path: str, token: str | None = None, **query: Any) -> str:
    """`server.api(path)` with another token (or none, with token="") when asked."""
    if token is None:
        return server.api(path, **query)
    params = {**({"token": token} if token else {}), **query}
    return f"{server.url}{path}" + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")


def get_json(server: Any, path: str, token: str | None = None, **query: Any) -> Any:
    response = requests.get(api(server, path, token, **query), timeout=30)
    assert response.headers.get("Content-Type", "").startswith("application/json"), response.text[:300]
    return response.json()


def post_json(server: Any, path: str, data: Any = None, token: str | None = None, **kwargs: Any) -> Any:
    response = requests.post(api(server, path, token), data=data, timeout=60, **kwargs)
    assert response.headers.get("Content-Type", "").startswith("application/json"), response.text[:300]
    return response.json()


def form_data(fields: dict[str, str] | None) -> dict[str, tuple[None, str]]:
    """Text fields for `requests.post(files=...)`: multipart/form-data, the only init body NodeODX reads."""
    return {name: (None, value) for name, value in (fields or {}).items()}


def init_task(server: Any, fields: dict[str, str] | None = None, headers: dict[str, str] | None = None,
              token: str | None = None) -> dict:
    return post_json(server, "/task/new/init", files=form_data(fields), headers=headers, token=token)


def upload(server: Any, uuid: str, images: list[Path], token: str | None = None) -> dict:
    files = [("images", (path.name, path.read_bytes(), "image/jpeg")) for path in images]
    return post_json(server, f"/task/new/upload/{uuid}", files=files, token=token)


def commit(server: Any, uuid: str, token: str | None = None) -> dict:
    return post_json(server, f"/task/new/commit/{uuid}", token=token)


def submit(server: Any, images: list[Path], fields: dict[str, str] | None = None,
           headers: dict[str, str] | None = None, token: str | None = None, one_by_one: bool = False) -> str:
    """init, upload, commit; returns the uuid (fails the test on any error)."""
    result = init_task(server, fields, headers, token)
    assert "uuid" in result, result
    uuid = result["uuid"]
    for batch in ([[p] for p in images] if one_by_one else [images]):
        assert upload(server, uuid, batch, token) == {"success": True}
    result = commit(server, uuid, token)
    assert result == {"uuid": uuid}, result
    return uuid


def task_info(server: Any, uuid: str, token: str | None = None, **query: Any) -> dict:
    return get_json(server, f"/task/{uuid}/info", token, **query)


def wait_status(server: Any, uuid: str, codes: Iterable[int] = FINAL, timeout: float = 30,
                token: str | None = None) -> dict:
    """Poll the task's info until its status code is one of `codes`; the last info."""
    codes = tuple(codes)
    deadline = time.monotonic() + timeout
    info: dict = {}
    while time.monotonic() < deadline:
        info = task_info(server, uuid, token)
        if (info.get("status") or {}).get("code") in codes:
            return info
        time.sleep(0.1)
    raise AssertionError(f"task {uuid} did not reach {codes} in {timeout} s; last info: {json.dumps(info)[:600]}")


def wait_for(predicate: Callable[[], Any], timeout: float = 15, interval: float = 0.1, what: str = "") -> Any:
    """Poll `predicate` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")


def admin_nodes(relay: Relay) -> list[dict]:
    response = requests.get(f"{relay.url}/admin/nodes", headers=relay.admin_headers(), timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def restart_devnode(servers: ServerGroup, node: DevNode, **flags: Any) -> DevNode:
    """Start a stopped development node again on its old port and data folder, with `flags`."""
    argv = [sys.executable, "-m", "devnode", "--port", str(node.port), "--data-dir", str(node.data_dir),
            *flags_to_argv({**FAST, **({"token": node.token} if node.token else {}), **flags})]
    log_path = node.log_path.with_name(node.log_path.stem + "-again.log")
    again = start_server(node.name, argv, node.port, log_path, token=node.token, cls=DevNode, data_dir=node.data_dir)
    assert isinstance(again, DevNode)
    servers.add(again)
    return again


class Receiver:
    """A tiny webhook receiver on 127.0.0.1 that records every POST body."""

    def __init__(self) -> None:
        calls = self.calls = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                calls.append((self.path, json.loads(body or b"null")))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def relay_holding(kind: str, folder: Path, tasks: list[TaskRecord]) -> Iterator[Relay]:
    """A relay (no node needed) whose store, SQLite or Redis (`kind`), holds `tasks` before it starts, as the
    store of a relay that has run for a while holds them. Everything it started is stopped on the way out."""

    async def write(store: Any) -> None:
        await store.open()
        for task in tasks:
            await store.put_task(task)
        await store.close()

    with ServerGroup(folder) as group:
        data_dir = group.tmp_path / "relay"
        flags: dict[str, Any] = {}
        if kind == "redis":
            redis_server = group.add(start_redis(group.tmp_path))
            flags["redis"] = redis_server.url
            asyncio.run(write(RedisStore(redis_server.url)))
        else:
            asyncio.run(write(SQLiteStore(data_dir / "relay.sqlite3")))
        started = group.add(start_relay(group.tmp_path, [], data_dir=data_dir, check_interval=5, **flags))
        assert isinstance(started, Relay)
        yield started
