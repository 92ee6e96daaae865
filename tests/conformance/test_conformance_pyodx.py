"""pyodx (from PyPI), used as its users do, drives a whole cycle directly on NodeODX and through the relay
in front of NodeODX nodes: node info, options, create_task with options and a name, wait, info (every
TaskInfo field), output, download, remove. Both must give pyodx the same answers."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.sides import Cluster, Side, option_map

pyodx = pytest.importorskip("pyodx")  # the distribution pyodx 1.5.14 installs the module `pyodx`
from pyodx.types import TaskInfo, TaskStatus  # noqa: E402

pytestmark = pytest.mark.slow

TASKINFO_FIELDS = {"uuid", "name", "date_created", "processing_time", "status", "last_error", "options",
                   "images_count", "progress", "output"}
NODEINFO_FIELDS = {"version", "task_queue_count", "total_memory", "available_memory", "cpu_cores", "max_images",
                   "max_parallel_tasks", "engine", "engine_version", "odm_version"}


def cycle(side: Side, images: list[Path], out: Path) -> dict[str, Any]:
    node = pyodx.Node("127.0.0.1", side.server.port, side.token)
    node_info = node.info()
    options = node.options()
    statuses: list[TaskStatus] = []
    task = node.create_task([str(p) for p in images], {"dsm": True, "orthophoto-resolution": 5},
                            name="Conformance: pyodx")
    task.wait_for_completion(status_callback=lambda info: statuses.append(info.status), interval=0.2)
    info = task.info(with_output=0)
    again = node.get_task(task.uuid).info()
    folder = Path(task.download_assets(str(out / side.name)))
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.suffix != ".zip")
    result = {"node_info": node_info, "options": options, "task": task, "info": info, "again": again,
              "statuses": statuses, "output": task.output(), "output_from_3": task.output(3), "files": files}
    result["removed"] = task.remove()
    return result


def test_pyodx_full_cycle(cluster: Cluster, sample_images: list[Path], tmp_path: Path) -> None:
    direct, relay = cluster.both(lambda side: cycle(side, sample_images[:4], tmp_path))

    assert set(vars(relay["node_info"])) == set(vars(direct["node_info"])) == NODEINFO_FIELDS
    for field in ("version", "max_images", "max_parallel_tasks", "engine", "engine_version", "odm_version"):
        assert getattr(relay["node_info"], field) == getattr(direct["node_info"], field), field
    for field in ("task_queue_count", "total_memory", "available_memory", "cpu_cores"):
        assert type(getattr(relay["node_info"], field)) is type(getattr(direct["node_info"], field)) is int, field
    assert [vars(o) for o in relay["options"]] == [vars(o) for o in direct["options"]]

    now = dt.datetime.utcnow()
    for side in (direct, relay):
        info: TaskInfo = side["info"]
        assert set(vars(info)) == TASKINFO_FIELDS
        assert info.uuid == side["task"].uuid
        assert info.name == "Conformance: pyodx"
        assert isinstance(info.date_created, dt.datetime) and abs((now - info.date_created).total_seconds()) < 120
        assert isinstance(info.processing_time, int) and info.processing_time > 0
        assert info.status == TaskStatus.COMPLETED and info.last_error == ""
        assert info.images_count == 4 and info.progress == 100
        assert side["statuses"][-1] == TaskStatus.COMPLETED
        assert vars(side["again"]) == {**vars(info), "output": []}
        assert side["removed"] is True
    d, r = direct["info"], relay["info"]
    assert option_map(r.options) == option_map(d.options)
    assert option_map(d.options)["orthophoto-resolution"] == 5 and option_map(d.options)["dsm"] is True
    assert r.output == d.output and r.output == direct["output"] and relay["output"] == direct["output"]
    assert relay["output_from_3"] == direct["output_from_3"] == direct["output"][3:]
    assert relay["files"] == direct["files"] and "odm_orthophoto/odm_orthophoto.tif" in direct["files"]
