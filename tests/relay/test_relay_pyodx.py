"""pyodx from PyPI, used as a new user would, works against the relay exactly as against a node."""
from __future__ import annotations

import uuid as uuidlib
import zipfile
from pathlib import Path

import pytest

pyodx = pytest.importorskip("pyodx")
from pyodx.exceptions import NodeResponseError, TaskFailedError  # noqa: E402
from pyodx.types import TaskStatus  # noqa: E402

RELAY_TOKEN, NODE_TOKEN = "pyodx-relay-token", "pyodx-node-token"


def session(server, token: str, images: list[Path], out: Path) -> dict:
    """What a user does with pyodx: look, create, wait, download; what each step gave."""
    node = pyodx.Node("127.0.0.1", server.port, token)
    info = node.info()
    options = {o.name for o in node.options()}
    statuses: list[TaskStatus] = []
    task = node.create_task([str(p) for p in images], {"dsm": True, "orthophoto-resolution": 50},
                            name="pyodx test")
    task.wait_for_completion(status_callback=lambda i: statuses.append(i.status), interval=0.2)
    done = task.info()
    folder = task.download_assets(str(out))
    files = sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())
    return {"info": info, "options": options, "uuid": task.uuid, "done": done, "files": files,
            "statuses": statuses, "listed": [t["uuid"] if isinstance(t, dict) else t for t in node.get("/task/list")],
            "output": task.output()}


def test_pyodx_against_the_relay_as_against_a_node(relay_factory, fast_node, sample_images: list[Path],
                                                   tmp_path: Path) -> None:
    node = fast_node(slots=2, token=NODE_TOKEN)
    relay = relay_factory([node], token=RELAY_TOKEN)
    direct = session(node, NODE_TOKEN, sample_images[:4], tmp_path / "direct")
    relayed = session(relay, RELAY_TOKEN, sample_images[:4], tmp_path / "relayed")

    assert relayed["done"].status == direct["done"].status == TaskStatus.COMPLETED
    assert relayed["done"].images_count == direct["done"].images_count == 4
    assert relayed["done"].name == direct["done"].name == "pyodx test"
    assert relayed["files"] == direct["files"] and "odm_orthophoto/odm_orthophoto.tif" in relayed["files"]
    assert relayed["options"] == direct["options"]
    assert relayed["info"].max_parallel_tasks == direct["info"].max_parallel_tasks == 2
    assert relayed["info"].total_memory == direct["info"].total_memory
    assert relayed["info"].engine == direct["info"].engine and relayed["info"].version == direct["info"].version
    assert relayed["statuses"][-1] == TaskStatus.COMPLETED
    assert [line for line in relayed["output"] if "ODX Relay" not in line][-1] == direct["output"][-1]
    assert relayed["listed"] == [relayed["uuid"]]  # the relay lists this token's tasks only
    on_node = pyodx.Node("127.0.0.1", node.port, NODE_TOKEN).get("/task/list", {})
    assert {t["uuid"] for t in on_node} == {direct["uuid"], relayed["uuid"]}  # the same uuid on the node


def test_pyodx_ranged_download_set_uuid_and_errors(relay_factory, fast_node, sample_images: list[Path],
                                                   tmp_path: Path) -> None:
    node = fast_node(slots=2)
    relay = relay_factory([node], token=RELAY_TOKEN)
    client = pyodx.Node("127.0.0.1", relay.port, RELAY_TOKEN)
    wanted = str(uuidlib.uuid4())
    task = client.create_task([str(p) for p in sample_images[:3]], task_uuid=wanted)
    assert task.uuid == wanted
    task.wait_for_completion(interval=0.2)
    # chunks of 100 kB: pyodx downloads all.zip with parallel Range requests, which the relay answers
    ranged = Path(task.download_zip(str(tmp_path / "ranged"), parallel_downloads=4, parallel_chunks_size=0.1))
    plain = Path(task.download_zip(str(tmp_path / "plain")))
    assert ranged.read_bytes() == plain.read_bytes()
    assert zipfile.ZipFile(ranged).testzip() is None

    # (pyodx's Node.url writes the token into a shared default dict, so pass a fresh query each time)
    with pytest.raises(NodeResponseError, match="Unauthorized"):
        pyodx.Node("127.0.0.1", relay.port).get("/info", {})  # no token: 401
    with pytest.raises(NodeResponseError, match="Invalid authentication token"):
        pyodx.Node("127.0.0.1", relay.port, "wrong").get("/info", {})  # wrong token: 403 with a JSON error
    with pytest.raises(NodeResponseError) as refused:
        client.create_task([str(p) for p in sample_images[:2]], {"mesh-octree-depth": 99})
    assert "mesh-octree-depth" in str(refused.value)
    with pytest.raises(NodeResponseError):
        client.get_task(str(uuidlib.uuid4())).info()

    assert task.restart() is True
    assert task.cancel() is True
    with pytest.raises(TaskFailedError):
        task.wait_for_completion(interval=0.2)  # canceled
    assert task.info().status == TaskStatus.CANCELED
    assert task.remove() is True
    with pytest.raises(NodeResponseError):
        task.info()
