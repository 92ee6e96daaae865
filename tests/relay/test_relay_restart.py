"""`kill -9` the relay and start it again on the same data folder: every route is intact."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from testkit.relay import Relay, start_relay
from tests.relay.relay_helpers import (
    COMPLETED,
    QUEUED,
    RUNNING,
    Receiver,
    admin_nodes,
    get_json,
    submit,
    task_info,
    wait_for,
    wait_status,
)

pytestmark = pytest.mark.slow

TOKEN, ADMIN, NODE_TOKEN = "client-t0ken", "adm1n", "n0de-secret-restart"


def test_kill_9_and_restart_keeps_every_route(servers, fast_node, receiver: Receiver,
                                             sample_images: list[Path]) -> None:
    node = fast_node(slots=1, seconds_per_image=0.5, token=NODE_TOKEN)
    spare = fast_node()
    flags = dict(token=TOKEN, admin_token=ADMIN, check_interval=0.3)
    relay = servers.add(start_relay(servers.tmp_path, [f"{node.url}?token={NODE_TOKEN}"], **flags))
    assert isinstance(relay, Relay)
    done = submit(relay, sample_images[:2])
    assert wait_status(relay, done, timeout=30)["status"]["code"] == COMPLETED
    whole = requests.get(relay.api(f"/task/{done}/download/all.zip"), timeout=30).content
    running = submit(relay, sample_images[:3], {"webhook": receiver.url + "/hook"})
    wait_status(relay, running, [RUNNING])
    waiting = submit(relay, sample_images[:2])
    assert task_info(relay, waiting)["status"]["code"] == QUEUED
    # a node added (and locked) at run time is part of the state too
    response = requests.post(f"{relay.url}/admin/nodes", headers=relay.admin_headers(), json={"url": spare.url},
                             timeout=10)
    spare_id = response.json()["id"]
    requests.post(f"{relay.url}/admin/nodes/{spare_id}/lock", headers=relay.admin_headers(), timeout=10)

    relay.process.kill()  # kill -9: no shutdown handler runs
    relay.process.wait(10)
    # `running` ends while the relay is down: its webhook to the relay finds nobody
    wait_for(lambda: task_info(node, running)["status"]["code"] == COMPLETED, timeout=30, what="end on node")

    again = servers.add(start_relay(servers.tmp_path, [f"{node.url}?token={NODE_TOKEN}"], port=relay.port,
                                    data_dir=relay.data_dir, **flags))
    assert isinstance(again, Relay)
    assert {t["uuid"] for t in get_json(again, "/task/list")} == {done, running, waiting}
    assert task_info(again, done)["status"]["code"] == COMPLETED
    assert requests.get(again.api(f"/task/{done}/download/all.zip"), timeout=30).content == whole
    ranged = requests.get(again.api(f"/task/{done}/download/all.zip"), headers={"Range": "bytes=5-14"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == whole[5:15]
    assert requests.get(again.api(f"/task/{done}/download/orthophoto.tif"), timeout=30).status_code == 200
    # the end it missed is learnt at start, and the task's own webhook is still called
    assert task_info(again, running)["status"]["code"] == COMPLETED
    wait_for(lambda: receiver.calls, timeout=20, what="the webhook of the task that ended during the restart")
    assert receiver.calls[0][1]["uuid"] == running
    # the relay's queue survived and is served by the node that holds no task now
    assert wait_status(again, waiting, timeout=30)["status"]["code"] == COMPLETED
    assert task_info(node, waiting)["uuid"] == waiting
    spare_now = next(n for n in admin_nodes(again) if n["id"] == spare_id)
    assert spare_now["locked"] is True and spare_now["online"] is True
    assert get_json(spare, "/task/list") == []
    # ownership survives too: the task stays invisible without the right token
    assert "error" in json.loads(requests.get(f"{again.url}/task/{done}/info?token=other", timeout=10).text)
