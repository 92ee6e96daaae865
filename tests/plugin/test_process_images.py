"""`odxrelay:processimages` and the task algorithms against real development nodes, in real QGIS."""
from __future__ import annotations

import threading
import time
import zipfile
from pathlib import Path

import pytest
from qgis.core import QgsCoordinateReferenceSystem, QgsLayerTreeGroup, QgsProcessingException, QgsProject

from devnode.samples import SAMPLE_EPSG
from qgis_plugin.deps import shared
from scripts.demo_qgis import painted_share, render_png
from testkit.servers import free_port
from tests.plugin.plugin_helpers import (
    FAST,
    FIXTURE_ZIP,
    RecordingFeedback,
    layers_to_load,
    run_algorithm,
    where_photos_were_taken,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("odx_provider", "fast_polls")]


@pytest.fixture(scope="module")
def processed(devnode, photo_folder, tmp_path_factory, qgis_processing):
    """One task processed through the algorithm, shared by the tests that only read its results."""
    from qgis_plugin.processing.base import OdxAlgorithm

    root = tmp_path_factory.mktemp("results")
    saved, OdxAlgorithm.POLL_INTERVAL = OdxAlgorithm.POLL_INTERVAL, 0.2
    started = time.monotonic()
    try:
        results, context, feedback = run_algorithm("odxrelay:processimages", {
            "IMAGE_FOLDER": str(photo_folder), "SERVER": devnode.url, "PRESET": 3, "TASK_NAME": "Tempelhof",
            "RESULTS_FOLDER": str(root)})
    finally:
        OdxAlgorithm.POLL_INTERVAL = saved
    return results, context, feedback, root, time.monotonic() - started


def test_processimages_returns_layers_where_the_photos_were_taken(processed, devnode):
    results, context, feedback, root, seconds = processed
    uuid = results["TASK_UUID"]
    assert Path(results["RESULTS"]) == root / uuid
    layers = layers_to_load(context)
    assert set(layers) == {"Camera positions", "Point cloud", "Orthophoto", "DSM (surface)", "DSM (surface) hillshade",
                           "DTM (terrain)", "DTM (terrain) hillshade"}
    assert layers.pop("Camera positions").isValid()
    expected = QgsCoordinateReferenceSystem(f"EPSG:{SAMPLE_EPSG}")
    for name, layer in layers.items():
        assert layer.isValid(), name
        assert layer.crs() == expected, (name, layer.crs().authid())
        centre = where_photos_were_taken(layer.crs())
        assert layer.extent().contains(centre), (name, layer.extent().toString(), centre)
        assert layer.extent().width() < 1000 and layer.extent().height() < 1000, name
    assert layers["Point cloud"].providerType() == "ept"
    assert results["POINT_CLOUD"].endswith("entwine_pointcloud/ept.json")
    for key, layer_name in (("ORTHOPHOTO", "Orthophoto"), ("DSM", "DSM (surface)"), ("DTM", "DTM (terrain)")):
        assert layers[layer_name].source() == results[key]

    # the uuid is told before the upload, the node's console output streams in, one bar goes to 100
    assert uuid in feedback.infos[1] and "uploading" in feedback.infos[1]
    assert any("Running odm_orthophoto stage" in line for line in feedback.console)
    values = feedback.progress_values
    assert values == sorted(values) and values[-1] == 100 and any(0 < v < 20 for v in values)
    info = shared.Node.from_url(devnode.url).get_task(uuid).info()
    assert info.name == "Tempelhof" and info.images_count == 6
    assert info.options.get("dsm") in (True, "true") and info.options.get("dtm") in (True, "true")
    print(f"processimages: {seconds:.2f} s for 6 photos")


def test_results_load_into_a_group_named_after_the_task_and_render(processed, devnode, clean_project, tmp_path):
    results, _, _, root, _ = processed
    started = time.monotonic()
    _, _, feedback = run_algorithm("odxrelay:loadresults", {"TASK": results["TASK_UUID"], "SERVER": devnode.url,
                                                            "RESULTS_FOLDER": str(root)}, load=True)
    assert "not downloading them again" in feedback.text()
    print(f"loadresults from the cache: {time.monotonic() - started:.2f} s")
    root_node = QgsProject.instance().layerTreeRoot()
    [group] = [n for n in root_node.children() if isinstance(n, QgsLayerTreeGroup)]
    assert group.name() == "Tempelhof"
    assert [c.name() for c in group.children()][:4] == ["Camera positions", "Point cloud", "Orthophoto",
                                                        "DSM (surface) hillshade"]
    share, colours = painted_share(render_png(QgsProject.instance(), tmp_path / "map.png", 600, 450))
    assert share > 0.3 and colours > 100, (share, colours)
    for node in group.findLayers():  # the DSM alone, to see its colour ramp is drawn
        node.setItemVisibilityChecked(node.name() == "DSM (surface)")
    share, colours = painted_share(render_png(QgsProject.instance(), tmp_path / "dsm.png", 300, 200))
    assert share > 0.3 and colours > 20, (share, colours)


