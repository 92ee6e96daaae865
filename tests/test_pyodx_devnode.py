"""pyodx, exactly as published on PyPI, against the development node: what a new user would try first."""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest
from pyodx import Node
from pyodx.exceptions import NodeResponseError, TaskFailedError
from pyodx.types import TaskStatus

pytestmark = pytest.mark.slow


def node_for(devnode: Any) -> Node:
    return Node.from_url(devnode.api("/"))


def test_pyodx_creates_follows_and_downloads_a_task(devnode_factory: Any, sample_images: list[Path],
                                                    tmp_path: Path) -> None:
    devnode = devnode_factory(seconds_per_image=0.1, token="pyodx-token")
    node = node_for(devnode)
    info = node.info()
    assert info.engine == "odx" and info.max_parallel_tasks == 1 and info.task_queue_count == 0
    assert any(option.name == "orthophoto-resolution" for option in node.options())

    seen: list[float] = []
    task = node.create_task([str(p) for p in sample_images], {"dsm": True, "orthophoto-resolution": 5},
                            name="pyodx run", progress_callback=seen.append)
    assert seen and seen[-1] == 100.0
    statuses: list[TaskStatus] = []
    task.wait_for_completion(status_callback=lambda i: statuses.append(i.status), interval=0.2)
    info = task.info(with_output=0)
    assert info.status == TaskStatus.COMPLETED and info.images_count == len(sample_images)
    assert info.name == "pyodx run" and info.options[0] == {"name": "dsm", "value": True}
    assert TaskStatus.RUNNING in statuses and info.output == task.output()

    # Without Accept-Ranges pyodx falls back to one plain download, even when asked for small chunks.
    zip_path = task.download_zip(str(tmp_path / "out"), parallel_chunks_size=0.1)
    names = zipfile.ZipFile(zip_path).namelist()
    assert "odm_orthophoto/odm_orthophoto.tif" in names and "entwine_pointcloud/ept.json" in names
    assert task.remove() is True
    with pytest.raises(NodeResponseError, match="not found"):
        task.info()


def test_pyodx_parallel_download_uses_ranges_when_the_node_allows(devnode_factory: Any,
                                                                  sample_images: list[Path],
                                                                  tmp_path: Path) -> None:
    devnode = devnode_factory(seconds_per_image=0, range=True, log_level="DEBUG")  # DEBUG logs each request
    node = node_for(devnode)
    task = node.create_task([str(p) for p in sample_images[:2]], skip_post_processing=True)
    task.wait_for_completion(interval=0.2)
    zip_path = task.download_zip(str(tmp_path / "ranged"), parallel_downloads=4, parallel_chunks_size=0.25)
    whole = (devnode.data_dir / task.uuid / "all.zip").read_bytes()
    assert Path(zip_path).read_bytes() == whole
    assert f"GET /task/{task.uuid}/download/all.zip 206" in devnode.log()


def test_pyodx_retries_dropped_uploads_and_sees_failures(devnode_factory: Any,
                                                         sample_images: list[Path]) -> None:
    devnode = devnode_factory(drop_uploads=0.5, max_images=4, seconds_per_image=5)
    node = node_for(devnode)
    task = node.create_task([str(p) for p in sample_images], max_retries=20, retry_timeout=0)
    with pytest.raises(TaskFailedError):
        task.wait_for_completion(interval=0.1)
    assert task.info().last_error == \
        f"{len(sample_images)} images uploaded, but this node can only process up to 4."
    accepted = node.create_task([str(p) for p in sample_images[:3]], max_retries=20, retry_timeout=0)
    assert accepted.info().images_count == 3
    assert accepted.cancel() is True and accepted.info().status == TaskStatus.CANCELED
    with pytest.raises(NodeResponseError, match="not found"):
        node.get_task("00000000-0000-4000-8000-000000000000").info()
