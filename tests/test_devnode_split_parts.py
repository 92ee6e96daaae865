"""The pieces of the development node's split-merge, without servers: the split by position, seed.zip both
ways, the options a submodel gets, and the merge of submodels' outputs into one georeferenced mosaic."""
from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import laspy
import pytest
from osgeo import gdal

from devnode.merge import merge_outputs
from devnode.opensfm import build_reconstruction, open_photos, reference_lla, write_partial_project
from devnode.products import build_outputs
from devnode.samples import make_samples
from devnode.seed import (
    RECONSTRUCTION_ROUND,
    TOOLCHAIN_ROUND,
    Round,
    SeedRefused,
    make_seed,
    output_matches,
    project_round,
    unpack_seed,
)
from devnode.split_merge import SplitMerge, SplitRequest, _where, redact
from devnode.submodels import MAX_OVERLAP_SHARE, split_photos, submodel_count
from tests.split_helpers import covered


def lawnmower(count: int, across: float = 50.0, along: float = 35.0) -> dict[str, tuple[float, float]]:
    lines = 5
    return {f"IMG_{i:04d}.JPG": ((i // (count // lines)) * across, (i % (count // lines)) * along)
            for i in range(count)}


# ---- the split -----------------------------------------------------------------------------------------

def test_forty_photos_at_ten_make_four_compact_submodels_of_ten() -> None:
    positions = lawnmower(40)
    submodels = split_photos(positions, 10, overlap_m=0)
    assert [len(s.own) for s in submodels] == [10, 10, 10, 10]
    assert sorted(n for s in submodels for n in s.own) == sorted(positions)  # every photo once
    for submodel in submodels:  # compact: far smaller than the flight (200 m x 280 m)
        xs = [positions[n][0] for n in submodel.own]
        ys = [positions[n][1] for n in submodel.own]
        assert math.hypot(max(xs) - min(xs), max(ys) - min(ys)) < 200, submodel
        assert not submodel.borrowed


def test_overlap_borrows_the_nearest_neighbours_up_to_the_cap() -> None:
    positions = lawnmower(40)
    wide = split_photos(positions, 10, overlap_m=150)  # ODM's default: wider than half this flight
    assert all(len(s.borrowed) == math.floor(10 * MAX_OVERLAP_SHARE) for s in wide)
    narrow = split_photos(positions, 10, overlap_m=36)  # one photo spacing along the lines
    for submodel in narrow:
        for name in submodel.borrowed:
            x, y = positions[name]
            assert min(math.hypot(x - positions[o][0], y - positions[o][1]) for o in submodel.own) <= 36
            assert name not in submodel.own


def test_too_few_photos_or_no_split_make_one_model() -> None:
    assert submodel_count(10, 10) == 1 and submodel_count(11, 10) == 2 and submodel_count(5, 0) == 1
    assert submodel_count(6, 1) == 3  # ODM's submodel_size is at least 2
    assert SplitRequest.from_options({}) is None
    request = SplitRequest.from_options({"split": 10, "sm-cluster": "None"})
    assert request == SplitRequest(10, 150.0, None)


def test_photos_without_gps_go_to_the_first_submodel() -> None:
    submodels = split_photos(lawnmower(20), 10, overlap_m=0, unplaced=["NOGPS.JPG"])
    assert "NOGPS.JPG" in submodels[0].own and sum(len(s.own) for s in submodels) == 21


def test_submodels_get_odm_s_options() -> None:
    """get_submodel_argv: no split, sm-cluster, point-cloud exports or COG; cutline, euclidean maps on."""
    splitter = SplitMerge(Path("/nonexistent"), [], [], {"split": 10, "sm-cluster": "http://x", "dsm": True,
                                                         "pc-ept": True, "cog": True, "split-overlap": 10},
                          SplitRequest(10, 10, "http://x"), console=print, progress=print,
                          seconds_for=lambda *_: 0, build_outputs=build_outputs,
                          build_reconstruction=build_reconstruction, retry_seconds=0)
    assert splitter.submodel_options() == {"dsm": True, "orthophoto-cutline": True, "dem-euclidean-map": True,
                                           "skip-3dmodel": True, "skip-report": True}


def test_an_unreadable_cluster_url_is_named_without_breaking() -> None:
    assert _where("http://127.0.0.1:3000/?token=t") == "http://127.0.0.1:3000"
    assert _where("http://host:port/") == _where("http://[::1") == "(an unreadable URL)"


def test_the_cluster_token_never_shows() -> None:
    url = "http://relay:3000/?token=s3cr%2Ft t"
    text = "HTTPConnectionPool: /task/new/init?token=s3cr%2Ft+t failed; token s3cr/t t"
    assert "s3cr" not in redact(text, url)


# ---- seed.zip ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_samples(tmp_path_factory.mktemp("split-photos"), count=12)


def test_seeds_hold_what_odm_puts_there(photos: list[Path], tmp_path: Path) -> None:
    project = tmp_path / "submodel_0000"
    write_partial_project(project, open_photos(photos[:4]), reference_lla(open_photos(photos)))
    with zipfile.ZipFile(make_seed(project, RECONSTRUCTION_ROUND)) as seed:
        names = set(seed.namelist())
    assert names == {f"opensfm/exif/{p.name}.exif" for p in photos[:4]} | {
        "opensfm/camera_models.json", "opensfm/reference_lla.json", "opensfm/split_merge_stop_at_reconstruction.txt"}
    # round two: the reconstruction the first round brought back, and empty markers
    build_reconstruction(photos[:4], tmp_path / "remote")
    with zipfile.ZipFile(tmp_path / "remote" / "all.zip") as back:
        assert {n for n in back.namelist() if not output_matches(n, RECONSTRUCTION_ROUND.outputs)} == set()
        back.extractall(project)
    with zipfile.ZipFile(make_seed(project, TOOLCHAIN_ROUND)) as seed:
        names = set(seed.namelist())
    assert {"opensfm/reconstruction.json", "opensfm/tracks.csv", "opensfm/features/empty",
            "opensfm/matches/empty", "opensfm/exif/empty"} <= names
    assert not any(n.startswith("opensfm/exif/IMG") or n.endswith(".npz") for n in names)


def test_a_node_unpacks_a_seed_inside_its_project_only(tmp_path: Path) -> None:
    project = tmp_path / "task"
    project.mkdir()
    seed = tmp_path / "seed.zip"
    with zipfile.ZipFile(seed, "w") as archive:
        archive.writestr("opensfm/split_merge_stop_at_reconstruction.txt", "")
        archive.writestr("../escaped.txt", "no")
        archive.writestr("/etc/absolute.txt", "no")
    assert unpack_seed(seed, project) == ["opensfm/split_merge_stop_at_reconstruction.txt"]
    assert not (tmp_path / "escaped.txt").exists() and not seed.exists()
    assert project_round(project) is Round.RECONSTRUCTION
    (project / "opensfm/split_merge_stop_at_reconstruction.txt").unlink()
    assert project_round(project) is Round.WHOLE
    (project / "opensfm/reconstruction.json").write_text("[]")
    assert project_round(project) is Round.TOOLCHAIN
    seed.write_bytes(b"not a zip")
    with pytest.raises(SeedRefused, match="Could not extract seed.zip"):
        unpack_seed(seed, project)


# ---- the merge -----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_merge_is_a_mosaic_covering_every_submodel(photos: list[Path], tmp_path: Path) -> None:
    """Two submodels of six photos each: the merged orthophoto shows every photo's position (neither
    submodel alone does), and the DEMs and point cloud join them too."""
    halves = [photos[:6], photos[6:]]
    folders = []
    for index, half in enumerate(halves):
        work = tmp_path / f"work{index}"
        with zipfile.ZipFile(build_outputs(half, work, skip_post_processing=True)) as built:
            built.extractall(tmp_path / f"submodel_{index}")
        folders.append(tmp_path / f"submodel_{index}")
    archive = merge_outputs(folders, photos, tmp_path / "parent")
    out = tmp_path / "merged"
    zipfile.ZipFile(archive).extractall(out)
    assert {"odm_orthophoto/odm_orthophoto.tif", "odm_dem/dsm.tif", "odm_dem/dtm.tif",
            "odm_georeferencing/odm_georeferenced_model.laz", "entwine_pointcloud/ept.json",
            "odm_report/shots.geojson", "odm_report/report.pdf", "images.json", "cameras.json"} <= set(
        zipfile.ZipFile(archive).namelist())
    merged = out / "odm_orthophoto/odm_orthophoto.tif"
    assert all(covered(merged, p) for p in photos)
    for folder, half in zip(folders, halves):
        alone = folder / "odm_orthophoto/odm_orthophoto.tif"
        assert not all(covered(alone, p) for p in photos) and all(covered(alone, p) for p in half)
    assert gdal.Open(str(merged)).RasterCount == 4
    assert len(json.loads((out / "odm_report/shots.geojson").read_text())["features"]) == len(photos)

    total = sum(len(laspy.read(str(f / "odm_georeferencing/odm_georeferenced_model.laz")).x) for f in folders)
    assert len(laspy.read(str(out / "odm_georeferencing/odm_georeferenced_model.laz")).x) == total
