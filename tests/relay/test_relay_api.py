"""Every NodeODX endpoint through a real relay in front of two real development nodes.

One cluster is shared by the module (two nodes with two slots each, one of them with a token and one
accepting fewer options), since these tests only add tasks that end quickly. Tests that need a node
of their own (slow tasks to cancel, webhooks) start it themselves.
"""
from __future__ import annotations

import http.client
import io
import json
import time
import uuid as uuidlib
import zipfile
from pathlib import Path

import pytest
import requests

from shared.assets import asset_by_name
from testkit.devnode import DevNode, start_devnode
from testkit.relay import Relay, start_relay
from testkit.servers import ServerGroup
from tests.relay.relay_helpers import (
    CANCELED,
    COMPLETED,
    FAST,
    QUEUED,
    RUNNING,
    Receiver,
    commit,
    get_json,
    init_task,
    post_json,
    submit,
    task_info,
    upload,
    wait_for,
    wait_status,
)

pytestmark = pytest.mark.slow

NODE_A_TOKEN = "node-a-secret-4f1c9e"
REMOVED_IN_B = ("sky-removal", "bg-removal", "no-gpu")


class Cluster:
    def __init__(self, relay: Relay, a: DevNode, b: DevNode):
        self.relay, self.a, self.b = relay, a, b

    def node_of(self, uuid: str) -> DevNode:
        """The node that holds `uuid`, by asking both nodes directly."""
        holders = [n for n in (self.a, self.b) if "error" not in get_json(n, f"/task/{uuid}/info")]
        assert len(holders) == 1, f"{uuid} is on {len(holders)} nodes"
        return holders[0]

    def idle(self) -> bool:
        return all(get_json(n, "/info")["taskQueueCount"] == 0 for n in (self.a, self.b))


@pytest.fixture(scope="module")
def cluster(module_servers: ServerGroup) -> Cluster:
    tmp = module_servers.tmp_path
    a = module_servers.add(start_devnode(tmp, slots=2, max_images=50, token=NODE_A_TOKEN, **FAST))
    options = [o for o in get_json(a, "/options") if o["name"] not in REMOVED_IN_B]
    options_file = tmp / "options-b.json"
    options_file.write_text(json.dumps(options))
    b = module_servers.add(start_devnode(tmp, slots=2, max_images=80, memory_gb=8, options_file=options_file,
                                         **FAST))
    relay = module_servers.add(start_relay(tmp, [f"{a.url}?token={NODE_A_TOKEN}", b.url], check_interval=0.3))
    assert isinstance(relay, Relay) and isinstance(a, DevNode) and isinstance(b, DevNode)
    return Cluster(relay, a, b)


@pytest.fixture(scope="module")
def done_task(cluster: Cluster, sample_images: list[Path]) -> dict:
    """One completed task and the node's own all.zip for it, for the download tests."""
    uuid = submit(cluster.relay, sample_images[:4])
    wait_status(cluster.relay, uuid, [COMPLETED])
    node = cluster.node_of(uuid)
    direct = requests.get(node.api(f"/task/{uuid}/download/all.zip"), timeout=30)
    assert direct.status_code == 200
    return {"uuid": uuid, "node": node, "zip": direct.content}


# --- /info and /options -----------------------------------------------------------------------------
def test_info_is_the_honest_sum_of_the_online_nodes(cluster: Cluster) -> None:
    wait_for(cluster.idle, what="idle nodes")
    a, b = get_json(cluster.a, "/info"), get_json(cluster.b, "/info")
    info = wait_for(lambda: (i := get_json(cluster.relay, "/info"))["availableMemory"] ==
                    a["availableMemory"] + b["availableMemory"] and i, what="fresh /info")
    assert info["taskQueueCount"] == 0
    assert info["maxParallelTasks"] == a["maxParallelTasks"] + b["maxParallelTasks"] == 4
    assert info["totalMemory"] == a["totalMemory"] + b["totalMemory"]
    assert info["availableMemory"] == a["availableMemory"] + b["availableMemory"]
    assert info["cpuCores"] == a["cpuCores"] + b["cpuCores"]
    assert info["maxImages"] == 80  # the largest any node accepts
    assert info["engine"] == a["engine"] == "odx"
    assert info["engineVersion"] == a["engineVersion"]
    assert info["version"] == a["version"]
    assert info["relay"]["nodes"] == 2 and info["relay"]["online"] == 2
    assert info["relay"]["offline"] == 0 and info["relay"]["locked"] == 0 and info["relay"]["queued"] == 0
    assert info["relay"]["version"]


def test_options_are_those_every_node_accepts(cluster: Cluster) -> None:
    names = [o["name"] for o in get_json(cluster.relay, "/options")]
    all_names = [o["name"] for o in get_json(cluster.a, "/options")]
    assert names == [n for n in all_names if n not in REMOVED_IN_B]
    assert len(names) == len(all_names) - len(REMOVED_IN_B)