def test_loadresults_downloads_into_an_empty_cache(processed, devnode, tmp_path):
    results, *_ = processed
    loaded, context, feedback = run_algorithm("odxrelay:loadresults", {
        "TASK": results["TASK_UUID"], "SERVER": devnode.url, "RESULTS_FOLDER": str(tmp_path)})
    assert "Downloading the results" in feedback.text()
    assert Path(loaded["ORTHOPHOTO"]).is_relative_to(tmp_path)
    assert all(layer.isValid() for layer in layers_to_load(context).values())
    # the second time nothing is downloaded, and no server is needed at all
    again, _, feedback = run_algorithm("odxrelay:loadresults", {
        "TASK": results["TASK_UUID"], "SERVER": f"http://127.0.0.1:{free_port()}", "RESULTS_FOLDER": str(tmp_path)})
    assert again["ORTHOPHOTO"] == loaded["ORTHOPHOTO"] and "not downloading" in feedback.text()


def test_listtasks_gives_a_table(processed, devnode):
    results, *_ = processed
    listed, _, _ = run_algorithm("odxrelay:listtasks", {"SERVER": devnode.url, "OUTPUT": "memory:"})
    table = listed["OUTPUT"]  # processing.run hands back the layer itself
    rows = {f["uuid"]: f for f in table.getFeatures()}
    row = rows[results["TASK_UUID"]]
    assert row["status"] == "completed" and row["images"] == 6 and row["name"] == "Tempelhof"
    assert row["progress"] == 100 and row["created"].endswith("UTC")
    assert [f.name() for f in table.fields()][:3] == ["uuid", "name", "status"]


def test_restart_with_new_options_then_remove(devnode, photo_folder, tmp_path):
    node = shared.Node.from_url(devnode.url)
    task = node.create_task(sorted(photo_folder.glob("*.JPG")), {"dsm": True}, name="Restart me")
    task.wait_for_completion(interval=0.1)
    cache_root = tmp_path / "results"
    run_algorithm("odxrelay:loadresults", {"TASK": task.uuid, "SERVER": devnode.url, "RESULTS_FOLDER": str(cache_root)})

    bad = pytest.raises(QgsProcessingException, match="pc-quality: 'best' is not one of")
    with bad:
        run_algorithm("odxrelay:restarttask", {"TASK": task.uuid, "SERVER": devnode.url, "OPTIONS": "pc-quality=best",
                                               "RESULTS_FOLDER": str(cache_root)})
    out, _, feedback = run_algorithm("odxrelay:restarttask", {
        "TASK": task.uuid, "SERVER": devnode.url, "OPTIONS": "orthophoto-resolution=10", "FOLLOW": False,
        "RESULTS_FOLDER": str(cache_root)})
    assert out["STATUS"] in ("queued", "running", "completed")
    assert "Earlier results were moved" in feedback.text()
    assert not (cache_root / task.uuid).exists() and list(cache_root.glob(f"{task.uuid}.before-restart-*"))
    info = task.wait_for_completion(interval=0.1)
    assert str(info.options["orthophoto-resolution"]) in ("10", "10.0") and info.options["dsm"] in (True, "true")

    out, _, feedback = run_algorithm("odxrelay:removetask", {"TASK": task.uuid, "SERVER": devnode.url,
                                                             "RESULTS_FOLDER": str(cache_root)})
    assert out["STATUS"] == "removed" and task.uuid not in node.list_tasks()


def test_cancel_mid_run_cancels_the_remote_task(devnode_factory, photo_folder, tmp_path):
    slow = devnode_factory(seconds_per_image=2.0)
    node = shared.Node.from_url(slow.url)
    feedback = RecordingFeedback()
    canceled_at: list[float] = []

    def cancel_when_running() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for uuid in node.list_tasks():
                if node.get_task(uuid).info().status == shared.TaskStatus.RUNNING:
                    canceled_at.append(time.monotonic())
                    feedback.cancel()
                    return
            time.sleep(0.05)

    watcher = threading.Thread(target=cancel_when_running, daemon=True)
    watcher.start()
    with pytest.raises(QgsProcessingException, match="canceled on the server too") as raised:
        run_algorithm("odxrelay:processimages", {"IMAGE_FOLDER": str(photo_folder), "SERVER": slow.url,
                                                 "RESULTS_FOLDER": str(tmp_path)}, feedback)
    stopped = time.monotonic() - canceled_at[0]
    watcher.join(5)
    [uuid] = node.list_tasks()
    assert node.get_task(uuid).info().status == shared.TaskStatus.CANCELED
    assert uuid in str(raised.value) and not (tmp_path / uuid).exists()
    assert stopped < 2.0, stopped  # noticed within a poll, long before the 12 s of processing
    print(f"cancel noticed and sent in {stopped:.2f} s")


