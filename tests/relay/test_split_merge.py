"""Split-merge through the relay, relay side (issue 12, items 1-3): the test plays ODM's part with pyodx, as
ODM's `LocalRemoteExecutor` does, against the `sm-cluster` URL the relay gave the parent task.

A parent here is a task with `split` on a slow development node whose sm-cluster (the relay's public URL) it
cannot reach, so that it processes its own submodels itself, as ODM does then, and leaves the cluster to the
test (the bar, with nodes that do use it, is test_split_merge_cluster.py); what matters here is what the relay
does with `sm-cluster`, the credential, the submodels it carries and the slots it gives them.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from proxy.nodes import parse_node_url
from testkit.relay import start_redis
from tests.relay.relay_helpers import (
    CANCELED,
    COMPLETED,
    QUEUED,
    RUNNING,
    get_json,
    init_task,
    post_json,
    submit,
    task_info,
    upload,
    wait_for,
    wait_status,
)

pyodx = pytest.importorskip("pyodx")
from pyodx.types import TaskStatus  # noqa: E402

TOKEN = "split-merge-owner"
SLOW = {"seconds_per_image": 3}   # a parent that runs for a while
QUICK = {"seconds_per_image": 0.05}
UNREACHABLE = "http://127.0.0.1:9"  # the relay's --public-url as the parents' nodes see it: nothing answers
ROUND_ONE = ["opensfm/matches", "opensfm/features", "opensfm/reconstruction.json", "opensfm/tracks.csv",
             "cameras.json"]


def options_of(info: dict) -> dict:
    return {o["name"]: o["value"] for o in info.get("options", [])}


def parent_fields(split: int = 2, **more: str) -> dict[str, str]:
    options = [{"name": "split", "value": split}, *({"name": k, "value": v} for k, v in more.items())]
    return {"name": "parent", "options": json.dumps(options)}


def seed_zip(folder: Path) -> Path:
    """A round-one seed as ODM makes it: a partial project and an empty marker file."""
    path = folder / "seed.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("opensfm/exif/photo.jpg.exif", json.dumps({"gps": {"latitude": 52.47}}))
        archive.writestr("opensfm/camera_models.json", "{}")
        archive.writestr("opensfm/split_merge_stop_at_reconstruction.txt", "")
    return path


def cluster_node(sm_cluster: str):
    """What ODM does with `sm-cluster`: `Node.from_url`."""
    return pyodx.Node.from_url(sm_cluster)


def create_submodel(sm_cluster: str, images: list[Path], seed: Path):
    """ODM's create_task for a submodel: images and seed.zip, skip_post_processing, outputs."""
    return cluster_node(sm_cluster).create_task([str(p) for p in images] + [str(seed)], {"pc-quality": "lowest"},
                                                skip_post_processing=True, outputs=ROUND_ONE)


def holder(nodes, uuid: str):
    """The node that holds a task."""
    held = [node for node in nodes if "error" not in task_info(node, uuid)]
    assert len(held) == 1, f"{uuid} is held by {len(held)} nodes"
    return held[0]


def start_parent(relay, images: list[Path], **more: str) -> tuple[str, str]:
    """A parent on its node, running; its uuid and the sm-cluster the relay gave it, as the test reaches it."""
    uuid = submit(relay, images, parent_fields(**more), token=TOKEN)
    info = wait_status(relay, uuid, (RUNNING,), token=TOKEN)
    given = options_of(info)["sm-cluster"]
    assert given.startswith(UNREACHABLE + "/?token=")
    return uuid, given.replace(UNREACHABLE, relay.url)


def relay_for(relay_factory, nodes, **flags):
    """A relay whose nodes cannot reach it: their parents keep their submodels to themselves."""
    return relay_factory(nodes, token=TOKEN, public_url=UNREACHABLE, **flags)


def test_sm_cluster_points_at_the_relay_with_a_credential_for_the_parent(relay_factory, devnode_factory,
                                                                          sample_images, tmp_path) -> None:
    node = devnode_factory(**SLOW)
    relay = relay_factory([node], token=TOKEN, public_url="http://relay.example:8123")
    parent = submit(relay, sample_images[:4], parent_fields(**{"sm-cluster": "http://attacker.example/"}),
                    token=TOKEN)
    on_relay = options_of(wait_status(relay, parent, (RUNNING,), token=TOKEN))
    on_node = options_of(task_info(node, parent))
    url = urlsplit(on_node["sm-cluster"])
    assert on_relay["sm-cluster"] == on_node["sm-cluster"]  # the client's value replaced, the same everywhere
    assert (url.scheme, url.netloc, url.path) == ("http", "relay.example:8123", "/")
    credential = parse_qs(url.query)["token"][0]
    assert parent in credential and TOKEN not in on_node["sm-cluster"]  # scoped to the task, not the owner's token
    node_from_url = cluster_node(on_node["sm-cluster"])  # ODM's parse of it
    assert (node_from_url.host, node_from_url.port, node_from_url.token) == ("relay.example", 8123, credential)

    # a task without split gets no sm-cluster at all: a node is never pointed at an address a client chose
    plain = submit(relay, sample_images[:2], {"options": json.dumps([{"name": "sm-cluster",
                                                                        "value": "http://attacker.example/"}])},
                   token=TOKEN)
    assert "sm-cluster" not in options_of(task_info(relay, plain, token=TOKEN))