def test_an_option_a_node_lacks_is_refused_at_init_by_name(cluster: Cluster) -> None:
    result = init_task(cluster.relay, {"options": json.dumps([{"name": "sky-removal", "value": True}])})
    assert "uuid" not in result and "sky-removal" in result["error"]


def test_a_bad_option_value_is_refused_by_name(cluster: Cluster) -> None:
    result = init_task(cluster.relay, {"options": json.dumps([{"name": "mesh-octree-depth", "value": 99}])})
    assert "mesh-octree-depth" in result["error"]
    result = init_task(cluster.relay, {"options": "not json"})
    assert "options" in result["error"]


# --- intake ---------------------------------------------------------------------------------------
def test_init_upload_commit_then_info_and_output_are_the_nodes_own(cluster: Cluster, sample_images: list[Path]) -> None:
    relay = cluster.relay
    created = 1_700_000_000_000
    uuid = submit(relay, sample_images[:3], {"name": "three photos", "dateCreated": str(created),
                                            "options": json.dumps([{"name": "dsm", "value": True}])},
                  one_by_one=True)
    info = task_info(relay, uuid)  # right after commit: the node's real state, not "Launching..."
    node = cluster.node_of(uuid)
    direct = task_info(node, uuid)
    assert info["uuid"] == direct["uuid"] == uuid  # the same uuid on the relay and on the node
    assert info["status"]["code"] in (QUEUED, RUNNING, COMPLETED)
    assert info["imagesCount"] == direct["imagesCount"] == 3
    assert info["name"] == "three photos" and info["dateCreated"] == created
    assert {"name": "dsm", "value": True} in info["options"]
    output = get_json(relay, f"/task/{uuid}/output")
    assert isinstance(output, list) and output == get_json(node, f"/task/{uuid}/output")[:len(output)]
    assert not any("Launching" in line for line in output)
    final = wait_status(relay, uuid)
    assert final["status"]["code"] == COMPLETED and final == task_info(node, uuid)
    full = get_json(relay, f"/task/{uuid}/output")
    assert full == get_json(node, f"/task/{uuid}/output") and len(full) > 3
    assert get_json(relay, f"/task/{uuid}/output", line=2) == full[2:]
    with_output = task_info(relay, uuid, with_output=1)
    assert with_output["output"] == full[1:]


def test_one_shot_task_new(cluster: Cluster, sample_images: list[Path]) -> None:
    files = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in sample_images[:3]]
    result = post_json(cluster.relay, "/task/new", data={"name": "one shot", "options": json.dumps(
        [{"name": "orthophoto-resolution", "value": 50}])}, files=files)
    uuid = result["uuid"]
    info = wait_status(cluster.relay, uuid)
    assert info["status"]["code"] == COMPLETED and info["imagesCount"] == 3 and info["name"] == "one shot"
    assert task_info(cluster.node_of(uuid), uuid)["uuid"] == uuid
    assert "error" in post_json(cluster.relay, "/task/new", data={"name": "no files"})


def test_intake_errors_answer_like_nodeodx(cluster: Cluster, sample_images: list[Path]) -> None:
    relay = cluster.relay
    unknown = str(uuidlib.uuid4())
    assert "error" in upload(relay, unknown, sample_images[:1])
    assert "error" in commit(relay, unknown)
    assert "error" in commit(relay, "not-a-uuid")
    uuid = init_task(relay)["uuid"]
    assert "error" in commit(relay, uuid)  # no files
    uuid = init_task(relay)["uuid"]
    assert upload(relay, uuid, sample_images[:1]) == {"success": True}
    result = commit(relay, uuid)  # one image: not enough
    assert "error" in result and "images" in result["error"].lower()
    assert "error" in task_info(relay, uuid)


def test_set_uuid_is_kept_on_the_relay_and_the_node(cluster: Cluster, sample_images: list[Path]) -> None:
    wanted = str(uuidlib.uuid4())
    assert submit(cluster.relay, sample_images[:2], headers={"set-uuid": wanted}) == wanted
    assert task_info(cluster.node_of(wanted), wanted)["uuid"] == wanted
    assert "error" in init_task(cluster.relay, headers={"set-uuid": wanted})  # taken
    assert "error" in init_task(cluster.relay, headers={"set-uuid": "../../etc"})
    wait_status(cluster.relay, wanted)