def test_canceltask_stops_a_running_task(devnode_factory, photo_folder):
    slow = devnode_factory(seconds_per_image=2.0)
    task = shared.Node.from_url(slow.url).create_task(sorted(photo_folder.glob("*.JPG")))
    out, _, feedback = run_algorithm("odxrelay:canceltask", {"TASK": task.uuid, "SERVER": slow.url})
    assert out["STATUS"] == "canceled" and task.info().status == shared.TaskStatus.CANCELED


@pytest.mark.parametrize("case", ["no images", "one image", "unreachable server", "wrong token", "invalid option",
                                  "too many images", "no server", "not a uuid"])
def test_user_errors_end_with_a_clear_message(case, devnode_factory, photo_folder, tmp_path, monkeypatch):
    from qgis_plugin import settings

    monkeypatch.setattr(settings, "saved_url", lambda: "")
    monkeypatch.delenv("ODX_RELAY_URL", raising=False)
    monkeypatch.delenv("ODX_RELAY_TOKEN", raising=False)
    node = devnode_factory(token="right", max_images=4 if case == "too many images" else 0, **FAST)
    empty = tmp_path / "empty"
    empty.mkdir()
    params = {"IMAGE_FOLDER": str(photo_folder), "SERVER": f"{node.url}?token=right", "RESULTS_FOLDER": str(tmp_path)}
    algorithm, expected = "odxrelay:processimages", {
        "no images": "No images to process (the folder",
        "one image": "Only 1 image given; NodeODX needs at least 2",
        "unreachable server": "Cannot reach the server at http://127.0.0.1:",
        "wrong token": "refused the token",
        "invalid option": "would refuse this task, so nothing was uploaded:\n  • pc-quality: 'best' is not one of",
        "too many images": "images: 6 images given, but the server takes at most 4",
        "no server": "No server set: enter the URL",
        "not a uuid": "does not look like a task uuid",
    }[case]
    if case == "no images":
        params["IMAGE_FOLDER"] = str(empty)
    elif case == "one image":
        params.update(IMAGE_FOLDER=None, IMAGES=[str(sorted(photo_folder.glob("*.JPG"))[0])])
    elif case == "unreachable server":
        params["SERVER"] = f"http://127.0.0.1:{free_port()}"
    elif case == "wrong token":
        params["SERVER"] = f"{node.url}?token=wrong"
    elif case == "invalid option":
        params["OPTIONS"] = "pc-quality=best"
    elif case == "no server":
        params["SERVER"] = ""
    elif case == "not a uuid":
        algorithm, params = "odxrelay:loadresults", {"TASK": "../../etc", "SERVER": node.url}
    with pytest.raises(QgsProcessingException) as raised:
        run_algorithm(algorithm, params)
    message = str(raised.value)
    assert expected in message, message
    assert "Traceback" not in message and "File \"" not in message
    assert shared.Node.from_url(node.url, token="right").list_tasks() == []  # nothing reached the node



def test_project_rasters_and_side_files_travel_under_nodeodx_names(devnode, photo_folder, tmp_path):
    from qgis.core import QgsRasterLayer

    photos = sorted(photo_folder.glob("*.JPG"))
    photo_layer = QgsRasterLayer(str(photos[-1]), "a photo in the project")  # sent as it is
    reference = tmp_path / "reference ortho.tif"
    with zipfile.ZipFile(FIXTURE_ZIP) as archive:
        reference.write_bytes(archive.read("odm_orthophoto/odm_orthophoto.tif"))
    align_layer = QgsRasterLayer(str(reference), "reference")  # sent as align.tif
    gcp = tmp_path / "points from the survey.txt"  # sent as gcp_list.txt
    gcp.write_text("EPSG:32633\n")
    assert photo_layer.isValid() and align_layer.isValid()
    results, _, _ = run_algorithm("odxrelay:processimages", {
        "IMAGES": [str(p) for p in photos[:-1]], "RASTERS": [photo_layer], "ALIGN": align_layer, "GCP": str(gcp),
        "SERVER": devnode.url, "RESULTS_FOLDER": str(tmp_path / "results")})
    task_dir = devnode.data_dir / results["TASK_UUID"]
    received = {p.name for p in task_dir.glob("*/*") if p.parent.name in ("images", "gcp")}
    assert received == {p.name for p in photos} | {"align.tif", "gcp_list.txt"}, received
    assert sorted(p.name for p in tmp_path.iterdir()) == ["points from the survey.txt", "reference ortho.tif",
                                                          "results"]  # renamed in a staging folder, not here
