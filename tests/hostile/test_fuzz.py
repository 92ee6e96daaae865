"""A property-based fuzz run of the whole API, from the relay's own OpenAPI document (schemathesis on
Hypothesis), against a real relay in front of a real development node.

Every operation gets valid requests and invalid ones (wrong types, missing fields, odd strings and
bodies); a share of them is bent towards what exists (a finished task, a task being uploaded, real
asset names, the real node) and towards missing or wrong tokens. The bar: no 5xx, no request that
hangs past its timeout or loses its connection, every answer as the document says (status, content
type, schema), and the relay alive and answering at the end. The request count is printed.
"""
from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from proxy.openapi import document
from testkit.devnode import start_devnode
from testkit.relay import Relay, start_relay
from testkit.servers import ServerGroup
from tests.hostile.hostile_helpers import ADMIN_TOKEN, CLIENT_TOKEN
from tests.relay.relay_helpers import COMPLETED, admin_nodes, init_task, submit, wait_status

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.slow

EXAMPLES = {GenerationMode.POSITIVE: 140, GenerationMode.NEGATIVE: 70}
SLOW = {"POST /auth/login": 0.15}  # a login costs an scrypt hash (~0.1 s) on purpose: fewer of them
MIN_REQUESTS = 3000
REQUEST_TIMEOUT = 15.0
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
REAL_ASSETS = ["all.zip", "orthophoto.tif", "ept.json", "ept-data/0-0-0-0.laz", "entwine_pointcloud.zip",
               "report.pdf"]


@dataclass
class Target:
    relay: Relay
    uuids: list[str]  # a finished task, a task being uploaded, the finished one in capitals
    node_id: str


@dataclass
class Tally:
    requests: int = 0
    statuses: collections.Counter = field(default_factory=collections.Counter)
    per_operation: collections.Counter = field(default_factory=collections.Counter)
    seconds: collections.Counter = field(default_factory=collections.Counter)  # per operation
    server_errors: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)  # timeouts, dropped connections
    nonconforming: list[str] = field(default_factory=list)
    unreadable: int = 0  # requests the client itself sent broken (see `client_broke_it`)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, sample_images: list[Path]) -> Iterator[Target]:
    with ServerGroup(tmp_path_factory.mktemp("fuzz")) as group:
        node = group.add(start_devnode(group.tmp_path, seconds_per_image=0.02, slots=4))
        relay = group.add(start_relay(group.tmp_path, [node.url], token=CLIENT_TOKEN, admin_token=ADMIN_TOKEN,
                                      check_interval=2, node_timeout=3, max_upload_mb=4, max_images=50,
                                      upload_timeout=5))
        assert isinstance(relay, Relay)
        done = submit(relay, sample_images[:2], token=CLIENT_TOKEN)
        wait_status(relay, done, [COMPLETED], token=CLIENT_TOKEN)
        uploading = init_task(relay, token=CLIENT_TOKEN)["uuid"]
        yield Target(relay, [done, uploading, done.upper()], admin_nodes(relay)[0]["id"])


def bend(case: Any, knob: int, target: Target) -> tuple[dict[str, str], dict[str, str]]:
    """Point some cases at things that exist (knob 1-4) and give most the right credentials (knob 8: none,
    9: a wrong one); (query, headers). Knob 0, what Hypothesis tries most, is the case as generated."""
    path = case.path_parameters if case.path_parameters is not None else {}
    if "uuid" in path and knob in (1, 2, 3):
        path["uuid"] = target.uuids[knob - 1]
    if "asset" in path and knob in (1, 3, 4):
        path["asset"] = REAL_ASSETS[(knob + len(path.get("uuid", ""))) % len(REAL_ASSETS)]
    if "node_id" in path and case.method != "DELETE" and knob in (1, 2):
        path["node_id"] = target.node_id  # lock and unlock the real node; never remove it
    admin = case.path.startswith("/admin/")
    credential = {8: "", 9: "wrong-token"}.get(knob, ADMIN_TOKEN if admin else CLIENT_TOKEN)
    # One connection per request, so that a request the client sent broken (see `client_broke_it`)
    # cannot spill into the next one.
    headers = {"Connection": "close"}
    if admin:
        return {}, {**headers, **({"Authorization": f"Bearer {credential}"} if credential else {})}
    return ({"token": credential} if credential else {}), headers


