"""Helpers for the hostile-input tests: requests sent byte for byte as given, multipart bodies built by
hand, and a look at what the relay keeps on disk for a task.

Imported as `tests.hostile.hostile_helpers`.
"""
from __future__ import annotations

import http.client
import json
import socket
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testkit.devnode import DevNode
from testkit.relay import Relay

CLIENT_TOKEN = "hostile-client-token-7d1"
ADMIN_TOKEN = "hostile-admin-token-0b9"


@dataclass
class Hostile:
    """A development node behind a relay that has a client token, an admin token and small limits."""

    relay: Relay
    node: DevNode
    max_upload_mb: float
    max_images: int
    upload_timeout: float
    upload_min_kbps: float

    def staged(self, uuid: str) -> list[str]:
        """Every file the relay keeps for `uuid`, hidden partial files included."""
        folder = self.relay.data_dir / "staging" / uuid
        return sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []

    def files_under_data_dir(self) -> set[Path]:
        return {p for p in self.relay.data_dir.rglob("*") if p.is_file()}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        assert self.headers.get("content-type", "").startswith("application/json"), (self.status, self.body[:300])
        return json.loads(self.body)


def raw(relay: Relay, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
        timeout: float = 30) -> Answer:
    """`method path` exactly as given: no client-side normalisation of `..`, escapes or case."""
    connection = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=timeout)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def with_token(path: str, token: str = CLIENT_TOKEN) -> str:
    return path + ("&" if "?" in path else "?") + f"token={token}"


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "hostile-boundary-5c2e") -> tuple[str, bytes]:
    """(content type, body) for [(field name, filename or None, content), ...]."""
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        body += (f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                 f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + b"\r\n"
    return f"multipart/form-data; boundary={boundary}", body + f"--{boundary}--\r\n".encode()


def open_upload(relay: Relay, path: str, head: bytes, declared_length: int) -> socket.socket:
    """Start a POST whose body claims `declared_length` bytes, send only `head` of it, and keep the
    connection open: a client that drips a few bytes and stalls."""
    sock = socket.create_connection(("127.0.0.1", relay.port), timeout=30)
    request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {declared_length}\r\n"
               f"Content-Type: multipart/form-data; boundary=hostile-boundary-5c2e\r\n\r\n").encode()
    sock.sendall(request + head)
    return sock


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (raises on timeout)."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def new_uuid() -> str:
    return str(uuidlib.uuid4())
