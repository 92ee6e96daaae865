"""The two ways a client reaches NodeODX in the conformance suite: straight to a real NodeODX 2.3.1 node
("direct"), or through a real relay in front of real NodeODX nodes ("relay").

Every conformance test sends the same request both ways and compares what comes back. A `Side` knows its
server and its token, so a test says `side.post("/task/new/init", ...)` once and runs it on both sides
(`both(...)` runs them at the same time, which halves the wait for tasks to end).

Imported as `tests.conformance.sides`; the fixtures that start the servers live in this folder's conftest.py.
"""
from __future__ import annotations

import json
import re
import threading
import time
import zipfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import requests

from testkit.servers import ServerProcess

NODE_TOKEN = "conformance-node-token"
RELAY_TOKEN = "conformance-relay-token"
ADMIN_TOKEN = "conformance-admin-token"
CHECK_INTERVAL = 0.3  # the relay's node checks, in seconds
# The relay's operator flag that lets `zipurl` reach private and loopback addresses (SSRF protection is on
# by default): `--zipurl-allow-private`.
ZIPURL_PRIVATE_FLAG = "zipurl_allow_private"

QUEUED, RUNNING, FAILED, COMPLETED, CANCELED = 10, 20, 30, 40, 50
FINAL = (FAILED, COMPLETED, CANCELED)
INFO_KEYS = {"uuid", "name", "dateCreated", "processingTime", "status", "options", "imagesCount", "progress"}
DEFAULT_NAME = re.compile(r"^Task of \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")  # NodeODX's name for ""
TOKEN_ERROR = "Invalid authentication token: token does not match."  # NodeODX's, from libs/auth/SimpleTokenAuth.js
T = TypeVar("T")
SAME = object()  # "the side's own token"


@dataclass
class Side:
    """One way to NodeODX: `direct` (a NodeODX node) or `relay` (the relay in front of NodeODX nodes)."""

    name: str
    server: ServerProcess
    token: str

    def __repr__(self) -> str:  # shows in assertion messages and test ids
        return self.name

    def url(self, path: str, token: Any = SAME, **query: Any) -> str:
        token = self.token if token is SAME else token
        params = {**({"token": token} if token else {}), **query}
        return f"{self.server.url}{path}" + (f"?{urlencode(params)}" if params else "")

    def get(self, path: str, token: Any = SAME, headers: dict | None = None, **query: Any) -> requests.Response:
        return requests.get(self.url(path, token, **query), headers=headers, timeout=60)

    def post(self, path: str, token: Any = SAME, **kwargs: Any) -> requests.Response:
        return requests.post(self.url(path, token), timeout=60, **kwargs)

    # --- the NodeODX calls every test needs, failing the test on anything unexpected -----------------
    def init(self, fields: dict[str, str] | None = None, headers: dict[str, str] | None = None,
             token: Any = SAME) -> Any:
        """`/task/new/init` with `fields` as multipart/form-data, the only way NodeODX reads them."""
        return json_of(self.post("/task/new/init", token, files=multipart(fields or {}), headers=headers))

    def upload(self, uuid: str, images: Iterable[Path], token: Any = SAME) -> Any:
        return json_of(self.post(f"/task/new/upload/{uuid}", token, files=image_parts(images)))

    def commit(self, uuid: str, token: Any = SAME) -> Any:
        return json_of(self.post(f"/task/new/commit/{uuid}", token))

    def submit(self, images: list[Path], fields: dict[str, str] | None = None,
               headers: dict[str, str] | None = None) -> str:
        """init, upload, commit; the uuid."""
        created = self.init(fields, headers)
        assert isinstance(created, dict) and "uuid" in created, f"{self}: init answered {created}"
        uuid = created["uuid"]
        assert self.upload(uuid, images) == {"success": True}, f"{self}: upload refused"
        committed = self.commit(uuid)
        assert committed == {"uuid": uuid}, f"{self}: commit answered {committed}"
        return uuid

    def info(self, uuid: str, **query: Any) -> Any:
        return json_of(self.get(f"/task/{uuid}/info", **query))

    def wait(self, uuid: str, codes: Iterable[int] = FINAL, timeout: float = 40) -> dict:
        """Poll the task's info until its status code is one of `codes`; that info."""
        codes = tuple(codes)
        deadline = time.monotonic() + timeout
        info: Any = {}
        while time.monotonic() < deadline:
            info = self.info(uuid)
            if isinstance(info, dict) and (info.get("status") or {}).get("code") in codes:
                return info
            time.sleep(0.1)
        raise AssertionError(f"{self}: task {uuid} did not reach {codes} in {timeout} s; last info {info}")

    def task_post(self, path: str, body: dict[str, Any], as_json: bool = False, token: Any = SAME) -> Any:
        """`/task/cancel|remove|restart` with a url-encoded (default) or JSON body, as NodeODX reads them."""
        response = self.post(path, token, json=body) if as_json else self.post(path, token, data=body)
        return json_of(response)

    def idle(self, timeout: float = 40) -> dict:
        """Wait until `/info` shows no queued or running task; that info."""
        deadline = time.monotonic() + timeout
        info: Any = {}
        while time.monotonic() < deadline:
            info = json_of(self.get("/info"))
            if info.get("taskQueueCount") == 0:
                return info
            time.sleep(0.1)
        raise AssertionError(f"{self}: still busy after {timeout} s: {info}")