def test_restart_with_new_options_keeps_the_relays_sm_cluster(relay_factory, devnode_factory, sample_images) -> None:
    node = devnode_factory(**QUICK)
    relay = relay_for(relay_factory, [node])
    parent = submit(relay, sample_images[:4], parent_fields(), token=TOKEN)
    wait_status(relay, parent, (COMPLETED,), token=TOKEN)
    options = json.dumps([{"name": "split", "value": 3}, {"name": "sm-cluster", "value": "http://elsewhere.example/"}])
    assert post_json(relay, "/task/restart", {"uuid": parent, "options": options}, token=TOKEN) == {"success": True}
    on_node = options_of(task_info(node, parent))
    assert on_node["split"] == 3 and on_node["sm-cluster"].startswith(UNREACHABLE + f"/?token=sm.{parent}.")
    wait_status(relay, parent, (COMPLETED,), token=TOKEN)


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_submodels_through_the_credential(backend, relay_factory, devnode_factory, servers, sample_images,
                                          tmp_path) -> None:
    """ODM's calls with the credential: info, create_task with seed.zip, info right after (not QUEUED: a node
    is free), follow, download, remove. The submodel is the parent's, listed under it, nowhere else."""
    nodes = [devnode_factory(**SLOW), devnode_factory(**SLOW)]
    store = {"redis": servers.add(start_redis(servers.tmp_path)).url} if backend == "redis" else {}
    relay = relay_for(relay_factory, nodes, max_open_uploads=1, **store)
    parent, sm_cluster = start_parent(relay, sample_images[:4])
    assert cluster_node(sm_cluster).info().max_parallel_tasks == 2
    parent_node = holder(nodes, parent)
    free_node = next(node for node in nodes if node is not parent_node)

    submodel = cluster_node(sm_cluster).create_task([str(p) for p in sample_images[:2]] + [str(seed_zip(tmp_path))],
                                                    {"pc-quality": "lowest"}, skip_post_processing=True,
                                                    outputs=ROUND_ONE)
    first = submodel.info()
    assert first.status in (TaskStatus.RUNNING, TaskStatus.COMPLETED)  # ODM would take QUEUED for "no room"
    held = task_info(free_node, submodel.uuid)  # on the free node, seed.zip not counted as an image
    assert held["imagesCount"] == 2
    assert options_of(held).get("pc-quality") == "lowest" and "sm-cluster" not in options_of(held)

    parent_info = task_info(relay, parent, token=TOKEN)
    entries = parent_info["relaySubmodels"]
    assert [e["uuid"] for e in entries] == [submodel.uuid]
    assert entries[0]["node"] and entries[0]["status"] in (RUNNING, COMPLETED) and "progress" in entries[0]
    listed = get_json(relay, "/task/list", token=TOKEN, with_info="true")  # what the QGIS task panel reads
    assert [e["uuid"] for e in listed[0]["relaySubmodels"]] == [submodel.uuid]
    assert "relaySubmodels" not in task_info(parent_node, parent)  # the relay's extension, not the node's

    # the owner reaches it; it is not in the owner's list; the credential sees nothing else of the owner's
    assert task_info(relay, submodel.uuid, token=TOKEN)["uuid"] == submodel.uuid
    assert [t["uuid"] for t in get_json(relay, "/task/list", token=TOKEN)] == [parent]
    credential = cluster_node(sm_cluster).token
    assert [t["uuid"] for t in get_json(relay, "/task/list", token=credential)] == [submodel.uuid]
    assert "error" in task_info(relay, parent, token=credential)

    # the cap on open uploads (1 here) counts the owner's and each parent's submodels apart
    assert "uuid" in init_task(relay, {"name": "open submodel"}, token=credential)
    assert "uuid" in init_task(relay, {"name": "the owner's own"}, token=TOKEN)
    assert "--max-open-uploads" in init_task(relay, {"name": "a second open submodel"}, token=credential)["error"]

    submodel.wait_for_completion(interval=0.2)
    folder = Path(submodel.download_assets(str(tmp_path / "submodel")))
    assert any(folder.rglob("*"))
    assert submodel.remove()
    assert "relaySubmodels" in task_info(relay, parent, token=TOKEN)
    assert task_info(relay, parent, token=TOKEN)["relaySubmodels"] == []
    assert "error" in task_info(free_node, submodel.uuid)


