"""The bugs a drone mapper met in the QGIS desktop (issue 11), each shown in real QGIS (headless) against
real servers: quitting QGIS leaves tasks running; canceling a completed task changes nothing; a relay with no
node online says so; a task loads into one group, zoomed to, with its camera positions and report; photos in
sub-folders are found; a restarted task is followed and loaded."""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsLayerTreeGroup,
    QgsProcessingException,
    QgsProject,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QCloseEvent
from qgis.PyQt.QtWidgets import QAction, QMainWindow

from qgis_plugin.deps import shared
from testkit.relay import start_relay
from testkit.servers import free_port
from tests.plugin.plugin_helpers import FAST, layers_to_load, run_algorithm, start_in_background

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("odx_provider", "fast_polls")]
S = shared.TaskStatus


def spin(until, timeout: float, what: str) -> None:
    """Run Qt's event loop (as QGIS's main thread does) until `until()` holds."""
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        QCoreApplication.processEvents()
        time.sleep(0.02)


# --- 1. quitting QGIS never cancels the remote task ----------------------------------------------------
class Window(QMainWindow):
    """QGIS's main window as far as closing goes: it counts the close requests that reach it."""

    def __init__(self):
        super().__init__()
        self.closes = 0

    def closeEvent(self, event):  # noqa: N802 - Qt's name
        self.closes += 1
        event.accept()


@pytest.fixture
def desktop():
    """A main window and an Exit action watched by the plugin, as `initGui` watches QGIS's."""
    from qgis_plugin.processing.closing import QuitWatcher

    window, exit_action = Window(), QAction("Exit QGIS")
    exits = []
    exit_action.triggered.connect(lambda: exits.append(time.monotonic()))
    watcher = QuitWatcher(SimpleNamespace(mainWindow=lambda: window, actionExit=lambda: exit_action))
    yield SimpleNamespace(window=window, exit_action=exit_action, exits=exits)
    watcher.close()


def running_task(node: shared.Node) -> str:
    found: list[str] = []

    def running() -> bool:
        found[:] = [u for u in node.list_tasks() if node.get_task(u).info().status == S.RUNNING]
        return bool(found)

    spin(running, 30, "the task to run on the node")
    return found[0]


@pytest.mark.parametrize("how", ["window closed", "QGIS asks on exit, Yes"])
def test_quitting_qgis_leaves_the_remote_task_running(how, desktop, devnode_factory, photo_folder, tmp_path):
    slow = devnode_factory(seconds_per_image=1.0)  # 6 photos: 6 s of processing
    node = shared.Node.from_url(slow.url)
    run = start_in_background({"IMAGE_FOLDER": str(photo_folder), "SERVER": slow.url,
                               "RESULTS_FOLDER": str(tmp_path)})
    uuid = running_task(node)
    if how == "window closed":
        event = QCloseEvent()
        QCoreApplication.sendEvent(desktop.window, event)
        assert desktop.window.closes == 0  # held back until the plugin's runs have stopped
    else:  # QGIS 3.22: Exit asks "cancel these active tasks?"; Yes cancels them all, then the action's slots run
        QgsApplication.taskManager().cancelAll()
        desktop.exit_action.trigger()
    spin(lambda: run.ended, 15, "the algorithm to stop following")
    assert run.ended == [False]
    assert "keeps running on the server" in run.feedback.text(), run.feedback.text()
    assert node.get_task(uuid).info().status == S.RUNNING  # not canceled
    if how == "window closed":
        spin(lambda: desktop.window.closes == 1, 15, "the close to be asked again")  # and QGIS can quit
    else:
        spin(lambda: len(desktop.exits) == 2, 15, "Exit to be asked again")
    assert node.get_task(uuid).wait_for_completion(interval=0.2).status == S.COMPLETED


def test_unloading_the_plugin_stops_following_without_canceling(devnode_factory, photo_folder, tmp_path):
    from qgis_plugin.processing.closing import stop_watching

    slow = devnode_factory(seconds_per_image=1.0)
    node = shared.Node.from_url(slow.url)
    run = start_in_background({"IMAGE_FOLDER": str(photo_folder), "SERVER": slow.url,
                               "RESULTS_FOLDER": str(tmp_path)})
    uuid = running_task(node)
    stop_watching()  # what the plugin's unload() does first (QGIS quitting, or the plugin reloaded)
    spin(lambda: run.ended, 15, "the algorithm to stop following")
    assert "keeps running on the server" in run.feedback.text()
    assert node.get_task(uuid).info().status == S.RUNNING