def multipart(fields: dict[str, str]) -> list[tuple[str, tuple[None, str]]]:
    """Text fields as multipart parts (requests sends `files=` as multipart/form-data)."""
    return [(key, (None, value)) for key, value in fields.items()]


def image_parts(images: Iterable[Path]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", (path.name, path.read_bytes(), "image/jpeg")) for path in images]


def media_type(response: requests.Response) -> str:
    """The Content-Type without parameters (`application/json; charset=utf-8` -> `application/json`):
    JSON has no charset parameter of its own (RFC 8259), so only the media type is compared."""
    return response.headers.get("Content-Type", "").split(";")[0].strip().lower()


def json_of(response: requests.Response) -> Any:
    """The JSON body, after checking that it is one: status 200 and a JSON content type, as NodeODX answers
    every API call (errors included)."""
    assert response.status_code == 200, f"HTTP {response.status_code}: {response.text[:300]}"
    assert media_type(response) == "application/json", f"{response.headers.get('Content-Type')}: {response.text[:300]}"
    return response.json()


def answer(response: requests.Response) -> tuple[int, str, Any]:
    """(status, media type, JSON body or the first bytes of the body): what a client can tell apart."""
    body: Any = response.content[:200]
    if media_type(response) == "application/json":  # never decode a zip as text: guessing its charset takes seconds
        try:
            body = response.json()
        except ValueError:
            pass
    return response.status_code, media_type(response), body


def both(direct: Side, relay: Side, action: Callable[[Side], T]) -> tuple[T, T]:
    """`action(direct)` and `action(relay)` at the same time; their results, direct first."""
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(action, direct), pool.submit(action, relay)]
        return futures[0].result(), futures[1].result()


def zip_names(content: bytes) -> list[str]:
    with zipfile.ZipFile(BytesIO(content)) as archive:
        return sorted(name for name in archive.namelist() if not name.endswith("/"))


def option_map(options: list[dict]) -> dict[str, Any]:
    """NodeODX's `[{"name": n, "value": v}, ...]` as a dict (the order is not part of the API)."""
    return {item["name"]: item["value"] for item in options}


def comparable_info(info: dict) -> dict:
    """A task's info without what differs between any two tasks: uuid and times; a default name
    ("Task of <now>") keeps only its form; options as a dict."""
    out = {k: option_map(v) if k == "options" else v for k, v in info.items()
           if k not in ("uuid", "dateCreated", "processingTime", "output")}
    if isinstance(out.get("name"), str) and DEFAULT_NAME.match(out["name"]):
        out["name"] = "Task of <date>"
    return out


def assert_same_info(direct: dict, relay: dict) -> None:
    """Two tasks' infos (one per side, made by the same requests) tell a client the same things."""
    assert isinstance(direct, dict) and isinstance(relay, dict), (direct, relay)
    assert set(relay) == set(direct), f"keys differ: direct {sorted(direct)}, relay {sorted(relay)}"
    assert comparable_info(relay) == comparable_info(direct), f"direct {pretty(direct)}\nrelay  {pretty(relay)}"
    for key in ("dateCreated", "processingTime"):
        assert type(relay.get(key)) is type(direct.get(key)), (key, direct.get(key), relay.get(key))
    assert (relay.get("processingTime", 0) < 0) == (direct.get("processingTime", 0) < 0), (direct, relay)


@dataclass
class Cluster:
    """A direct NodeODX node and a relay in front of other NodeODX nodes, all configured alike."""

    direct: Side
    relay: Side
    relay_server: ServerProcess
    nodes: list[ServerProcess] = field(default_factory=list)  # the relay's nodes
    node_token: str = ""

    @property
    def sides(self) -> tuple[Side, Side]:
        return self.direct, self.relay

    def both(self, action: Callable[[Side], T]) -> tuple[T, T]:
        return both(self.direct, self.relay, action)

    def each(self, action: Callable[[Side, Any], T], values: tuple[Any, Any]) -> tuple[T, T]:
        """`action(direct, values[0])` and `action(relay, values[1])` at the same time (a uuid per side)."""
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(action, side, value) for side, value in zip(self.sides, values)]
            return futures[0].result(), futures[1].result()


class ZipServer:
    """Serves one zip of photos on 127.0.0.1 for `zipurl`, and records who asked for it."""

    def __init__(self, folder: Path, images: list[Path]):
        folder.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(folder / "photos.zip", "w") as archive:
            for image in images:
                archive.write(image, image.name)
        self.requests: list[tuple[str, str]] = []
        seen = self.requests

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(folder), **kwargs)

            def log_request(self, code: Any = "-", size: Any = "-") -> None:
                seen.append((self.command, self.path))

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/photos.zip"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def pretty(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)[:1500]


class Mismatches:
    """Collects every difference a long scenario finds before failing, so one run reports them all."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def same(self, what: str, direct: Any, relay: Any) -> None:
        if relay != direct:
            self.found.append(f"{what}: direct {pretty(direct)}, relay {pretty(relay)}")

    def same_info(self, what: str, direct: dict, relay: dict) -> None:
        try:
            assert_same_info(direct, relay)
        except AssertionError as exc:
            self.found.append(f"{what}: {exc}")

    def check(self) -> None:
        assert not self.found, "\n".join(self.found)