def test_the_credential_ends_with_its_parent_and_takes_its_submodels(relay_factory, devnode_factory,
                                                                      sample_images, tmp_path) -> None:
    nodes = [devnode_factory(**SLOW), devnode_factory(**SLOW)]
    relay = relay_for(relay_factory, nodes)
    parent, sm_cluster = start_parent(relay, sample_images[:4])
    credential = cluster_node(sm_cluster).token
    submodel = create_submodel(sm_cluster, sample_images[:3], seed_zip(tmp_path))
    free_node = holder(nodes, submodel.uuid)
    wait_status(free_node, submodel.uuid, (RUNNING,))
    open_upload = init_task(relay, {"name": "half sent"}, token=credential)["uuid"]

    assert post_json(relay, "/task/cancel", {"uuid": parent}, token=TOKEN) == {"success": True}
    wait_status(relay, parent, (CANCELED,), token=TOKEN)
    # its submodels are canceled and removed, on the node and in the relay, uploads included
    wait_for(lambda: "error" in task_info(free_node, submodel.uuid), what="submodel removed from its node")
    assert "error" in task_info(relay, submodel.uuid, token=TOKEN)
    assert "error" in post_json(relay, f"/task/new/commit/{open_upload}", token=TOKEN)
    # and the credential is dead: ODM on the parent's node can do nothing more with it
    response = requests.get(f"{relay.url}/info", params={"token": credential}, timeout=10)
    assert response.status_code == 403 and "ended" in response.json()["error"]
    forged = credential[:-4] + ("0000" if not credential.endswith("0000") else "1111")
    assert requests.get(f"{relay.url}/info", params={"token": forged}, timeout=10).status_code == 403


def test_removing_a_parent_removes_its_submodels(relay_factory, devnode_factory, sample_images, tmp_path) -> None:
    nodes = [devnode_factory(**SLOW), devnode_factory(**SLOW)]
    relay = relay_for(relay_factory, nodes)
    parent, sm_cluster = start_parent(relay, sample_images[:4])
    submodel = create_submodel(sm_cluster, sample_images[:3], seed_zip(tmp_path))
    parent_node, free_node = holder(nodes, parent), holder(nodes, submodel.uuid)
    assert post_json(relay, "/task/remove", {"uuid": parent}, token=TOKEN) == {"success": True}
    assert "error" in task_info(free_node, submodel.uuid)
    assert "error" in task_info(parent_node, parent)
    assert "error" in task_info(relay, submodel.uuid, token=TOKEN)


def test_a_submodel_on_a_lost_node_is_sent_again_like_any_task(relay_factory, devnode_factory, sample_images,
                                                             tmp_path) -> None:
    """Its node goes away past --failover-after: the submodel is sent again from its staged inputs (seed.zip
    too), under the same uuid, to a node with room, and the parent's info says where it runs now."""
    nodes = [devnode_factory(**SLOW) for _ in range(3)]
    relay = relay_for(relay_factory, nodes, failover_after=1, offline_after=1)
    parent, sm_cluster = start_parent(relay, sample_images[:4])
    submodel = create_submodel(sm_cluster, sample_images[:3], seed_zip(tmp_path))
    lost = holder(nodes, submodel.uuid)
    lost.stop()
    others = [node for node in nodes if node is not lost]
    parent_node = holder(others, parent)
    survivor = next(node for node in others if node is not parent_node)
    wait_for(lambda: "error" not in task_info(survivor, submodel.uuid), timeout=30, what="submodel sent again")
    assert task_info(survivor, submodel.uuid)["imagesCount"] == 3
    entries = task_info(relay, parent, token=TOKEN)["relaySubmodels"]
    assert [e["uuid"] for e in entries] == [submodel.uuid] and entries[0]["node"] == parse_node_url(survivor.url).id
    submodel.wait_for_completion(interval=0.3)
    assert submodel.info().status == TaskStatus.COMPLETED


