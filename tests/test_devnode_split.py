"""Split-merge on real development nodes: a parent node with `split` and `sm-cluster` plays ODM's part
against another node (or a relay in front of two), through pyodx, as `opendm/remote.py` does."""
from __future__ import annotations

import json
import math
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from pyodx import Node
from pyodx.exceptions import NodeResponseError
from pyodx.types import TaskStatus

from devnode.samples import make_samples
from devnode.seed import TOOLCHAIN_ROUND, output_matches
from devnode.submodels import MAX_OVERLAP_SHARE
from testkit.devnode import DevNode
from testkit.nodeodx import NodeODX
from testkit.nodeodx import available as nodeodx_available
from testkit.relay import start_relay
from testkit.servers import ServerGroup
from tests.split_helpers import covered

pytestmark = pytest.mark.slow

PHOTOS = 40
SPLIT = 10


@pytest.fixture(scope="module")
def flight(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Forty geotagged photos of one lawnmower flight: four submodels at split=10."""
    return make_samples(tmp_path_factory.mktemp("flight"), count=PHOTOS)


def pyodx_node(devnode: DevNode) -> Node:
    return Node.from_url(devnode.api("/"))


def cluster_url(server: Any) -> str:
    return server.url + (f"?token={server.token}" if server.token else "")


def submit(parent: DevNode, photos: list[Path], **options: Any) -> Any:
    return pyodx_node(parent).create_task([str(p) for p in photos], {"split": SPLIT, "dsm": True, "dtm": True,
                                                                     **options})


def finish(task: Any, timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        info = task.info()
        if info.status in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELED):
            return info
        assert time.monotonic() < deadline, f"the parent never ended: {task.output()[-20:]}"
        time.sleep(0.3)


def completed(parent: DevNode, photos: list[Path], **options: Any) -> tuple[Any, list[str]]:
    """Submit a split task, follow it to its end and check that it completed; the task and its console."""
    task = submit(parent, photos, **options)
    info = finish(task)
    output = task.output()
    assert info.status == TaskStatus.COMPLETED, output[-15:]
    return task, output


def runs(node: DevNode) -> list[dict]:
    """The node's journal of ended runs (uuid, status, images)."""
    path = node.data_dir / "runs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def held(node: Any) -> list[str]:
    return [t["uuid"] for t in requests.get(node.api("/task/list"), timeout=10).json()]


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.1)
    return value


def orthophoto(task: Any, tmp_path: Path) -> Path:
    archive = task.download_zip(str(tmp_path / "out"))
    with zipfile.ZipFile(archive) as zipped:
        names = set(zipped.namelist())
        assert {"odm_orthophoto/odm_orthophoto.tif", "odm_dem/dsm.tif", "odm_dem/dtm.tif",
                "odm_georeferencing/odm_georeferenced_model.laz", "odm_report/shots.geojson", "images.json",
                "entwine_pointcloud/ept.json"} <= names
        zipped.extractall(tmp_path / "merged")
    return tmp_path / "merged" / "odm_orthophoto/odm_orthophoto.tif"


def test_split_runs_submodels_on_the_sm_cluster_and_merges(devnode_factory: Callable[..., DevNode],
                                                           flight: list[Path], tmp_path: Path) -> None:
    cluster = devnode_factory(slots=3, seconds_per_image=0.05, token="cluster-secret")
    parent = devnode_factory(slots=1, seconds_per_image=0.3, sm_retry_seconds=0.2)  # slower: time to send others
    task, output = completed(parent, flight, **{"sm-cluster": cluster_url(cluster)})
    # ODM's way: one submodel here at a time, the others on the cluster, in two rounds
    remote = [r for r in runs(cluster) if r["status"] == 40]
    assert len(remote) >= 2, output  # submodels went out in both rounds
    size = SPLIT + math.floor(SPLIT * MAX_OVERLAP_SHARE)  # its own photos and the nearest of its neighbours'
    assert all(len(r["images"]) == size and set(r["images"]) <= {p.name for p in flight} for r in remote)
    assert any("sent to sm-cluster" in line for line in output)
    assert any("processing here" in line for line in output)
    assert not any("cluster-secret" in line for line in output)
    # nothing left on the cluster: every submodel task removed, its folder gone
    assert held(cluster) == []
    assert not [p for p in cluster.data_dir.iterdir() if p.is_dir() and p.name not in ("tmp",)]
    # the merge is a mosaic of all four: every photo's position has data
    merged = orthophoto(task, tmp_path)
    assert all(covered(merged, photo) for photo in flight)


def test_split_without_sm_cluster_processes_every_submodel_here(devnode_factory: Callable[..., DevNode],
                                                                flight: list[Path], tmp_path: Path) -> None:
    parent = devnode_factory(slots=1, seconds_per_image=0.05)
    task, output = completed(parent, flight, **{"split-overlap": 0})
    assert sum("processing here" in line for line in output) == 8  # four submodels, two rounds
    assert all(covered(orthophoto(task, tmp_path), photo) for photo in flight)