def test_the_users_own_cancel_still_cancels_the_remote_task(desktop, devnode_factory, photo_folder, tmp_path):
    slow = devnode_factory(seconds_per_image=1.0)
    node = shared.Node.from_url(slow.url)
    run = start_in_background({"IMAGE_FOLDER": str(photo_folder), "SERVER": slow.url,
                               "RESULTS_FOLDER": str(tmp_path)})
    uuid = running_task(node)
    run.task.cancel()  # the task's cancel in QGIS's status bar (the dialog's button cancels the feedback alike)
    spin(lambda: run.ended, 15, "the algorithm to end")
    assert node.get_task(uuid).info().status == S.CANCELED
    assert desktop.window.closes == 0 and desktop.exits == []


# --- 2. canceling a completed task changes nothing ----------------------------------------------------
def test_canceling_a_completed_task_changes_nothing(servers, devnode_factory, photo_folder, tmp_path):
    fast = devnode_factory(**FAST)
    relay = servers.add(start_relay(servers.tmp_path, [fast.url], check_interval=0.3))
    task = shared.Node.from_url(relay.url).create_task(sorted(photo_folder.glob("*.JPG"))[:3], name="Done")
    task.wait_for_completion(interval=0.1)
    out, _, feedback = run_algorithm("odxrelay:canceltask", {"TASK": task.uuid, "SERVER": relay.url})
    assert out["STATUS"] == "completed" and "Nothing canceled" in feedback.text(), feedback.text()
    # the relay itself refuses too, whoever asks
    refused = requests.post(relay.api("/task/cancel"), data={"uuid": task.uuid}, timeout=10).json()
    assert refused["success"] is False and "has completed" in refused["error"]
    assert task.info().status == S.COMPLETED
    loaded, context, _ = run_algorithm("odxrelay:loadresults", {"TASK": task.uuid, "SERVER": relay.url,
                                                                "RESULTS_FOLDER": str(tmp_path)})
    assert layers_to_load(context)["Orthophoto"].isValid() and Path(loaded["ORTHOPHOTO"]).is_file()


# --- 3. a relay with no node online says so -----------------------------------------------------------
def test_a_relay_with_no_node_online_says_so(servers, devnode_factory, photo_folder, tmp_path, qgis_app):
    from qgis_plugin.gui.settings_widget import check_connection

    away = f"http://127.0.0.1:{free_port()}"
    empty = servers.add(start_relay(servers.tmp_path, [away, f"http://127.0.0.1:{free_port()}"], check_interval=0.3))
    spin(lambda: requests.get(empty.api("/info"), timeout=5).json()["relay"]["offline"] == 2, 20, "nodes offline")
    text = check_connection(empty.url, "")
    assert "No node of the ODX Relay" in text and "0 of 2 online; 2 offline" in text, text
    assert "Memory" not in text
    with pytest.raises(QgsProcessingException) as raised:
        run_algorithm("odxrelay:processimages", {"IMAGE_FOLDER": str(photo_folder), "SERVER": empty.url,
                                                 "OPTIONS": "dsm=true", "RESULTS_FOLDER": str(tmp_path)})
    assert "No node of the ODX Relay" in str(raised.value) and "unknown" not in str(raised.value), raised.value

    live = devnode_factory(**FAST)
    half = servers.add(start_relay(servers.tmp_path, [live.url, away], check_interval=0.3))
    spin(lambda: requests.get(half.api("/info"), timeout=5).json()["relay"]["online"] == 1, 20, "a node online")
    text = check_connection(half.url, "")
    assert "Nodes: 1 of 2 online." in text and "Memory:" in text, text


