"""Where the relay holds clients shorter than NodeODX does, on purpose (differences.py): a task's webhook on an
internal address, uploads that are never committed (removable by their owner, and at most
`--max-open-uploads` of them per client). Each shown against a real NodeODX, side by side."""
from __future__ import annotations

from pathlib import Path

import pytest

from testkit.servers import WebhookReceiver
from tests.conformance.differences import difference
from tests.conformance.sides import Cluster

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