def test_an_sm_cluster_that_does_not_answer_leaves_the_work_here(devnode_factory: Callable[..., DevNode],
                                                                 flight: list[Path]) -> None:
    parent = devnode_factory(slots=1, seconds_per_image=0.05)
    task, output = completed(parent, flight[:20], **{"sm-cluster": "http://127.0.0.1:1/?token=never-shown"})
    assert any("does not answer" in line and "processing every submodel here" in line for line in output)
    assert not any("never-shown" in line for line in output)


def test_an_sm_cluster_refusing_the_token_fails_the_parent_clearly(devnode_factory: Callable[..., DevNode],
                                                                   flight: list[Path]) -> None:
    """As ODM's LRE: an answer that is an error (not silence) is a problem the user must fix."""
    cluster = devnode_factory(token="right")
    parent = devnode_factory(slots=1, seconds_per_image=0.05)
    task = submit(parent, flight[:20], **{"sm-cluster": cluster.url + "?token=wrong-secret"})
    info = finish(task)
    assert info.status == TaskStatus.FAILED
    assert "Invalid authentication token" in info.last_error and cluster.url in info.last_error
    assert not any("wrong-secret" in line for line in [info.last_error, *task.output()])


def test_a_full_sm_cluster_answers_queued_and_the_parent_works_alone(devnode_factory: Callable[..., DevNode],
                                                                     flight: list[Path], sample_images: list[Path],
                                                                     tmp_path: Path) -> None:
    """ODM's "task limit reached": a submodel the cluster queues is removed there and processed here."""
    cluster = devnode_factory(slots=1, seconds_per_image=60)
    blocker = pyodx_node(cluster).create_task([str(p) for p in sample_images[:2]])
    wait_until(lambda: blocker.info().status == TaskStatus.RUNNING, "the blocker runs")
    parent = devnode_factory(slots=1, seconds_per_image=0.05, sm_retry_seconds=0.2)
    task, output = completed(parent, flight, **{"sm-cluster": cluster_url(cluster)})
    assert any("answered QUEUED" in line for line in output)
    assert any("keeping at most 1 submodels there" in line for line in output)
    assert held(cluster) == [blocker.uuid]  # every queued submodel task removed again
    assert runs(cluster) == []  # none ran there
    assert all(covered(orthophoto(task, tmp_path), photo) for photo in flight)


def test_a_submodel_task_lost_on_the_cluster_is_sent_again(devnode_factory: Callable[..., DevNode],
                                                           flight: list[Path]) -> None:
    """An error that is not the task's failure (here the task vanished from the node) is retried."""
    cluster = devnode_factory(slots=3, seconds_per_image=1)
    parent = devnode_factory(slots=1, seconds_per_image=0.3, sm_retry_seconds=0.2)
    task = submit(parent, flight, **{"sm-cluster": cluster_url(cluster)})

    def remove_one() -> bool:
        """Remove a submodel task that is still running there (one already done may be downloaded already)."""
        for uuid in held(cluster):
            info = requests.get(cluster.api(f"/task/{uuid}/info"), timeout=10).json()
            if info.get("status", {}).get("code") == TaskStatus.RUNNING.value and info["progress"] < 50:
                return requests.post(cluster.api("/task/remove"), data={"uuid": uuid}, timeout=10).json()["success"]
        return False

    wait_until(remove_one, "a submodel task on the cluster is removed behind the parent's back")
    info = finish(task)
    output = task.output()
    assert info.status == TaskStatus.COMPLETED, output[-15:]
    assert any("retry 1 of 5" in line for line in output), output
    assert held(cluster) == []


def test_a_failed_submodel_fails_the_parent_with_its_output(devnode_factory: Callable[..., DevNode],
                                                            flight: list[Path]) -> None:
    """As in ODM, a submodel whose remote task failed is not retried: the parent fails, saying why, and
    leaves nothing on the cluster."""
    cluster = devnode_factory(slots=3, seconds_per_image=0.05, fail_tasks=True)
    parent = devnode_factory(slots=1, seconds_per_image=0.5, sm_retry_seconds=0.2)
    task = submit(parent, flight, **{"sm-cluster": cluster_url(cluster)})
    info = finish(task)
    assert info.status == TaskStatus.FAILED
    assert "Split-merge failed: submodel" in info.last_error and "--fail-tasks" in info.last_error
    assert wait_until(lambda: held(cluster) == [], "the cluster is empty", timeout=30)


def test_canceling_the_parent_removes_its_remote_tasks(devnode_factory: Callable[..., DevNode],
                                                       flight: list[Path]) -> None:
    cluster = devnode_factory(slots=3, seconds_per_image=5)
    parent = devnode_factory(slots=1, seconds_per_image=5)
    task = submit(parent, flight, **{"sm-cluster": cluster_url(cluster)})
    wait_until(lambda: len(held(cluster)) >= 2, "submodels run on the cluster")
    assert task.cancel() is True
    assert wait_until(lambda: held(cluster) == [], "the cluster is emptied", timeout=30)
    assert task.info().status == TaskStatus.CANCELED
    assert task.remove() is True
    with pytest.raises(NodeResponseError, match="not found"):
        task.info()


