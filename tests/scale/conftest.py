"""Fixtures for the scale tests: a cluster of real `redis-server`, relay replicas and development nodes.

The cluster itself is `testkit/cluster.py` (also used by the fault suite, `python -m scripts.faults`)."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from testkit.cluster import Cluster, start_cluster
from testkit.servers import ServerGroup


@pytest.fixture
def cluster_factory(servers: ServerGroup) -> Iterator[Callable[..., Cluster]]:
    """`cluster_factory([{"slots": 1}, {}], replicas=2, failover_after=1)`: Redis (persistent), one
    development node per dict of flags, relay replicas sharing one staging folder, a balancer in front.
    `with_redis=False`: no Redis, the relay keeps its state in SQLite (for one replica only)."""
    made: list[Cluster] = []

    def start(node_flags: list[dict[str, Any]], replicas: int = 2, with_redis: bool = True,
              **relay_flags: Any) -> Cluster:
        cluster = start_cluster(servers.tmp_path / f"cluster-{len(made)}", servers, node_flags, replicas, with_redis,
                                **relay_flags)
        made.append(cluster)
        return cluster

    yield start
    for cluster in made:
        cluster.close()
