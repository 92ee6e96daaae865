"""Ghosts: a node frozen (SIGSTOP) past `--failover-after` loses its task to another node; when it comes back
(SIGCONT) it would run its copy again to completion, holding its slot for nothing. The relay cancels and
removes that copy there, and the task completes once, on the other node. A webhook from a node that no
longer holds the task stops that node's copy too, and is never taken for the task's own end."""
from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest
import requests

from proxy.nodes import parse_node_url
from testkit.cluster import COMPLETED, Cluster, audit_nodes
from tests.relay.relay_helpers import RUNNING, get_json, submit, task_info, wait_for, wait_status
from tests.scale.scale_helpers import ADMIN, set_locked

pytestmark = pytest.mark.slow

#: the node that is frozen runs its task slowly (6 photos x 2 s); its checks time out after 1 s
SLOW = {"seconds_per_image": 2, "slots": 1}
FLAGS = {"admin_token": ADMIN, "failover_after": 1, "node_timeout": 1}


def listed(node, uuid: str) -> bool:
    return {"uuid": uuid} in get_json(node, "/task/list")


@pytest.mark.parametrize("with_redis", [False, True], ids=["sqlite", "redis"])
def test_a_node_back_from_the_dead_has_its_ghost_canceled_and_removed(cluster_factory, sample_images: list[Path],
                                                                     with_redis: bool) -> None:
    cluster: Cluster = cluster_factory([SLOW, {"slots": 2}], replicas=2 if with_redis else 1,
                                       with_redis=with_redis, **FLAGS)
    frozen, spare = cluster.nodes
    relay = cluster.replicas[0]
    set_locked(cluster, spare.url, True)
    uuid = submit(relay, sample_images[:6])
    wait_status(relay, uuid, [RUNNING])
    assert listed(frozen, uuid) and not listed(spare, uuid)
    set_locked(cluster, spare.url, False)
    cluster.freeze_node(0)
    try:
        info = wait_status(cluster.replicas[-1], uuid, [COMPLETED], timeout=60)  # sent again, done on the spare
        assert task_info(spare, uuid)["status"]["code"] == COMPLETED
    finally:
        cluster.thaw_node(0)
    wait_for(lambda: not listed(frozen, uuid), timeout=30, what="the ghost canceled and removed on the node")
    assert task_info(relay, uuid) == info, "the task is the spare's, whatever the ghost did"
    assert listed(spare, uuid)
    audit = audit_nodes(cluster.nodes)
    assert audit.completions() == {uuid: [spare.name]}, "completed once, on the spare"
    logs = "".join(replica.log() for replica in cluster.replicas)
    assert f"ghost uuid={uuid} canceled and removed on node {parse_node_url(frozen.url).id}" in logs


def test_a_webhook_from_a_node_that_no_longer_holds_the_task_stops_its_copy(cluster_factory,
                                                                           sample_images: list[Path]) -> None:
    """The copy here is made by hand on a node the relay knows (locked, so it gets nothing itself), and the
    node's webhook is sent as the relay signed it for that node: only that webhook can stop it."""
    cluster: Cluster = cluster_factory([{"slots": 2}, {"slots": 2}], replicas=1, with_redis=False, **FLAGS)
    node, other = cluster.nodes
    relay = cluster.replicas[0]
    set_locked(cluster, other.url, True)
    uuid = submit(relay, sample_images[:3])
    done = wait_status(relay, uuid, [COMPLETED])
    submit(other, sample_images[:3], headers={"set-uuid": uuid})  # a copy the relay did not send
    assert listed(other, uuid)
    other_id = parse_node_url(other.url).id
    secret = bytes.fromhex((relay.data_dir / "relay.secret").read_text().strip())
    sig = hmac.new(secret, f"{uuid}:{other_id}".encode(), hashlib.sha256).hexdigest()[:32]
    answer = requests.post(f"{relay.url}/_relay/webhook/{uuid}", params={"node": other_id, "sig": sig},
                           json={**done, "status": {"code": 30, "errorMessage": "a ghost's end"}}, timeout=10)
    assert answer.status_code == 200 and answer.json() == {"ok": False}
    wait_for(lambda: not listed(other, uuid), timeout=15, what="the copy canceled and removed on the node")
    assert task_info(relay, uuid) == done, "never taken for the task's end"
    assert listed(node, uuid)
    assert f"webhook ignored uuid={uuid} from node={other_id}" in relay.log()
