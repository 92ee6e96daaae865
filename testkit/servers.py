"""Any server as a subprocess on a free 127.0.0.1 port: start it, wait until it answers, stop it.

Tests (and the bench, the demo, the fault suite) talk to their servers over HTTP exactly as users do, so
what is tested is the program, its flags and its exit, not an in-process stand-in. Each server logs to a
file in the caller's folder; when it fails to come up the error says why, with the end of that log. Every
server started must be stopped: use `ServerGroup` (the conftest fixtures do) or the server as a context
manager. The servers themselves: `testkit.devnode`, `testkit.relay`, `testkit.nodeodx`.
"""
from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port nobody listens on at the moment, on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def flags_to_argv(flags: dict[str, Any]) -> list[str]:
    """`max_images=5, range=True, token=None` -> `["--max-images", "5", "--range"]` (None/False are left out)."""
    argv: list[str] = []
    for name, value in flags.items():
        flag = "--" + name.replace("_", "-")
        if value is None or value is False:
            continue
        argv += [flag] if value is True else [flag, str(value)]
    return argv


@dataclass
class ServerProcess:
    """One server subprocess: where it listens, its process, its log."""

    name: str
    url: str
    port: int
    process: subprocess.Popen
    log_path: Path
    token: str = ""

    def api(self, path: str, **query: Any) -> str:
        """Absolute URL of `path`, with the server's token (if any) and `query` in the query string."""
        params = {**({"token": self.token} if self.token else {}), **query}
        return f"{self.url}{path}" + (f"?{urlencode(params)}" if params else "")

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for the server to exit by itself (a crash it was told to simulate); its exit status."""
        return self.process.wait(timeout)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, then SIGKILL if it does not go; returns the exit status. Safe to call twice."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _ready(url: str) -> bool:
    try:
        response = requests.get(url, timeout=1)
    except requests.RequestException:
        return False
    return response.status_code == 200


def start_server(name: str, argv: list[str], port: int, log_path: Path, *, ready_path: str = "/info",
                 token: str = "", env: dict[str, str] | None = None, timeout: float = START_TIMEOUT,
                 cls: type[ServerProcess] = ServerProcess, cwd: Path = REPO, **extra: Any) -> ServerProcess:
    """Run `argv` (a server told to listen on 127.0.0.1:`port`) and wait until `ready_path` answers 200."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(argv, cwd=cwd, stdout=log_file, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    server = cls(name=name, url=f"http://127.0.0.1:{port}", port=port, process=process,
                 log_path=log_path, token=token, **extra)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with status {process.returncode} at start:\n{server.log()[-3000:]}")
        if _ready(server.api(ready_path)):
            return server
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"{name} did not answer {ready_path} within {timeout:.0f} s:\n{server.log()[-3000:]}")


class ServerGroup:
    """Servers started for one test (or module); `stop_all()` stops every one, whatever happened."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.servers: list[ServerProcess] = []

    def add(self, server: ServerProcess) -> ServerProcess:
        self.servers.append(server)
        return server

    def start(self, starter: Callable[..., ServerProcess], **flags: Any) -> ServerProcess:
        """`group.start(start_devnode, slots=2)`: start with `starter(tmp_path, **flags)` and keep track."""
        return self.add(starter(self.tmp_path, **flags))

    def stop_all(self) -> None:
        while self.servers:
            self.servers.pop().stop()

    def __enter__(self) -> ServerGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


class WebhookReceiver:
    """A tiny HTTP server on 127.0.0.1 recording the JSON bodies POSTed to it (answers 200).

    For webhooks: give a server `receiver.url` and read each call with `receiver.next()`.
    """

    def __init__(self) -> None:
        self.calls: queue.Queue[tuple[str, Any]] = queue.Queue()
        calls = self.calls

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                calls.put((self.path, json.loads(body or b"null")))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next(self, timeout: float = 10) -> Any:
        """The body of the next call (waits for it); raises queue.Empty after `timeout` seconds."""
        return self.calls.get(timeout=timeout)[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