def client_broke_it(response: Any) -> bool:
    """A 400 from aiohttp's HTTP parser, before any handler runs (the relay's own errors are JSON): requests
    sends an empty chunk of a streamed body as a second end of body, which is not HTTP."""
    content_type = (response.headers.get("content-type") or [""])[0]  # schemathesis: lowercase keys, lists
    return response.status_code == 400 and content_type.startswith("text/plain")


def fuzz_operation(operation: Any, mode: GenerationMode, target: Target, session: requests.Session,
                   tally: Tally) -> None:
    label = operation.label
    examples = max(5, int(EXAMPLES[mode] * SLOW.get(label, 1)))

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode), knob=st.integers(0, 9))
    def run(case: Any, knob: int) -> None:
        query, headers = bend(case, knob, target)
        tally.requests += 1
        tally.per_operation[label] += 1
        try:
            response = case.call(base_url=target.relay.url, session=session, params=query, headers=headers,
                                 timeout=REQUEST_TIMEOUT)
        except requests.RequestException as exc:
            tally.broken.append(f"{label}: {type(exc).__name__}: {exc}\n{case.as_curl_command()}"[:1500])
            return
        tally.statuses[response.status_code] += 1
        if client_broke_it(response):
            tally.unreadable += 1
            return
        if response.status_code >= 500:
            tally.server_errors.append(f"{label}: {response.status_code} {response.text[:200]}\n"
                                       f"{case.as_curl_command()}"[:1500])
            return
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, BaseExceptionGroup) as exc:  # schemathesis' Failure, or a group of them
            tally.nonconforming.append(f"{label}: {response.status_code}: {exc}"[:1500])

    started = time.monotonic()
    try:
        run()
    except Unsatisfiable:  # nothing in this operation can be made invalid (no parameters, no body)
        pass
    tally.seconds[label] += time.monotonic() - started


def test_fuzz_the_whole_api(target: Target, capsys: pytest.CaptureFixture) -> None:
    schema = schemathesis.openapi.from_dict(document())
    tally = Tally()
    started = time.monotonic()
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            raw = operation.definition.raw
            for mode in EXAMPLES if raw.get("parameters") or raw.get("requestBody") else [GenerationMode.POSITIVE]:
                fuzz_operation(operation, mode, target, session, tally)
    elapsed = time.monotonic() - started
    relay = target.relay
    alive = relay.running and requests.get(relay.api("/info"), timeout=10).status_code == 200
    with capsys.disabled():
        print(f"\nfuzz: {tally.requests} requests over {len(tally.per_operation)} operations in {elapsed:.0f} s; "
              f"status codes {dict(sorted(tally.statuses.items()))}; server errors {len(tally.server_errors)}, "
              f"hangs or dropped connections {len(tally.broken)}, answers unlike the document "
              f"{len(tally.nonconforming)}; malformed by the client {tally.unreadable}; relay alive: {alive}; slowest: "
              + ", ".join(f"{label} {seconds:.0f} s" for label, seconds in tally.seconds.most_common(3)))
    assert not tally.server_errors, "\n\n".join(tally.server_errors[:10])
    assert not tally.broken, "\n\n".join(tally.broken[:10])
    assert not tally.nonconforming, "\n\n".join(tally.nonconforming[:10])
    assert alive, relay.log()[-3000:]
    # the relay's own error lines, and background rounds that broke (aiohttp's error line for a broken
    # HTTP message from the client does not count)
    bad_lines = [line for line in relay.log().splitlines()
                 if any(mark in line for mark in ("ERROR odx_relay", "exception was never retrieved", "round failed"))]
    assert not bad_lines, "\n".join(bad_lines[:20])
    assert tally.requests >= MIN_REQUESTS
    assert set(tally.per_operation) == {op.ok().label for op in schema.get_all_operations()}