def test_skip_post_processing_and_outputs_reach_the_node(cluster: Cluster, sample_images: list[Path]) -> None:
    relay = cluster.relay
    skipped = submit(relay, sample_images[:3], {"skipPostProcessing": "true"})
    only = submit(relay, sample_images[:3], {"outputs": json.dumps(["odm_orthophoto/odm_orthophoto.tif"])})
    for uuid in (skipped, only):
        assert wait_status(relay, uuid)["status"]["code"] == COMPLETED
    names = zipfile.ZipFile(io.BytesIO(requests.get(relay.api(f"/task/{skipped}/download/all.zip")).content)).namelist()
    assert "odm_orthophoto/odm_orthophoto.tif" in names
    assert not any(n.startswith("entwine_pointcloud/") for n in names)  # no EPT without post-processing
    assert not any(o["name"] == "pc-ept" for o in task_info(relay, skipped)["options"])
    assert "error" in get_json(relay, f"/task/{skipped}/download/ept.json")
    names = zipfile.ZipFile(io.BytesIO(requests.get(relay.api(f"/task/{only}/download/all.zip")).content)).namelist()
    assert [n for n in names if not n.endswith("/")] == ["odm_orthophoto/odm_orthophoto.tif"]


def test_task_list(cluster: Cluster, sample_images: list[Path]) -> None:
    uuid = submit(cluster.relay, sample_images[:2])
    listed = get_json(cluster.relay, "/task/list")
    assert {"uuid": uuid} in listed and all(set(item) == {"uuid"} for item in listed)
    pending = init_task(cluster.relay)["uuid"]  # not committed: not listed, as on NodeODX
    assert {"uuid": pending} not in get_json(cluster.relay, "/task/list")
    wait_status(cluster.relay, uuid)