# --- 4. one group per task, zoomed to, with camera positions and report ---------------------------------
def test_loading_a_task_twice_replaces_its_layers_and_zooms(fixture_task, clean_project, qgis_iface):
    uuid, root = fixture_task
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    canvas.setExtent(canvas.extent().buffered(10_000_000))  # far out: the whole world
    for _ in range(2):
        results, _, _ = run_algorithm("odxrelay:loadresults", {"TASK": uuid, "RESULTS_FOLDER": str(root)}, load=True)
    project = QgsProject.instance()
    groups = [n for n in project.layerTreeRoot().children() if isinstance(n, QgsLayerTreeGroup)]
    assert [g.name() for g in groups] == ["NodeODX fixture"]
    names = [c.name() for c in groups[0].children()]
    assert names == ["Camera positions", "Orthophoto", "DSM (surface) hillshade", "DSM (surface)",
                     "DTM (terrain) hillshade", "DTM (terrain)"]
    assert len(project.mapLayers()) == len(names)  # the first load's layers left the project

    cameras = project.mapLayersByName("Camera positions")[0]
    assert cameras.isValid() and cameras.geometryType() == QgsWkbTypes.GeometryType.PointGeometry
    assert cameras.featureCount() > 0 and results["CAMERA_POSITIONS"].endswith("odm_report/shots.geojson")

    ortho = project.mapLayersByName("Orthophoto")[0]
    seen = QgsCoordinateTransform(ortho.crs(), canvas.mapSettings().destinationCrs(), project)
    ortho_extent = seen.transformBoundingBox(ortho.extent())
    shown = canvas.extent()
    assert shown.contains(ortho_extent.center()) and shown.width() < 20 * ortho_extent.width(), (
        shown.toString(), ortho_extent.toString())


def test_photos_in_sub_folders_are_found(devnode, photo_folder, tmp_path):
    photos = sorted(photo_folder.glob("*.JPG"))
    first, second = tmp_path / "DCIM" / "100MEDIA", tmp_path / "DCIM" / "101MEDIA"
    first.mkdir(parents=True)
    second.mkdir()
    for photo in photos[:3]:
        shutil.copy(photo, first / photo.name)
    for photo in photos[3:5]:
        shutil.copy(photo, second / photo.name)
    shutil.copy(photos[5], second / photos[0].name)  # another photo under a name 100MEDIA has too
    with pytest.raises(QgsProcessingException, match="No images to process"):
        run_algorithm("odxrelay:processimages", {"IMAGE_FOLDER": str(tmp_path), "SUBFOLDERS": False,
                                                 "SERVER": devnode.url, "RESULTS_FOLDER": str(tmp_path / "r")})
    results, _, feedback = run_algorithm("odxrelay:processimages", {
        "IMAGE_FOLDER": str(tmp_path), "SERVER": devnode.url, "RESULTS_FOLDER": str(tmp_path / "r")})
    info = shared.Node.from_url(devnode.url).get_task(results["TASK_UUID"]).info()
    assert info.images_count == 6
    received = {p.name for p in (devnode.data_dir / results["TASK_UUID"] / "images").iterdir()}
    assert f"DCIM_101MEDIA_{photos[0].name}" in received and photos[0].name in received, received
    report = Path(results["REPORT"])
    assert report.name == "report.pdf" and report.stat().st_size > 0 and str(report) in feedback.text()


def test_restart_follows_the_task_and_loads_its_results(devnode, photo_folder, clean_project, tmp_path):
    node = shared.Node.from_url(devnode.url)
    task = node.create_task(sorted(photo_folder.glob("*.JPG")), name="Restart and follow")
    task.wait_for_completion(interval=0.1)
    cache_root = tmp_path / "results"
    run_algorithm("odxrelay:loadresults", {"TASK": task.uuid, "SERVER": devnode.url,
                                           "RESULTS_FOLDER": str(cache_root)}, load=True)
    out, context, feedback = run_algorithm("odxrelay:restarttask", {
        "TASK": task.uuid, "SERVER": devnode.url, "OPTIONS": "dsm=true", "RESULTS_FOLDER": str(cache_root)},
        load=True)
    assert out["STATUS"] == "completed" and f"Task {task.uuid} is running." in feedback.text()
    assert Path(out["ORTHOPHOTO"]).is_relative_to(cache_root / task.uuid) and Path(out["DSM"]).is_file()
    assert list(cache_root.glob(f"{task.uuid}.before-restart-*"))  # the old results, moved aside
    assert task.info().options.get("dsm") in (True, "true")
    groups = [n for n in QgsProject.instance().layerTreeRoot().children() if isinstance(n, QgsLayerTreeGroup)]
    assert [g.name() for g in groups] == ["Restart and follow"]
    assert all(Path(layer.source().split("|")[0]).is_relative_to(cache_root / task.uuid)
               for layer in QgsProject.instance().mapLayers().values()
               if layer.providerType() in ("gdal", "ogr"))
