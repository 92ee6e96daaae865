"""NodeODX's rule for a task's files (shared/inputs.py): the table, the count, and everyone asking it.

The client, the plugin and the development node once each had their own copy of the rule, and two of
them disagreed in one upload: the plugin left `align.tif` out of the image count, the client counted
it. The last test checks the table against a real NodeODX 2.3.1, the reference.
"""
from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import pytest
import requests

from qgis_plugin.core import inputs as plugin_inputs
from shared import endpoints
from shared.inputs import InputKind, classify, count_against_max_images, count_photos, is_photo
from testkit.devnode import DevNode
from testkit.nodeodx import NodeODX, available
from testkit.servers import ServerProcess

KINDS = [
    # photos: anything NodeODX does not set apart, whatever its suffix
    ("IMG_0001.JPG", InputKind.PHOTO), ("thermal.tif", InputKind.PHOTO), ("scan.dng", InputKind.PHOTO),
    ("no_suffix", InputKind.PHOTO), ("geo.txt.jpg", InputKind.PHOTO),
    ("align.tiff", InputKind.PHOTO),      # NodeODX's align pattern takes .tif only
    ("align.jpg", InputKind.PHOTO), ("my_align.tif", InputKind.PHOTO),
    # any *.txt: ground control points, unless it is one of the two names below
    ("gcp_list.txt", InputKind.GCP), ("my points.txt", InputKind.GCP), ("NOTES.TXT", InputKind.GCP),
    ("align.txt", InputKind.GCP), ("my_geo.txt", InputKind.GCP), ("image_groups.txt.txt", InputKind.GCP),
    ("geo.txt", InputKind.GEO), ("GEO.TXT", InputKind.GEO), ("Geo.Txt", InputKind.GEO),
    ("image_groups.txt", InputKind.IMAGE_GROUPS), ("IMAGE_GROUPS.TXT", InputKind.IMAGE_GROUPS),
    ("align.tif", InputKind.ALIGN), ("ALIGN.TIF", InputKind.ALIGN), ("align.las", InputKind.ALIGN),
    ("Align.LAZ", InputKind.ALIGN),
    ("seed.zip", InputKind.SEED),
    ("SEED.ZIP", InputKind.DISCARDED),   # NodeODX compares `entry === "seed.zip"`: case-sensitive
    ("other.zip", InputKind.DISCARDED), ("photos.ZIP", InputKind.DISCARDED),
]


@pytest.mark.parametrize("name, kind", KINDS)
def test_each_name_gets_nodeodx_role(name: str, kind: InputKind) -> None:
    assert classify(name) is kind
    assert is_photo(name) == (kind is InputKind.PHOTO)


def test_every_kind_is_in_the_table() -> None:
    assert {kind for _, kind in KINDS} == set(InputKind)


def test_a_path_is_judged_by_its_file_name() -> None:
    assert classify(Path("/data/flight/geo.txt")) is InputKind.GEO
    assert classify(PurePosixPath("geo.txt/IMG_1.jpg")) is InputKind.PHOTO
    assert classify(PureWindowsPath(r"C:\survey\align.tif")) is InputKind.ALIGN
    assert classify("gcp_list.txt\n") is InputKind.PHOTO  # JavaScript's `$` is the very end


def test_count_photos_counts_what_nodeodx_leaves_in_images() -> None:
    names = [name for name, _ in KINDS]
    assert count_photos(names) == sum(1 for _, kind in KINDS if kind is InputKind.PHOTO) == 8
    assert count_photos([]) == 0


def test_max_images_counts_side_files_but_not_the_seed() -> None:
    names = ["a.jpg", "b.jpg", "geo.txt", "gcp_list.txt", "align.tif", "other.zip", "seed.zip"]
    assert count_photos(names) == 2
    assert count_against_max_images(names) == 6


def test_client_and_plugin_count_one_upload_alike(tmp_path: Path) -> None:
    """The upload that showed the bug: an alignment raster beside the photos."""
    folder = tmp_path / "flight"
    folder.mkdir()
    for name in ("IMG_1.JPG", "IMG_2.JPG", "IMG_3.JPG", "geo.txt", "image_groups.txt", "align.laz"):
        (folder / name).write_bytes(b"x")
    (tmp_path / "reference.TIFF").write_bytes(b"x")
    (tmp_path / "points.txt").write_bytes(b"x")
    plan = plugin_inputs.plan_upload(folder=folder, align=tmp_path / "reference.TIFF", gcp=tmp_path / "points.txt")
    assert "align.tif" in plan.names() and "gcp_list.txt" in plan.names()
    staged = plugin_inputs.stage(plan, tmp_path / "staging")  # what Node.create_task uploads and counts
    assert plan.image_count == count_photos(staged) == 3  # the client counts with count_photos too