def test_a_parent_on_a_lost_node_loses_its_submodels(relay_factory, devnode_factory, sample_images,
                                                    tmp_path) -> None:
    """Its node goes away past --failover-after: the parent is sent again, and the submodels of its lost run are
    removed (no one will take their results; the next run makes its own)."""
    nodes = [devnode_factory(**SLOW) for _ in range(3)]
    relay = relay_for(relay_factory, nodes, failover_after=1, offline_after=1)
    parent, sm_cluster = start_parent(relay, sample_images[:4])
    submodel = create_submodel(sm_cluster, sample_images[:3], seed_zip(tmp_path))
    lost, child_node = holder(nodes, parent), holder(nodes, submodel.uuid)
    lost.stop()
    wait_for(lambda: "error" in task_info(child_node, submodel.uuid), timeout=30, what="the submodel removed")
    assert "error" in task_info(relay, submodel.uuid, token=TOKEN)
    wait_for(lambda: any("error" not in task_info(n, parent) for n in nodes if n is not lost), timeout=30,
             what="the parent sent again")
    assert task_info(relay, parent, token=TOKEN)["relaySubmodels"] == []


def test_split_merge_turned_off(relay_factory, devnode_factory, sample_images, tmp_path) -> None:
    node = devnode_factory(**QUICK)
    relay = relay_factory([node], token=TOKEN, no_split_merge=True)
    parent = submit(relay, sample_images[:3], parent_fields(**{"sm-cluster": "http://elsewhere.example/"}),
                    token=TOKEN)
    assert "sm-cluster" not in options_of(task_info(node, parent))  # stripped, not passed on
    uuid = init_task(relay, {"name": "seeded"}, token=TOKEN)["uuid"]
    refused = upload(relay, uuid, [seed_zip(tmp_path)], token=TOKEN)
    assert "seed.zip" in refused["error"] and "--no-split-merge" in refused["error"]
    assert upload(relay, uuid, sample_images[:2], token=TOKEN) == {"success": True}  # the upload goes on
    assert "seed.zip" not in {p.name for p in (relay.data_dir / "staging" / uuid).iterdir()}


def test_a_submodel_is_placed_at_commit_when_a_node_frees_up(relay_factory, devnode_factory, sample_images,
                                                            tmp_path) -> None:
    """Its upload began while every node was busy (no node to forward to); a node is free by its commit: it
    is placed before the commit is answered, so ODM's info right after says RUNNING, not QUEUED."""
    nodes = [devnode_factory(**SLOW), devnode_factory(**SLOW)]
    relay = relay_for(relay_factory, nodes, check_interval=5)  # no help from a health round
    parent, sm_cluster = start_parent(relay, sample_images[:4])
    other = next(node for node in nodes if node is not holder(nodes, parent))
    blocker = submit(relay, sample_images[:2], {"name": "ordinary"}, token=TOKEN)
    wait_status(relay, blocker, (RUNNING,), token=TOKEN)
    credential = cluster_node(sm_cluster).token
    uuid = init_task(relay, {"name": "submodel", "skipPostProcessing": "true"}, token=credential)["uuid"]
    assert upload(relay, uuid, sample_images[:2], token=credential) == {"success": True}
    wait_status(relay, blocker, (COMPLETED,), token=TOKEN)
    assert post_json(relay, f"/task/new/commit/{uuid}", token=credential) == {"uuid": uuid}
    assert task_info(relay, uuid, token=credential)["status"]["code"] != QUEUED
    assert task_info(other, uuid)["uuid"] == uuid


def test_seed_zip_reaches_a_real_nodeodx_and_sm_cluster_too(relay_factory, nodeodx_factory, sample_images,
                                                            tmp_path) -> None:
    """Against the real NodeODX 2.3.1: the rewritten sm-cluster is among the parent's options there, and a
    submodel's seed.zip is forwarded and unpacked into its project folder, as ODM needs it."""
    node = nodeodx_factory(test_seconds=30, parallel_queue_processing=2)
    relay = relay_factory([node], token=TOKEN, public_url="http://10.1.2.3:3000")
    parent = submit(relay, sample_images[:3], parent_fields(), token=TOKEN)
    sm_cluster = options_of(task_info(node, parent))["sm-cluster"]
    assert sm_cluster.startswith("http://10.1.2.3:3000/?token=sm.")
    local = sm_cluster.replace("http://10.1.2.3:3000", relay.url)  # the relay as the node would reach it
    submodel = create_submodel(local, sample_images[:2], seed_zip(tmp_path))
    project = node.workdir / "tests" / "data" / submodel.uuid
    wait_for(lambda: (project / "opensfm" / "exif" / "photo.jpg.exif").is_file(), timeout=20,
             what="seed.zip unpacked in the submodel's project on NodeODX")
    assert (project / "opensfm" / "split_merge_stop_at_reconstruction.txt").is_file()
    assert not (project / "seed.zip").exists() and not (project / "images" / "seed.zip").exists()
    info = task_info(node, submodel.uuid)
    assert info["imagesCount"] == 2 and options_of(info).get("pc-quality") == "lowest"
    assert submodel.remove() and post_json(relay, "/task/remove", {"uuid": parent}, token=TOKEN)["success"]
