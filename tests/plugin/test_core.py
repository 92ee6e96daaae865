"""The plugin's pure logic: plain unit tests, no QGIS instance used (a subprocess proves none is imported)."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from qgis_plugin.core import cache, connection, describe, inputs, presets, products, progress
from qgis_plugin.deps import shared

REPO = Path(__file__).resolve().parents[2]
FIXTURE_ZIP = REPO / "tests" / "fixtures" / "nodeodx-test-all.zip"
NODE_OPTIONS = json.loads((REPO / "shared" / "data" / "nodeodx-options.json").read_text())


def test_core_imports_no_qgis():
    code = ("import sys; sys.modules['qgis'] = None; sys.modules['PyQt5'] = None\n"
            "import qgis_plugin.core.runner, qgis_plugin.core.products, qgis_plugin.core.describe\n"
            "import qgis_plugin.core.connection, qgis_plugin.core.presets, qgis_plugin.core.cache\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


# --- presets and options ------------------------------------------------------------------------
def test_every_preset_is_valid_for_a_real_nodeodx():
    for preset in presets.PRESETS:
        assert shared.options.validate_options(NODE_OPTIONS, preset.options) == [], preset.key


def test_preset_labels_and_indices():
    assert len(presets.preset_labels()) >= 4
    assert presets.preset_by_index(None).key == "default"
    assert presets.preset_by_index(1).options == {"fast-orthophoto": True}
    with pytest.raises(ValueError, match="does not exist"):
        presets.preset_by_index(99)


def test_parse_option_text():
    text = "dsm=true\n--pc-quality = low ; orthophoto-resolution=2.5\n# a comment\n\ndtm\nfast-orthophoto=no"
    assert presets.parse_option_text(text) == {"dsm": True, "pc-quality": "low", "orthophoto-resolution": "2.5",
                                              "dtm": True, "fast-orthophoto": False}
    assert presets.parse_option_text(None) == {}
    with pytest.raises(ValueError, match="name=value"):
        presets.parse_option_text("pc quality=high")


def test_free_options_override_preset_and_base():
    high = presets.PRESETS[2]
    built = presets.build_options(high, "pc-quality=medium", base={"crop": 0, "pc-quality": "low"})
    assert built["pc-quality"] == "medium" and built["crop"] == 0 and built["dsm"] is True


# --- what to send -------------------------------------------------------------------------------
def _touch(path: Path, size: int = 10) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


def test_plan_collects_folder_and_renames_side_files(tmp_path):
    folder = tmp_path / "photos"
    for i in range(3):
        _touch(folder / f"IMG_{i}.JPG")
    _touch(folder / "notes.docx")
    _touch(folder / "geo.txt")
    gcp = _touch(tmp_path / "my points.txt")
    align = _touch(tmp_path / "reference.TIFF")
    extra = _touch(tmp_path / "thermal.tif")
    plan = inputs.plan_upload(images=[folder / "IMG_0.JPG"], folder=folder, rasters=[extra], align=align, gcp=gcp)
    names = sorted(plan.names())
    assert names == ["IMG_0.JPG", "IMG_1.JPG", "IMG_2.JPG", "align.tif", "gcp_list.txt", "geo.txt", "thermal.tif"]
    assert plan.image_count == 4  # three photos and the raster; side files are not images
    assert any("neither photos" in n for n in plan.notes)

    staged = inputs.stage(plan, tmp_path / "staging")
    by_name = {p.name: p for p in staged}
    assert by_name["gcp_list.txt"].resolve() == gcp.resolve()
    assert by_name["align.tif"].read_bytes() == align.read_bytes()
    assert by_name["IMG_1.JPG"] == folder / "IMG_1.JPG"  # unrenamed files are sent from where they are


def test_dialog_side_file_wins_over_folder_one(tmp_path):
    folder = tmp_path / "photos"
    for i in range(2):
        _touch(folder / f"a{i}.jpg")
    _touch(folder / "geo.txt")
    chosen = _touch(tmp_path / "better_geo.txt")
    plan = inputs.plan_upload(folder=folder, geo=chosen)
    assert [u.source for u in plan.uploads if u.name == "geo.txt"] == [chosen]
    assert any("ignored" in n for n in plan.notes)


def test_two_files_with_one_name_are_refused(tmp_path):
    a, b = _touch(tmp_path / "a" / "IMG.jpg"), _touch(tmp_path / "b" / "IMG.jpg")
    with pytest.raises(inputs.InputError, match="both be sent as 'IMG.jpg'"):
        inputs.plan_upload(images=[a, b, _touch(tmp_path / "c.jpg")])


@pytest.mark.parametrize("case, message", [
    ("none", "No images to process"), ("one", "Only 1 image"), ("empty-folder", "has none"),
    ("missing", "not a file that exists"), ("not-photo", "not a photo"), ("bad-align", "alignment file")])
def test_input_errors_are_clear(tmp_path, case, message):
    one = _touch(tmp_path / "one.jpg")
    two = _touch(tmp_path / "two.jpg")
    kwargs = {"none": {}, "one": {"images": [one]}, "empty-folder": {"folder": tmp_path / "empty"},
              "missing": {"images": [tmp_path / "nope.jpg"]},
              "not-photo": {"images": [_touch(tmp_path / "doc.pdf")]},
              "bad-align": {"images": [one, two], "align": _touch(tmp_path / "ref.png")}}[case]
    (tmp_path / "empty").mkdir()
    with pytest.raises(inputs.InputError, match=message):
        inputs.plan_upload(**kwargs)


# --- progress -----------------------------------------------------------------------------------
def test_progress_maps_phases_onto_one_bar_and_never_goes_back():
    bar = progress.ProgressMap(progress.SUBMIT_WEIGHTS)
    assert bar.overall(progress.UPLOAD, 0) == 0
    assert bar.overall(progress.UPLOAD, 100) == 20
    assert bar.overall(progress.UPLOAD, 50) == 20  # a retried upload does not move the bar back
    assert bar.overall(progress.PROCESSING, 50) == 55
    assert bar.overall(progress.DOWNLOAD, 0) == 90
    assert bar.overall(progress.DOWNLOAD, 150) == 100
    load = progress.ProgressMap(progress.LOAD_WEIGHTS)
    assert load.overall(progress.PROCESSING, 100) == 80
    with pytest.raises(ValueError):
        progress.ProgressMap({})


# --- products, layers, styles -------------------------------------------------------------------
@pytest.fixture
def fixture_results(tmp_path) -> Path:
    with zipfile.ZipFile(FIXTURE_ZIP) as archive:
        archive.extractall(tmp_path / "r")
    return tmp_path / "r"


def test_find_results_in_the_real_nodeodx_zip(fixture_results):
    found = products.find_results(fixture_results)
    kind = products.Product
    assert found.get(kind.ORTHOPHOTO) == fixture_results / "odm_orthophoto/odm_orthophoto.tif"
    assert found.get(kind.DSM) == fixture_results / "odm_dem/dsm.tif"
    assert found.get(kind.DTM) == fixture_results / "odm_dem/dtm.tif"
    # the LAZ has data, the LAS is a zero-byte placeholder and must not count
    laz = fixture_results / "odm_georeferencing/odm_georeferenced_model.laz"
    assert found.point_clouds == [(kind.POINT_CLOUD_LAZ, laz)]
    assert kind.REPORT not in found.files  # the report is empty in test mode


def test_point_cloud_choice_prefers_ept_then_copc_then_laz(tmp_path):
    kind = products.Product
    files = {kind.POINT_CLOUD_LAZ: tmp_path / "m.laz", kind.POINT_CLOUD_COPC: tmp_path / "m.copc.laz",
             kind.POINT_CLOUD_EPT: tmp_path / "entwine_pointcloud/ept.json"}
    results = products.Results(tmp_path, files)
    assert products.choose_point_cloud(results, ["ept", "pdal"]).provider == "ept"
    assert products.choose_point_cloud(results, ["copc", "pdal"]).path == files[kind.POINT_CLOUD_COPC]
    assert products.choose_point_cloud(results, ["pdal"]).provider == "pdal"
    assert products.choose_point_cloud(products.Results(tmp_path, {}), ["ept"]) is None


def test_no_point_cloud_provider_gives_a_message_naming_the_file(fixture_results):
    choice = products.choose_point_cloud(products.find_results(fixture_results), ["ept", "gdal"])
    assert choice.path is None
    assert "odm_georeferencing/odm_georeferenced_model.laz" in choice.problem and "'pdal'" in choice.problem


def test_layer_plan_order_names_and_visibility(fixture_results, tmp_path):
    plan = products.layer_plan(products.find_results(fixture_results), ["ept", "gdal"])
    assert [s.key for s in plan.layers] == ["shots", "orthophoto", "dsm_hillshade", "dsm", "dtm_hillshade", "dtm"]
    assert [s.visible for s in plan.layers] == [True, True, True, True, False, False]
    assert plan.layers[0].name == "Camera positions" and plan.layers[0].provider == "ogr"
    assert len(plan.problems) == 1 and "pdal" in plan.problems[0]
    with_pdal = products.layer_plan(products.find_results(fixture_results), ["pdal"])
    assert with_pdal.layers[1].key == "point_cloud" and with_pdal.layers[1].provider == "pdal"
    assert with_pdal.problems == []
    assert len({s.name for s in with_pdal.layers}) == len(with_pdal.layers)


def test_group_names():
    assert products.group_name("  Farm   survey ", "abcdef1234") == "Farm survey"
    assert products.group_name("", "abcdef1234-5678") == "ODX task abcdef12"


def test_elevation_style_is_a_sane_ramp():
    style = products.ELEVATION_STYLE
    positions = [p for p, _ in style.ramp]
    assert positions[0] == 0 and positions[-1] == 1 and positions == sorted(positions)
    assert 0 < style.cut[0] < style.cut[1] < 1 and 0 < style.hillshade_opacity <= 1


# --- cache --------------------------------------------------------------------------------------
def test_cache_is_whole_or_absent(tmp_path):
    store = cache.ResultsCache(tmp_path)
    uuid = "1f6e2b2c-0c1d-4c5e-9a51-2d1f0f0b7c11"
    assert not store.has(uuid)
    partial = store.begin(uuid)
    (partial / "x.tif").write_bytes(b"1")
    assert not store.has(uuid) and not store.folder(uuid).exists()
    folder = store.commit(uuid, {"name": "Farm"})
    assert store.has(uuid) and (folder / "x.tif").exists() and store.record(uuid)["name"] == "Farm"
    # a second, late download does not replace files layers may point to
    (store.begin(uuid) / "x.tif").write_bytes(b"2")
    store.commit(uuid, {"name": "Other"})
    assert (folder / "x.tif").read_bytes() == b"1" and not store.partial(uuid).exists()


@pytest.mark.parametrize("bad", ["../../etc", "a/b", "", "..", "short", "x" * 200, "abc def ghi"])
def test_cache_refuses_names_that_are_not_uuids(tmp_path, bad):
    with pytest.raises(ValueError, match="does not look like a task uuid"):
        cache.ResultsCache(tmp_path).folder(bad)


# --- connection ---------------------------------------------------------------------------------
def test_resolve_connection_order_and_token_scope():
    saved = ("http://relay:3000/", "SAVED")
    c = connection.resolve_connection("", *saved, environ={})
    assert (c.url, c.token) == ("http://relay:3000/", "SAVED")
    c = connection.resolve_connection("relay:3000", *saved, environ={})
    assert c.token == "SAVED"  # same server, written differently
    c = connection.resolve_connection("http://other:3000", *saved, environ={})
    assert c.token == ""  # the saved token never goes to another server
    c = connection.resolve_connection("http://other:3000?token=T", *saved, environ={"ODX_RELAY_TOKEN": "E"})
    assert c.token == "T" and c.display_url == "http://other:3000"
    c = connection.resolve_connection("", None, None, environ={"ODX_RELAY_URL": "http://e:1", "ODX_RELAY_TOKEN": "E"})
    assert (c.url, c.token) == ("http://e:1", "E")
    with pytest.raises(connection.ConnectionError, match="No server set"):
        connection.resolve_connection("", "", "", environ={})


def test_connection_builds_a_node_with_token_and_proxies():
    node = connection.Connection("https://relay.example.com/odx", "T", {"https": "http://p:8080"}).node()
    assert node.url("/info") == "https://relay.example.com/odx/info?token=T"
    assert node.session.proxies["https"] == "http://p:8080"
    with pytest.raises(connection.ConnectionError, match="not a server address"):
        connection.Connection("ftp://x").node()


def test_proxies_follow_qgis_settings():
    base = {"proxy/proxyEnabled": "true", "proxy/proxyType": "HttpProxy", "proxy/proxyHost": "proxy.lan",
            "proxy/proxyPort": "3128", "proxy/proxyUser": "me", "proxy/proxyPassword": "p@ss:word",
            "proxy/proxyExcludedUrls": "http://intranet|http://127.0.0.1:3000"}
    assert connection.proxies_for("http://relay:3000", base) == {
        "http": "http://me:p%40ss%3Aword@proxy.lan:3128", "https": "http://me:p%40ss%3Aword@proxy.lan:3128"}
    assert connection.proxies_for("http://127.0.0.1:3000/", base) is None
    assert connection.proxies_for("http://intranet/odx", base) is None
    assert connection.proxies_for("http://relay:3000", {**base, "proxy/proxyEnabled": False}) is None
    assert connection.proxies_for("http://relay:3000", {**base, "proxy/proxyType": "DefaultProxy"}) is None
    socks = connection.proxies_for("http://r", {**base, "proxy/proxyType": "Socks5Proxy", "proxy/proxyUser": ""})
    assert socks["http"] == "socks5h://proxy.lan:3128"


# --- words --------------------------------------------------------------------------------------
def test_describe_info_in_words():
    info = shared.NodeInfo.from_json({"version": "2.3.1", "taskQueueCount": 3, "maxParallelTasks": 2,
                                      "maxImages": 500, "totalMemory": 16 * 1024 ** 3, "availableMemory": 8 * 1024 ** 3,
                                      "cpuCores": 8, "engine": "odm", "engineVersion": "3.5.4"})
    text = describe.describe_info(info, "http://n:3000")
    assert "NodeODX 2.3.1 at http://n:3000, running odm 3.5.4." in text
    assert "3 task(s) running or waiting, for 2 parallel slot(s)" in text
    assert "up to 500 images" in text and "8.0 GB free of 16.0 GB; 8 CPU cores" in text
    counts = {"version": "0.1.0", "nodes": 3, "online": 1, "offline": 1, "locked": 1, "queued": 0}
    relay = shared.NodeInfo.from_json({"version": "2.3.1", "relay": counts})
    text = describe.describe_info(relay)
    assert "ODX Relay" in text and "Nodes: 1 of 3 online, 1 locked." in text
    assert describe.no_node_online(relay) is None


def test_task_row_and_durations():
    info = shared.TaskInfo.from_json({"uuid": "u1", "name": "Farm", "dateCreated": 1700000000000,
                                      "processingTime": 3723000, "status": {"code": 40}, "imagesCount": 12,
                                      "progress": 100})
    row = describe.task_row(info)
    assert row == {"uuid": "u1", "name": "Farm", "status": "completed", "progress": 100.0, "images": 12,
                   "created": "2023-11-14 22:13:20 UTC", "processing_s": 3723, "processing": "1 h 02 min",
                   "error": ""}
    assert [f for f, _ in describe.TASK_FIELDS] == list(row)
    assert describe.duration(65000) == "1 min 05 s" and describe.duration(None) == "0 s"
    assert "completed, 12 images" in describe.task_summary(info)


@pytest.mark.parametrize("exc, expected", [
    (shared.NodeConnectionError("cannot reach http://x: ... [Errno 111] Connection refused"),
     "Cannot reach the server at http://x:1: nothing answers at that address and port"),
    (shared.NodeResponseError("Invalid authentication token"), "refused the token (Invalid authentication token)"),
    (shared.NodeServerError("HTTP 401 from GET /info", 401), "refused the token"),
    (shared.OptionsError([shared.options.OptionProblem("pc-quality", "'best' is not one of 'high'")]),
     "would refuse this task, so nothing was uploaded:\n  • pc-quality: 'best' is not one of 'high'"),
    (shared.TaskFailedError("task u failed: out of memory"), "The task did not complete: task u failed: out of memory"),
    (inputs.InputError("No images to process"), "No images to process"),
    (FileNotFoundError(2, "No such file or directory", "/a/b.jpg"), "A local file could not be used (/a/b.jpg)"),
])
def test_error_messages(exc, expected):
    assert expected in describe.error_message(exc, "http://x:1")

