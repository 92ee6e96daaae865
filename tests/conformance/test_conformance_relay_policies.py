"""Where the relay holds clients shorter than NodeODX does, on purpose (differences.py): a task's webhook on an
internal address, uploads that are never committed (removable by their owner, and at most
`--max-open-uploads` of them per client). Each shown against a real NodeODX, side by side."""
from __future__ import annotations

from pathlib import Path

import pytest

from testkit.servers import WebhookReceiver
from tests.conformance.differences import difference
from tests.conformance.sides import COMPLETED, Cluster

pytestmark = pytest.mark.slow


@difference("webhook-private-refused")
def test_a_webhook_on_loopback_is_refused_by_the_relay(own_pair, webhook: WebhookReceiver,
                                                       sample_images: list[Path]) -> None:
    cluster: Cluster = own_pair(relay_flags={"webhook_allow_private": False})  # as a relay runs by default
    direct, relay = cluster.both(lambda side: side.init({"name": "hooked", "webhook": webhook.url}))
    assert set(direct) == {"uuid"}, direct
    assert set(relay) == {"error"} and "--webhook-allow-private" in relay["error"], relay
    assert cluster.direct.upload(direct["uuid"], sample_images[:3]) == {"success": True}
    assert cluster.direct.commit(direct["uuid"]) == {"uuid": direct["uuid"]}
    assert webhook.next(timeout=40)["uuid"] == direct["uuid"]  # NodeODX calls it

    direct, relay = cluster.both(lambda side: side.init({"name": "hooked", "webhook": "not a url at all"}))
    assert set(direct) == {"uuid"}, direct
    assert set(relay) == {"error"} and "Invalid webhook" in relay["error"], relay


@difference("remove-open-upload")
def test_the_owner_removes_an_upload_never_committed(cluster: Cluster, sample_images: list[Path]) -> None:
    uuids = cluster.both(lambda side: side.init({"name": "given up"})["uuid"])
    assert cluster.relay.upload(uuids[1], sample_images[:1]) == {"success": True}
    staged = cluster.relay_server.data_dir / "staging" / uuids[1]
    assert staged.is_dir()
    direct, relay = cluster.each(lambda side, uuid: side.task_post("/task/remove", {"uuid": uuid}), uuids)
    assert direct == {"success": False, "error": f"{uuids[0]} not found"}
    assert relay == {"success": True}
    assert not staged.exists()
    assert cluster.relay.upload(uuids[1], sample_images[:2]) == {"error": "Invalid uuid (not found)"}
    assert cluster.relay.task_post("/task/remove", {"uuid": uuids[1]}) == {"success": False,
                                                                          "error": f"{uuids[1]} not found"}
    # NodeODX kept its upload: it can still be finished
    assert cluster.direct.upload(uuids[0], sample_images[:3]) == {"success": True}
    assert cluster.direct.commit(uuids[0]) == {"uuid": uuids[0]}
    assert cluster.direct.wait(uuids[0])["status"]["code"] == COMPLETED


@difference("open-uploads-capped")
def test_open_uploads_are_capped_per_client(own_pair, sample_images: list[Path]) -> None:
    cluster: Cluster = own_pair(relay_flags={"max_open_uploads": 2})
    opened = [cluster.both(lambda side: side.init({"name": f"open {i}"})) for i in range(3)]
    assert all(set(direct) == {"uuid"} for direct, _ in opened), opened
    assert all(set(relay) == {"uuid"} for _, relay in opened[:2]), opened
    refused = opened[2][1]
    assert set(refused) == {"error"} and "2" in refused["error"] and "/task/remove" in refused["error"], refused
    # removing one, or committing one, makes room again
    assert cluster.relay.task_post("/task/remove", {"uuid": opened[0][1]["uuid"]}) == {"success": True}
    again = cluster.relay.init({"name": "room again"})
    assert set(again) == {"uuid"}, again
    assert cluster.relay.upload(again["uuid"], sample_images[:2]) == {"success": True}
    assert cluster.relay.commit(again["uuid"]) == {"uuid": again["uuid"]}
    assert set(cluster.relay.init({"name": "room once more"})) == {"uuid"}


@difference("list-paging")
def test_the_task_list_pages_on_the_relay_only(cluster: Cluster, sample_images: list[Path]) -> None:
    cluster.both(lambda side: [side.submit(sample_images[:2], {"name": f"listed {i}"}) for i in range(2)])
    whole = cluster.both(lambda side: side.get("/task/list").json())
    assert all(len(listed) >= 2 for listed in whole), whole
    paged = cluster.both(lambda side: side.get("/task/list", limit=1, offset=1).json())
    assert paged[0] == whole[0], "NodeODX ignores the paging parameters"
    assert paged[1] == whole[1][1:2]
    refused = cluster.both(lambda side: side.get("/task/list", limit="many"))
    assert refused[0].status_code == 200 and refused[0].json() == whole[0]
    assert refused[1].status_code == 400 and "limit" in refused[1].json()["error"]


@difference("list-with-info")
def test_the_task_list_with_info_on_the_relay_only(cluster: Cluster, sample_images: list[Path]) -> None:
    uuids = cluster.both(lambda side: side.submit(sample_images[:2], {"name": "listed with info"}))
    cluster.each(lambda side, uuid: side.wait(uuid), uuids)
    plain = cluster.both(lambda side: side.get("/task/list").json())
    direct, relay = cluster.both(lambda side: side.get("/task/list", with_info="true").json())
    assert direct == plain[0], "NodeODX ignores with_info"
    assert [entry["uuid"] for entry in relay] == [entry["uuid"] for entry in plain[1]]
    [mine] = [entry for entry in relay if entry["uuid"] == uuids[1]]
    alone = cluster.relay.info(uuids[1])
    assert {k: v for k, v in mine.items() if k != "node"} == alone and mine["node"]
    assert mine["status"]["code"] == COMPLETED
