"""Logins under attack: a password hash (scrypt, ~80 ms) is costly on purpose, so it runs off the event loop
(the relay keeps answering while logins run), and failed logins are limited per client address and per
username (`--login-failures` within `--login-window` seconds): past the limit, HTTP 429 with Retry-After."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from proxy.auth import LoginLimiter
from proxy.config import parse_config
from testkit.relay import Relay, start_relay
from testkit.servers import ServerGroup

TOKEN = "logins-relay-token"
PASSWORD = "correct horse battery"
pytestmark = pytest.mark.slow


def start(group: ServerGroup, **flags: Any) -> Relay:
    relay = group.add(start_relay(group.tmp_path, [], token=TOKEN, allow_registration=True, **flags))
    assert isinstance(relay, Relay)
    return relay


@pytest.fixture
def group(tmp_path) -> Iterator[ServerGroup]:
    with ServerGroup(tmp_path) as servers:
        yield servers


def register(relay: Relay, username: str) -> str:
    response = requests.post(f"{relay.url}/auth/register", data={"username": username, "password": PASSWORD},
                             timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["token"]


def login(relay: Relay, username: str, password: str, client: str | None = None) -> requests.Response:
    headers = {"X-Forwarded-For": client} if client else {}
    return requests.post(f"{relay.url}/auth/login", data={"username": username, "password": password},
                         headers=headers, timeout=60)


def test_failed_logins_from_one_address_are_limited(group: ServerGroup) -> None:
    relay = start(group, login_failures=3, login_window=2)
    register(relay, "alice")
    for _ in range(3):
        assert login(relay, "alice", "wrong guess").status_code == 403
    refused = login(relay, "alice", PASSWORD)  # even the right password: the address is held back
    assert refused.status_code == 429 and refused.headers["Content-Type"].startswith("application/json")
    assert 1 <= int(refused.headers["Retry-After"]) <= 2
    message = refused.json()["error"]
    assert "Too many failed logins" in message and "seconds" in message, message
    assert login(relay, "nobody", "x").status_code == 429  # any username, from this address
    time.sleep(2.2)  # the window passes
    assert login(relay, "alice", PASSWORD).status_code == 200
    # a forwarded-for header from an untrusted peer changes nothing
    for _ in range(3):
        assert login(relay, "alice", "wrong", client="203.0.113.9").status_code == 403
    assert login(relay, "alice", PASSWORD, client="203.0.113.10").status_code == 429


def test_failed_logins_for_one_username_are_limited_from_any_address(group: ServerGroup) -> None:
    """Behind a trusted balancer (`--trusted-proxy`), X-Forwarded-For names the client."""
    relay = start(group, login_failures=3, login_window=60, trusted_proxy="127.0.0.0/8")
    register(relay, "alice")
    register(relay, "bob")
    for n in range(3):  # one guess from each of three addresses
        assert login(relay, "alice", "wrong", client=f"198.51.100.{n}").status_code == 403
    refused = login(relay, "alice", PASSWORD, client="198.51.100.77")
    assert refused.status_code == 429 and "alice" in refused.json()["error"]
    assert login(relay, "bob", PASSWORD, client="198.51.100.77").status_code == 200  # others log in
    assert login(relay, "bob", PASSWORD, client="198.51.100.0").status_code == 200
    # a success for a username forgets its failures
    register(relay, "carol")
    for n in range(2):
        assert login(relay, "carol", "wrong", client=f"192.0.2.{n}").status_code == 403
    assert login(relay, "carol", PASSWORD, client="192.0.2.50").status_code == 200
    for n in range(2):
        assert login(relay, "carol", "wrong", client=f"192.0.2.{10 + n}").status_code == 403
    assert login(relay, "carol", PASSWORD, client="192.0.2.51").status_code == 200


def test_no_limit_with_zero(group: ServerGroup) -> None:
    relay = start(group, login_failures=0)
    register(relay, "alice")
    assert all(login(relay, "alice", "wrong").status_code == 403 for _ in range(8))
    assert login(relay, "alice", PASSWORD).status_code == 200


def test_the_relay_answers_while_logins_run(group: ServerGroup) -> None:
    """Logins hash off the event loop: while a burst of them runs, /info answers far more often than logins
    complete (with the hash on the loop, each /info waits behind the logins queued before it)."""
    relay = start(group, login_failures=0)
    register(relay, "alice")
    logins = 48
    done = threading.Event()
    completed = [0]

    def one(_: int) -> int:
        status = login(relay, "alice", PASSWORD).status_code
        completed[0] += 1
        return status

    infos, slowest = 0, 0.0
    with ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(one, i) for i in range(logins)]
        threading.Thread(target=lambda: ([f.result() for f in futures], done.set()), daemon=True).start()
        time.sleep(0.2)  # the burst is under way
        while not done.is_set():
            started = time.monotonic()
            assert requests.get(relay.api("/info"), timeout=30).status_code == 200
            slowest = max(slowest, time.monotonic() - started)
            if not done.is_set():
                infos += 1
        statuses = [f.result() for f in futures]
    assert statuses == [200] * logins
    print(f"\n{logins} logins at 12 concurrent: {infos} /info answered meanwhile, slowest {slowest * 1000:.0f} ms")
    assert infos >= logins, (infos, slowest)


def test_client_address_and_settings() -> None:
    limiter = LoginLimiter(failures=2, window=10, trusted=["10.0.0.0/8"])
    assert limiter.client_address("10.1.2.3", "198.51.100.1, 203.0.113.5") == "203.0.113.5"  # the proxy's word
    assert limiter.client_address("192.0.2.1", "203.0.113.5") == "192.0.2.1"  # not a trusted proxy
    assert limiter.client_address("10.1.2.3", None) == "10.1.2.3"
    assert limiter.client_address("10.1.2.3", "not an address") == "10.1.2.3"
    config = parse_config([])
    assert (config.login_failures, config.login_window, config.trusted_proxy) == (5, 300, [])
    config = parse_config(["--login-failures", "10", "--trusted-proxy", "10.0.0.0/8", "--trusted-proxy", "::1"])
    assert (config.login_failures, config.trusted_proxy) == (10, ["10.0.0.0/8", "::1"])
