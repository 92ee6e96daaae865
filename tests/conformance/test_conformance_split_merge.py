"""Split-merge's two intended differences (differences.py), side by side against a real NodeODX: the relay
owns a task's `sm-cluster` option, and a task with `split` lists its submodels in its info."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from tests.conformance.differences import difference
from tests.conformance.sides import RUNNING, Cluster, Side, option_map

pytestmark = pytest.mark.slow

CLIENTS = "http://cluster.client.example:3000/"


def fields(**options) -> dict[str, str]:
    return {"name": "split-merge", "options": json.dumps([{"name": k, "value": v} for k, v in options.items()])}


@difference("sm-cluster-relay")
@difference("submodels-in-info")
def test_sm_cluster_and_submodels(slow_cluster: Cluster, sample_images: list[Path]) -> None:
    cluster = slow_cluster
    uuids = cluster.both(lambda side: side.submit(sample_images[:3], fields(**{"split": 2, "sm-cluster": CLIENTS})))
    direct, relay = cluster.each(lambda side, uuid: side.wait(uuid, (RUNNING,)), uuids)
    assert option_map(direct["options"])["sm-cluster"] == CLIENTS  # NodeODX passes the client's value on
    relayed = option_map(relay["options"])["sm-cluster"]
    assert relayed.startswith(f"{cluster.relay_server.url}/?token=sm.{uuids[1]}.")
    assert relay["relaySubmodels"] == [] and "relaySubmodels" not in direct
    held = [requests.get(f"{node.url}/task/{uuids[1]}/info", params={"token": cluster.node_token}, timeout=10).json()
            for node in cluster.nodes]
    node_side = option_map(next(info for info in held if "uuid" in info)["options"])
    assert node_side["sm-cluster"] == relayed  # what the node runs ODM with

    plain = cluster.both(lambda side: side.submit(sample_images[:3], fields(**{"sm-cluster": CLIENTS})))
    direct, relay = cluster.each(Side.info, plain)
    assert option_map(direct["options"])["sm-cluster"] == CLIENTS
    assert "sm-cluster" not in option_map(relay["options"]) and "relaySubmodels" not in relay
    cluster.each(Side.wait, plain)
    cluster.each(Side.wait, uuids)