# --- downloads ------------------------------------------------------------------------------------
def test_download_all_zip_is_the_nodes(cluster: Cluster, done_task: dict) -> None:
    response = requests.get(cluster.relay.api(f"/task/{done_task['uuid']}/download/all.zip"), timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/zip"
    assert response.content == done_task["zip"]
    assert zipfile.ZipFile(io.BytesIO(response.content)).testzip() is None


@pytest.mark.parametrize("header,start,end", [("bytes=100-1099", 100, 1100), ("bytes=0-0", 0, 1),
                                              ("bytes=-500", -500, None), ("bytes=1000-", 1000, None)])
def test_range_is_answered_with_206(cluster: Cluster, done_task: dict, header: str, start: int,
                                    end: int | None) -> None:
    whole = done_task["zip"]
    response = requests.get(cluster.relay.api(f"/task/{done_task['uuid']}/download/all.zip"),
                            headers={"Range": header}, timeout=30)
    assert response.status_code == 206
    assert response.content == whole[start:end]
    first = start if start >= 0 else len(whole) + start
    assert response.headers["Content-Range"] == f"bytes {first}-{first + len(response.content) - 1}/{len(whole)}"


def test_range_as_the_very_first_request_fills_the_cache(cluster: Cluster, sample_images: list[Path]) -> None:
    uuid = submit(cluster.relay, sample_images[:2])
    wait_status(cluster.relay, uuid, [COMPLETED])
    whole = requests.get(cluster.node_of(uuid).api(f"/task/{uuid}/download/all.zip"), timeout=30).content
    response = requests.get(cluster.relay.api(f"/task/{uuid}/download/all.zip"),
                            headers={"Range": "bytes=10-19"}, timeout=30)
    assert response.status_code == 206 and response.content == whole[10:20]


@pytest.mark.parametrize("name", ["orthophoto.tif", "dsm.tif", "dtm.tif", "georeferenced_model.laz", "ept.json",
                                  "shots.geojson", "report.pdf"])
def test_single_asset_is_the_member_of_all_zip(cluster: Cluster, done_task: dict, name: str) -> None:
    member = asset_by_name(name).path
    expected = zipfile.ZipFile(io.BytesIO(done_task["zip"])).read(member)
    response = requests.get(cluster.relay.api(f"/task/{done_task['uuid']}/download/{name}"), timeout=30)
    assert response.status_code == 200, response.text[:200]
    assert response.content == expected and len(expected) > 0
    ranged = requests.get(cluster.relay.api(f"/task/{done_task['uuid']}/download/{name}"),
                          headers={"Range": "bytes=0-9"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == expected[:10]


@pytest.mark.parametrize("name", ["ept-data/0-0-0-0.laz", "ept-hierarchy/0-0-0-0.json",
                                  "ept/ept-data/0-0-0-0.laz"])
def test_ept_tiles_by_name(cluster: Cluster, done_task: dict, name: str) -> None:
    """A viewer resolves tiles relative to .../download/ept.json; `ept/<path>` is the catalogue's form."""
    relative = name.removeprefix("ept/")
    expected = zipfile.ZipFile(io.BytesIO(done_task["zip"])).read("entwine_pointcloud/" + relative)
    response = requests.get(cluster.relay.api(f"/task/{done_task['uuid']}/download/{name}"), timeout=30)
    assert response.status_code == 200, response.text[:200]
    assert response.content == expected


def test_folder_asset_is_a_zip_of_the_folder(cluster: Cluster, done_task: dict) -> None:
    response = requests.get(cluster.relay.api(f"/task/{done_task['uuid']}/download/entwine_pointcloud.zip"),
                            timeout=30)
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert "entwine_pointcloud/ept.json" in names and "entwine_pointcloud/ept-data/0-0-0-0.laz" in names


def raw_get(relay: Relay, path: str) -> tuple[int, bytes, str]:
    """GET `path` byte for byte as given (no client-side normalisation of `..` or escapes)."""
    connection = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=30)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read(), response.getheader("Content-Type", "")
    finally:
        connection.close()


@pytest.mark.parametrize("name", [
    "../x", "..%2Fx", "..%2F..%2Frelay.sqlite3", "%2e%2e/%2e%2e/relay.secret", "../../../../etc/passwd",
    "%2Fetc%2Fpasswd", "/etc/passwd", "odm_orthophoto/odm_orthophoto.tif", "nothing.tif", "ALL.ZIP",
    "ept-data/../../relay.sqlite3", "ept-data/..%2F..%2Frelay.secret", "ept/../cache/all.zip",
    "ept-data/0-0-0-0.laz%00.txt", "orthophoto.tif/..", "ept.json/../../relay.secret", "task_output.txt",
])
def test_invalid_asset_names_and_path_tricks_are_refused(cluster: Cluster, done_task: dict, name: str) -> None:
    status, body, content_type = raw_get(cluster.relay, f"/task/{done_task['uuid']}/download/{name}")
    assert content_type.startswith("application/json"), (status, body[:200])
    assert "error" in json.loads(body)
    assert status in (200, 400, 404)


def test_downloads_of_unknown_or_unfinished_tasks_are_errors(cluster: Cluster, sample_images: list[Path]) -> None:
    assert "error" in get_json(cluster.relay, f"/task/{uuidlib.uuid4()}/download/all.zip")
    assert "error" in get_json(cluster.relay, "/task/nope/download/all.zip")


# --- cancel, restart, remove (a slow node of their own) -------------------------------------------
def test_cancel_restart_remove(relay_factory, fast_node, sample_images: list[Path]) -> None:
    node = fast_node(seconds_per_image=1)
    relay = relay_factory([node])
    uuid = submit(relay, sample_images[:3])
    wait_status(relay, uuid, [RUNNING])
    assert post_json(relay, "/task/cancel", {"uuid": uuid}) == {"success": True}
    assert wait_status(relay, uuid, [CANCELED])["status"]["code"] == task_info(node, uuid)["status"]["code"]
    assert post_json(relay, "/task/restart", {"uuid": uuid, "options": json.dumps(
        [{"name": "dsm", "value": True}])}) == {"success": True}
    info = wait_status(relay, uuid, [QUEUED, RUNNING])
    assert {"name": "dsm", "value": True} in info["options"]
    assert task_info(node, uuid)["status"]["code"] in (QUEUED, RUNNING)
    assert post_json(relay, "/task/remove", {"uuid": uuid}) == {"success": True}
    assert "error" in task_info(relay, uuid)
    assert "error" in task_info(node, uuid)
    assert {"uuid": uuid} not in get_json(relay, "/task/list")
    assert "error" in post_json(relay, "/task/cancel", {"uuid": uuid})
    assert "error" in post_json(relay, "/task/restart", {"uuid": uuid})
    assert "error" in post_json(relay, "/task/remove", {"uuid": uuid})
    assert "error" in post_json(relay, "/task/cancel", {"uuid": "../etc"})


def test_restart_with_a_bad_option_names_it(cluster: Cluster, sample_images: list[Path]) -> None:
    uuid = submit(cluster.relay, sample_images[:2])
    wait_status(cluster.relay, uuid)
    result = post_json(cluster.relay, "/task/restart", {"uuid": uuid, "options": json.dumps(
        [{"name": "mesh-octree-depth", "value": 99}])})
    assert "mesh-octree-depth" in result["error"]


# --- webhooks -------------------------------------------------------------------------------------
def test_the_tasks_own_webhook_is_called_when_it_ends(cluster: Cluster, receiver: Receiver,
                                                      sample_images: list[Path]) -> None:
    uuid = submit(cluster.relay, sample_images[:3], {"webhook": f"{receiver.url}/hook?x=1"})
    wait_for(lambda: receiver.calls, timeout=20, what="the webhook call")
    time.sleep(0.3)
    assert len(receiver.calls) == 1
    path, body = receiver.calls[0]
    assert path == "/hook?x=1"
    assert body["uuid"] == uuid and body["status"]["code"] == COMPLETED