def test_submodels_through_a_relay_in_front_of_two_nodes(devnode_factory: Callable[..., DevNode],
                                                         servers: ServerGroup, flight: list[Path],
                                                         tmp_path: Path) -> None:
    """`sm-cluster` may be a relay: the submodels spread over its nodes and none is left anywhere."""
    nodes = [devnode_factory(slots=1, seconds_per_image=0.05) for _ in range(2)]
    relay = servers.add(start_relay(servers.tmp_path, [n.url for n in nodes], token="relay-secret",
                                    check_interval=0.3))
    parent = devnode_factory(slots=1, seconds_per_image=0.3, sm_retry_seconds=0.2)
    task, output = completed(parent, flight, **{"sm-cluster": cluster_url(relay)})
    assert any("sent to sm-cluster" in line for line in output)
    assert sum(len(runs(n)) for n in nodes) >= 1
    assert [held(n) for n in nodes] == [[], []] and held(relay) == []
    assert all(covered(orthophoto(task, tmp_path), photo) for photo in flight)


# ---- as strict as NodeODX on what split-merge sends ------------------------------------------------------

def _seed(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("opensfm/reference_lla.json", json.dumps({"latitude": 52.474, "longitude": 13.403,
                                                                   "altitude": 135.0}))
        archive.writestr("opensfm/reconstruction.json", "[]")
        archive.writestr("../escaped.txt", "must not leave the project")
    return path


@pytest.mark.skipif(not nodeodx_available(), reason="NodeODX is not built (make setup builds it)")
def test_seed_outputs_and_skip_post_processing_as_nodeodx_reads_them(
        nodeodx_factory: Callable[..., NodeODX], devnode_factory: Callable[..., DevNode],
        sample_images: list[Path], tmp_path: Path) -> None:
    """A round-two submodel task, as ODM sends it, to a real NodeODX and to the development node: both
    unpack seed.zip into the task's project (nothing outside it), leave post-processing options out, and
    answer an all.zip holding only what `outputs` asked for."""
    seed = _seed(tmp_path / "seed.zip")
    for server, folder_of in ((nodeodx_factory(), lambda s, u: s.workdir / "tests" / "data" / u),
                              (devnode_factory(seconds_per_image=0), lambda s, u: s.data_dir / u)):
        node = Node.from_url(server.api("/"))
        task = node.create_task([str(p) for p in sample_images[:3]] + [str(seed)], {"dsm": True},
                                skip_post_processing=True, outputs=list(TOOLCHAIN_ROUND.outputs))
        task.wait_for_completion(interval=0.2)
        info = task.info()
        assert info.images_count == 3, server
        assert {o["name"] for o in info.options} == {"dsm"}, (server, info.options)  # no pc-ept, cog, gltf
        folder = folder_of(server, task.uuid)
        assert (folder / "opensfm" / "reference_lla.json").is_file(), server
        assert not (folder.parent / "escaped.txt").exists() and not (folder / "images" / "seed.zip").exists()
        with zipfile.ZipFile(task.download_zip(str(tmp_path / server.name))) as zipped:
            names = [n for n in zipped.namelist() if not n.endswith("/")]
        assert names and all(output_matches(n, TOOLCHAIN_ROUND.outputs) for n in names), (server, names)
        assert "odm_dem/dsm.tif" in names, server
        # `skipPostProcessing` counts only as the exact text "true"
        init = requests.post(server.api("/task/new/init"),
                             files={"skipPostProcessing": (None, "True"), "options": (None, "[]")}, timeout=10)
        uuid = init.json()["uuid"]
        upload = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in sample_images[:2]]
        requests.post(server.api(f"/task/new/upload/{uuid}"), files=upload, timeout=30)
        requests.post(server.api(f"/task/new/commit/{uuid}"), timeout=30)
        info_url = server.api(f"/task/{uuid}/info")
        options = wait_until(lambda url=info_url: requests.get(url, timeout=10).json().get("options"),
                             "the task is initialised")
        assert "pc-ept" in {o["name"] for o in options}, (server, options)


def test_a_parent_node_that_stops_removes_its_remote_tasks(devnode_factory: Callable[..., DevNode],
                                                           flight: list[Path]) -> None:
    """ODM removes its remote tasks on exit: a node stopped (SIGTERM) while its submodels run elsewhere too."""
    cluster = devnode_factory(slots=3, seconds_per_image=5)
    parent = devnode_factory(slots=1, seconds_per_image=5)
    submit(parent, flight, **{"sm-cluster": cluster_url(cluster)})
    wait_until(lambda: len(held(cluster)) >= 2, "submodels run on the cluster")
    assert parent.stop() == 0
    assert held(cluster) == []
