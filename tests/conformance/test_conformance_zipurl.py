"""`zipurl` on one-shot `/task/new`: NodeODX downloads the zip and processes its photos. The relay refuses a
zipurl on a private or loopback address (SSRF protection) unless its operator allows those; with that flag
on, it must do what NodeODX does. The zip is served on 127.0.0.1, so it is such an address."""
from __future__ import annotations

import time

import pytest

from tests.conformance.differences import difference
from tests.conformance.sides import (
    COMPLETED,
    ZIPURL_PRIVATE_FLAG,
    Cluster,
    Side,
    ZipServer,
    answer,
    assert_same_info,
    both,
    json_of,
    multipart,
    zip_names,
)

pytestmark = pytest.mark.slow

FIELDS = {"name": "Conformance: zipurl", "options": '[{"name": "dsm", "value": true}]'}


def zipurl_task(side: Side, url: str) -> tuple:
    return answer(side.post("/task/new", files=multipart({**FIELDS, "zipurl": url})))


@difference("zipurl-private-refused")
def test_zipurl_on_loopback_refused_by_the_relay_by_default(cluster: Cluster, zip_server: ZipServer) -> None:
    relay = zipurl_task(cluster.relay, zip_server.url)
    assert relay[:2] == (200, "application/json") and set(relay[2]) == {"error"}, relay
    assert "Need at least" not in relay[2]["error"], f"refused, but not for its address: {relay[2]}"
    time.sleep(1)
    assert zip_server.requests == [], "the relay fetched a loopback zipurl"

    direct = zipurl_task(cluster.direct, zip_server.url)
    assert set(direct[2]) == {"uuid"}, direct
    info = cluster.direct.wait(direct[2]["uuid"])
    assert info["status"]["code"] == COMPLETED and info["imagesCount"] == 3
    assert ("GET", "/photos.zip") in zip_server.requests


def test_zipurl_through_relay_with_private_addresses_allowed(cluster: Cluster, zip_server: ZipServer,
                                                             another_relay) -> None:
    """Through a relay started with the operator flag ZIPURL_PRIVATE_FLAG, zipurl works as on NodeODX."""
    relay_side = another_relay(**{ZIPURL_PRIVATE_FLAG: True})
    direct, relay = both(cluster.direct, relay_side, lambda side: zipurl_task(side, zip_server.url))
    assert set(direct[2]) == {"uuid"}, direct
    assert relay[:2] == direct[:2] and set(relay[2]) == {"uuid"}, relay
    uuids = (direct[2]["uuid"], relay[2]["uuid"])
    infos = both(cluster.direct, relay_side, lambda side: side.wait(uuids[side is relay_side]))
    assert infos[0]["status"]["code"] == COMPLETED and infos[0]["imagesCount"] == 3
    assert_same_info(*infos)
    zips = [side.get(f"/task/{uuid}/download/all.zip").content
            for side, uuid in zip((cluster.direct, relay_side), uuids)]
    assert zip_names(zips[1]) == zip_names(zips[0])
    assert {"uuid": uuids[1]} in json_of(relay_side.get("/task/list"))