# ---- against the reference -----------------------------------------------------------------------------

def _seed_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("from_seed/readme.md", "a previous run's folders")
    return buffer.getvalue()


def _wait_ended(node: ServerProcess, uuid: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        info = requests.get(node.api(endpoints.task_info(uuid)), timeout=10).json()
        if info["status"]["code"] in (30, 40, 50):
            return info
        assert time.monotonic() < deadline, f"task never ended: {info}"
        time.sleep(0.2)


def _send(node: ServerProcess, files: dict[str, bytes]) -> str:
    """init, upload, commit; the task's uuid."""
    init = requests.post(node.api(endpoints.TASK_NEW_INIT), files={"name": (None, "kinds")}, timeout=30)
    uuid = init.json()["uuid"]
    upload = [("images", (name, data, "application/octet-stream")) for name, data in files.items()]
    assert requests.post(node.api(endpoints.upload(uuid)), files=upload, timeout=30).json() == {"success": True}
    assert requests.post(node.api(endpoints.commit(uuid)), timeout=30).json() == {"uuid": uuid}
    return uuid


def _task_folder(node: ServerProcess, uuid: str) -> Path:
    return node.workdir / "tests" / "data" / uuid if isinstance(node, NodeODX) else node.data_dir / uuid


@pytest.mark.skipif(not available(), reason="NodeODX is not built (make setup builds it)")
def test_the_rule_is_what_nodeodx_does(nodeodx_factory: Callable[..., NodeODX],
                                       devnode_factory: Callable[..., DevNode], sample_images: list[Path]) -> None:
    """One upload with a file of every kind, to a real NodeODX and to devnode: each keeps in `images/`
    what `classify` calls a photo, moves the side files to `gcp/`, and reports `count_photos` images."""
    photos = {p.name: p.read_bytes() for p in sample_images[:2]}
    files = {**photos, "align.tif": b"x", "align.tiff": b"x", "Align.LAZ": b"x", "GEO.TXT": b"EPSG:4326\n",
             "image_groups.txt": b"", "my points.txt": b"EPSG:4326\n", "other.zip": b"x", "SEED.ZIP": b"x",
             "seed.zip": _seed_zip()}
    expected_images = sorted(n for n in files if classify(n) is InputKind.PHOTO)
    expected_gcp = sorted(n for n in files if classify(n) not in (InputKind.PHOTO, InputKind.DISCARDED,
                                                                   InputKind.SEED))
    for node in (nodeodx_factory(), devnode_factory(seconds_per_image=0)):
        uuid = _send(node, files)
        info = _wait_ended(node, uuid)
        folder = _task_folder(node, uuid)
        assert info["imagesCount"] == count_photos(files) == len(expected_images), (node, info)
        assert sorted(p.name for p in (folder / "images").iterdir()) == expected_images, node
        assert sorted(p.name for p in (folder / "gcp").iterdir()) == expected_gcp, node


@pytest.mark.skipif(not available(), reason="NodeODX is not built (make setup builds it)")
def test_max_images_is_what_nodeodx_holds_against_it(nodeodx_factory: Callable[..., NodeODX],
                                                     devnode_factory: Callable[..., DevNode],
                                                     sample_images: list[Path]) -> None:
    """Two photos and two side files are four files to a node that takes three; a seed is none."""
    photos = {p.name: p.read_bytes() for p in sample_images[:2]}
    over = {**photos, "geo.txt": b"EPSG:4326\n", "gcp_list.txt": b"EPSG:4326\n"}
    under = {**photos, "geo.txt": b"EPSG:4326\n", "seed.zip": _seed_zip()}
    assert (count_against_max_images(over), count_against_max_images(under)) == (4, 3)
    for node in (nodeodx_factory(max_images=3), devnode_factory(max_images=3, seconds_per_image=0)):
        failed = _wait_ended(node, _send(node, over))
        assert failed["status"]["code"] == 30, (node, failed)
        assert "4 images uploaded" in failed["status"]["errorMessage"], (node, failed)
        assert _wait_ended(node, _send(node, under))["status"]["code"] == 40, node
