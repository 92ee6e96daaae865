"""Issue 12's bar, end to end: a 40-photo task with split=10 through a real relay in front of 4 development
nodes that play ODM's part (the parent's node splits the photos, sends submodels back through the relay's
sm-cluster with pyodx, falls back to local work on QUEUED, merges). It completes; its submodels ran on at
least 3 nodes; the merged orthophoto covers every photo's position; no submodel is left on any node. Then
the same with every slot busy when the task is submitted: no deadlock."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import requests

from devnode.products import transform_points
from devnode.samples import SAMPLE_EPSG, make_samples
from shared.inputs import is_photo
from tests.relay.relay_helpers import COMPLETED, RUNNING, get_json, submit, task_info, wait_for, wait_status

pytestmark = pytest.mark.slow
gdal = pytest.importorskip("osgeo.gdal")

TOKEN = "split-merge-bar"
PHOTOS, SPLIT = 40, 10
NODE = {"seconds_per_image": 0.1, "sm_retry_seconds": 1}


@pytest.fixture(scope="module")
def forty_photos(tmp_path_factory) -> list[Path]:
    return make_samples(tmp_path_factory.mktemp("forty"), count=PHOTOS)


def split_fields() -> dict[str, str]:
    return {"name": "forty", "options": json.dumps([{"name": "split", "value": SPLIT},
                                                    {"name": "split-overlap", "value": 30}])}


def journal(node) -> list[dict]:
    """Every run the node ended (its own journal, written whatever the relay believes)."""
    path = node.data_dir / "runs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def held(node) -> list[str]:
    return [t["uuid"] for t in get_json(node, "/task/list")]


def submodel_nodes(nodes, others: set[str]) -> dict[str, set[str]]:
    """uuid -> the nodes that completed a run of it, for every task but `others` (the parent, the blockers)."""
    ran: dict[str, set[str]] = {}
    for node in nodes:
        for line in journal(node):
            if line["uuid"] not in others and line["status"] == COMPLETED:
                ran.setdefault(line["uuid"], set()).add(node.url)
    return ran


def check_orthophoto_covers(relay, parent: str, photos: list[Path], folder: Path) -> None:
    """The merged orthophoto has data (alpha) at every photo's position: a mosaic of the submodels, not one."""
    response = requests.get(f"{relay.url}/task/{parent}/download/all.zip", params={"token": TOKEN}, timeout=120)
    assert response.status_code == 200, response.text[:300]
    archive = folder / "all.zip"
    archive.write_bytes(response.content)
    zipfile.ZipFile(archive).extract("odm_orthophoto/odm_orthophoto.tif", folder)
    raster = gdal.Open(str(folder / "odm_orthophoto" / "odm_orthophoto.tif"))
    x0, dx, _, y0, _, dy = raster.GetGeoTransform()
    alpha = raster.GetRasterBand(raster.RasterCount).ReadAsArray()
    positions = []
    for photo in photos:
        tags = gdal.Open(str(photo)).GetMetadata()
        lat = _degrees(tags["EXIF_GPSLatitude"]) * (-1 if tags.get("EXIF_GPSLatitudeRef") == "S" else 1)
        lon = _degrees(tags["EXIF_GPSLongitude"]) * (-1 if tags.get("EXIF_GPSLongitudeRef") == "W" else 1)
        positions.append((lon, lat))
    missing = []
    for (east, north), photo in zip(transform_points(positions, 4326, SAMPLE_EPSG), photos):
        col, row = int((east - x0) / dx), int((north - y0) / dy)
        inside = 0 <= row < raster.RasterYSize and 0 <= col < raster.RasterXSize
        if not inside or not alpha[row, col]:
            missing.append(photo.name)
    assert not missing, f"the merged orthophoto has no data where these photos were taken: {missing}"


def _degrees(text: str) -> float:
    parts = [float(p.strip("() ")) for p in text.replace(")", ") ").split() if p.strip("() ")]
    return parts[0] + parts[1] / 60 + parts[2] / 3600


def run_bar(relay, nodes, photos: list[Path], tmp_path: Path, others: tuple[str, ...] = (),
            timeout: float = 240) -> str:
    parent = submit(relay, photos, split_fields(), token=TOKEN)
    seen: dict[str, set[str]] = {}

    def ended() -> dict | None:  # the parent's relaySubmodels, watched while it runs
        info = task_info(relay, parent, token=TOKEN)
        for entry in info.get("relaySubmodels", []):
            seen.setdefault(entry["uuid"], set()).add(entry["node"])
        return info if info["status"]["code"] in (30, 40, 50) else None

    info = wait_for(ended, timeout=timeout, interval=0.3, what="the split task to end")
    assert info["status"]["code"] == COMPLETED, info
    ran = submodel_nodes(nodes, {parent, *others})
    parent_node = next(node.url for node in nodes if any(line["uuid"] == parent for line in journal(node)))
    assert len(ran) >= 2, ran  # (a submodel the parent processed itself is no task anywhere)
    assert len(set().union(*ran.values()) | {parent_node}) >= 3, (ran, parent_node)
    assert seen and set(seen) <= set(ran), (seen, ran)  # the relay said where its submodels ran
    for node in nodes:  # nothing left behind: the parent alone remains
        assert set(held(node)) <= {parent, *others}, (node.url, held(node))
    assert [t["uuid"] for t in get_json(relay, "/task/list", token=TOKEN) if t["uuid"] == parent] == [parent]
    check_orthophoto_covers(relay, parent, [p for p in photos if is_photo(p.name)], tmp_path)
    return parent


def test_forty_photos_split_over_four_nodes(relay_factory, devnode_factory, forty_photos, tmp_path) -> None:
    nodes = [devnode_factory(**NODE) for _ in range(4)]
    relay = relay_factory(nodes, token=TOKEN)
    run_bar(relay, nodes, forty_photos, tmp_path)


def test_no_deadlock_with_every_slot_busy_at_submit(relay_factory, devnode_factory, forty_photos,
                                                    tmp_path) -> None:
    nodes = [devnode_factory(**NODE) for _ in range(4)]
    relay = relay_factory(nodes, token=TOKEN)
    blockers = [submit(relay, forty_photos[:20], {"name": f"blocker {i}"}, token=TOKEN) for i in range(4)]
    for uuid in blockers:
        wait_status(relay, uuid, (RUNNING,), token=TOKEN)
    run_bar(relay, nodes, forty_photos, tmp_path, others=tuple(blockers))
    for uuid in blockers:
        assert task_info(relay, uuid, token=TOKEN)["status"]["code"] == COMPLETED
