"""The memory model, the all.zip catalogue and type parsing against real NodeODX replies."""
import zipfile
from pathlib import Path

from shared.assets import ASSETS, Product, asset_by_name, products_present, safe_member
from shared.memory import DEFAULT_TABLE, estimate_memory_mb, parse_table
from shared.types import NodeInfo, TaskInfo, TaskStatus

FIXTURE_ZIP = Path(__file__).parent / "fixtures" / "nodeodx-test-all.zip"


def test_memory_follows_webodm_table_rows():
    for images, gb in DEFAULT_TABLE[1:]:
        assert estimate_memory_mb(images) == int(gb * 1024)


def test_memory_interpolates_and_extrapolates():
    assert 4096 < estimate_memory_mb(100) < 16384
    assert estimate_memory_mb(6000) > estimate_memory_mb(5000)


def test_quality_raises_and_split_lowers_memory():
    base = estimate_memory_mb(500)
    assert estimate_memory_mb(500, {"pc-quality": "ultra"}) > base
    assert estimate_memory_mb(500, {"split": 100}) < base


def test_custom_table():
    table = parse_table("0:1, 100:10")
    assert estimate_memory_mb(50, table=table) == int(5.5 * 1024)


def test_catalogue_matches_real_nodeodx_layout():
    members = zipfile.ZipFile(FIXTURE_ZIP).namelist()
    found = products_present(members)
    for product in (Product.ORTHOPHOTO, Product.DSM, Product.DTM, Product.POINT_CLOUD_LAZ,
                    Product.REPORT, Product.SHOTS):
        assert product in found
    assert found[Product.ORTHOPHOTO] == "odm_orthophoto/odm_orthophoto.tif"
    assert len({a.name for a in ASSETS}) == len(ASSETS)


def test_asset_names_are_not_paths():
    assert asset_by_name("orthophoto.tif").path == "odm_orthophoto/odm_orthophoto.tif"
    assert asset_by_name("../../etc/passwd") is None
    assert asset_by_name("odm_orthophoto/odm_orthophoto.tif") is None


def test_safe_member():
    assert safe_member("odm_dem/dsm.tif")
    for bad in ("../x", "/etc/passwd", "a/../../b", "a\\b", ""):
        assert not safe_member(bad)


def test_parse_real_replies():
    info = NodeInfo.from_json({"version": "2.3.1", "taskQueueCount": 2, "totalMemory": 8e9,
                               "availableMemory": 4e9, "cpuCores": 4, "maxImages": None,
                               "maxParallelTasks": 2, "odmVersion": "3.5.0", "engine": "odm",
                               "relay": {"nodes": 2}})
    assert info.task_queue_count == 2 and info.max_images is None and info.engine_version == "3.5.0"
    assert info.extra == {"relay": {"nodes": 2}}
    task = TaskInfo.from_json({"uuid": "u", "name": "n", "dateCreated": 1700000000000, "processingTime": 5,
                               "status": {"code": 30, "errorMessage": "boom"}, "imagesCount": 3,
                               "options": [{"name": "dsm", "value": True}], "progress": 50})
    assert task.status is TaskStatus.FAILED and task.last_error == "boom" and task.options == {"dsm": True}
    assert task.date_created.year == 2023 and TaskStatus.FAILED.is_final
