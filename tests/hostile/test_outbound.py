"""Requests a client makes the relay send: a task's `webhook` follows the same rule as `zipurl` (outbound.py).

http(s) only, and never towards loopback, private, link-local, multicast or reserved addresses unless the
operator allows them (`--webhook-allow-private`): refused when the task is created, and checked again when
the webhook is called, where a name is resolved to public addresses only (DNS rebinding) and a redirect is
not followed. Test relays allow private webhooks (testkit.relay.start_relay); the ones here are told not to.
"""
from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from proxy import outbound
from proxy.errors import BadRequest
from proxy.outbound import WEBHOOK, PublicOnlyResolver, internal_host
from proxy.task_end import call_client_webhook
from testkit.devnode import start_devnode
from testkit.relay import start_relay
from testkit.servers import ServerGroup, WebhookReceiver
from tests.hostile.hostile_helpers import CLIENT_TOKEN
from tests.relay.relay_helpers import form_data, get_json, init_task, post_json, submit, wait_status

INTERNAL_WEBHOOKS = ["http://127.0.0.1:9/hook", "http://localhost/hook", "http://LOCALHOST./hook",
                     "http://app.localhost/hook", "http://[::1]/hook", "http://[::ffff:127.0.0.1]/hook",
                     "http://10.0.0.5/hook", "http://192.168.1.1/hook", "http://169.254.169.254/latest/meta-data",
                     "http://0.0.0.0/hook", "http://224.0.0.1/hook", "http://100.64.0.1/hook"]


# --- the rule ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", INTERNAL_WEBHOOKS)
def test_internal_webhooks_are_refused_naming_the_flag(url: str) -> None:
    with pytest.raises(BadRequest) as refused:
        WEBHOOK.checked(url, allow_private=False)
    assert "webhook refused" in str(refused.value) and "--webhook-allow-private" in str(refused.value)
    assert WEBHOOK.checked(url, allow_private=True).host  # the operator allowed it


@pytest.mark.parametrize("url", ["ftp://example.org/hook", "file:///etc/passwd", "http:///nohost", "hook",
                                 "javascript:alert(1)"])
def test_webhooks_must_be_http_urls_with_a_host(url: str) -> None:
    for allow_private in (False, True):
        with pytest.raises(BadRequest, match="Invalid webhook"):
            WEBHOOK.checked(url, allow_private)


def test_public_webhooks_pass() -> None:
    assert WEBHOOK.checked("https://example.org/hook?x=1", False).host == "example.org"
    assert WEBHOOK.checked("http://8.8.8.8:8080/hook", False).port == 8080
    assert not internal_host("localhost.example.org")


class StubResolver:
    """A resolver that answers `addresses` for every name: what a rebinding DNS server would do."""

    def __init__(self, addresses: list[str]):
        self.addresses = addresses

    async def resolve(self, host: str, port: int = 0, family: Any = socket.AF_INET) -> list[dict]:
        return [{"hostname": host, "host": a, "port": port, "family": family, "proto": 0, "flags": 0}
                for a in self.addresses]

    async def close(self) -> None:
        pass


def test_the_resolver_keeps_public_addresses_only() -> None:
    mixed = PublicOnlyResolver(StubResolver(["127.0.0.1", "93.184.215.14", "10.0.0.1"]))
    assert [r["host"] for r in asyncio.run(mixed.resolve("mixed.example", 80))] == ["93.184.215.14"]
    with pytest.raises(outbound.InternalOnly):
        asyncio.run(PublicOnlyResolver(StubResolver(["127.0.0.1", "::1"])).resolve("rebind.example", 80))


# --- the call, when the task ends ----------------------------------------------------------------------
def relay_stub(allow_private: bool) -> Any:
    return SimpleNamespace(config=SimpleNamespace(webhook_allow_private=allow_private))


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


def calls(receiver: WebhookReceiver) -> int:
    return receiver.calls.qsize()


def test_a_loopback_webhook_is_called_only_where_allowed(receiver: WebhookReceiver) -> None:
    """A task created while private webhooks were allowed, ended after the operator took that away."""
    info = {"uuid": "u", "status": {"code": 40}}
    asyncio.run(call_client_webhook(relay_stub(False), "u", receiver.url, info))
    assert calls(receiver) == 0
    asyncio.run(call_client_webhook(relay_stub(True), "u", receiver.url, info))
    assert receiver.next(timeout=5) == info


def test_a_name_that_resolves_to_loopback_is_not_called(receiver: WebhookReceiver,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name looked harmless when the task was created; at call time it points inside."""
    port = receiver.server.server_address[1]
    monkeypatch.setattr(outbound, "DefaultResolver", lambda: StubResolver(["127.0.0.1"]))
    url = f"http://rebind.example:{port}/hook"
    assert WEBHOOK.checked(url, False)  # nothing to see at creation
    started = time.monotonic()
    asyncio.run(call_client_webhook(relay_stub(False), "u", url, {"uuid": "u"}))
    assert calls(receiver) == 0
    assert time.monotonic() - started < 1  # refused once, not retried


class Redirector:
    """Answers every POST with a 307 to `location`, and counts them."""

    def __init__(self, location: str):
        self.posts = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.posts += 1
                self.send_response(307)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_redirects_are_not_followed(receiver: WebhookReceiver) -> None:
    redirector = Redirector(receiver.url)
    try:
        asyncio.run(call_client_webhook(relay_stub(True), "u", redirector.url, {"uuid": "u"}))
        assert redirector.posts == 1
        time.sleep(0.3)
        assert calls(receiver) == 0
    finally:
        redirector.close()


# --- through a relay that refuses them (as a production relay does by default) -------------------------
@pytest.fixture(scope="module")
def strict_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with ServerGroup(tmp_path_factory.mktemp("outbound")) as group:
        node = group.add(start_devnode(group.tmp_path, seconds_per_image=0.02, slots=2))
        yield group.add(start_relay(group.tmp_path, [node.url], token=CLIENT_TOKEN, check_interval=0.3,
                                    webhook_allow_private=False))


def staging(relay: Any) -> set[str]:
    folder = relay.data_dir / "staging"
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://[::1]:9/hook", "http://169.254.169.254/"])
def test_init_with_an_internal_webhook_is_refused(strict_relay: Any, url: str) -> None:
    before = staging(strict_relay)
    answer = init_task(strict_relay, {"name": "hooked", "webhook": url}, token=CLIENT_TOKEN)
    assert set(answer) == {"error"} and "--webhook-allow-private" in answer["error"], answer
    assert staging(strict_relay) == before
    assert get_json(strict_relay, "/task/list", token=CLIENT_TOKEN) == []


def test_task_new_with_an_internal_webhook_is_refused(strict_relay: Any, sample_images: list[Path]) -> None:
    before = staging(strict_relay)
    files = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in sample_images[:2]]
    answer = post_json(strict_relay, "/task/new", files=[*form_data({"webhook": "http://localhost:9/"}).items(),
                                                         *files], token=CLIENT_TOKEN)
    assert set(answer) == {"error"} and "--webhook-allow-private" in answer["error"], answer
    assert staging(strict_relay) == before


def test_a_public_webhook_and_none_are_taken(strict_relay: Any, sample_images: list[Path]) -> None:
    assert "uuid" in init_task(strict_relay, {"webhook": "https://example.org/hook"}, token=CLIENT_TOKEN)
    uuid = submit(strict_relay, sample_images[:2], {"webhook": ""}, token=CLIENT_TOKEN)
    assert wait_status(strict_relay, uuid, token=CLIENT_TOKEN)["status"]["code"] == 40
