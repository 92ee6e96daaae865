"""Helpers for the scale tests (the cluster itself is `testkit/cluster.py`).

Imported as `tests.scale.scale_helpers`.
"""
from __future__ import annotations

import time

import requests

from testkit.cluster import Cluster
from tests.relay.relay_helpers import admin_nodes

ADMIN = "adm"


def set_locked(cluster: Cluster, node_url: str, locked: bool, wait: bool = True) -> None:
    relay = cluster.replicas[0]
    node_id = next(n["id"] for n in admin_nodes(relay) if n["url"] == node_url)
    action = "lock" if locked else "unlock"
    response = requests.post(f"{relay.url}/admin/nodes/{node_id}/{action}", headers=relay.admin_headers(), timeout=10)
    assert response.status_code == 200
    if wait:
        time.sleep(0.7)  # the other replicas take it in at their next health round (0.3 s)
