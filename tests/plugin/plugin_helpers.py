"""Helpers for the plugin's tests in real QGIS: run an algorithm as `processing.run` does, a feedback that
records what it says, what it queued to load, where the sample photos were taken; run processimages as its dialog
does; let Qt run until something holds; a task panel's refresh.

Imported as `tests.plugin.plugin_helpers` by the test modules and by `conftest.py` (fixtures stay there,
used by name).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsPointXY,
    QgsProcessingAlgRunnerTask,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProject,
)
from qgis.PyQt.QtCore import Qt

from devnode.samples import SAMPLE_LATITUDE, SAMPLE_LONGITUDE
from qgis_plugin.deps import shared
from testkit.devnode import start_devnode
from testkit.relay import Relay, start_relay
from testkit.servers import ServerGroup

REPO = Path(__file__).resolve().parents[2]
FIXTURE_ZIP = REPO / "tests" / "fixtures" / "nodeodx-test-all.zip"
FAST = {"seconds_per_image": 0.02}


class RecordingFeedback(QgsProcessingFeedback):
    """Keeps every message and progress value an algorithm reports."""

    def __init__(self) -> None:
        super().__init__()
        self.infos: list[str] = []
        self.console: list[str] = []
        self.warnings: list[str] = []
        self.errors: list[str] = []
        self.progress_values: list[float] = []
        # direct: the upload reports progress from its own threads, and no event loop runs meanwhile
        self.progressChanged.connect(self.progress_values.append, Qt.ConnectionType.DirectConnection)

    def pushInfo(self, info: str) -> None:  # noqa: N802 - QGIS's names
        self.infos.append(info)

    def pushConsoleInfo(self, info: str) -> None:  # noqa: N802
        self.console.append(info)

    def pushWarning(self, warning: str) -> None:  # noqa: N802
        self.warnings.append(warning)

    def reportError(self, error: str, fatalError: bool = False) -> None:  # noqa: N802, N803
        self.errors.append(error)

    def text(self) -> str:
        return "\n".join(self.infos + self.warnings + self.errors)


def run_algorithm(algorithm: str, parameters: dict[str, Any], feedback: RecordingFeedback | None = None,
                  load: bool = False) -> tuple[dict, QgsProcessingContext, RecordingFeedback]:
    """`processing.run` (or `runAndLoadResults`) with a context on the current project."""
    import processing

    feedback = feedback or RecordingFeedback()
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    run = processing.runAndLoadResults if load else processing.run
    results = run(algorithm, parameters, feedback=feedback, context=context)
    return results, context, feedback


def layers_to_load(context: QgsProcessingContext) -> dict:
    """{layer name: layer} of what the algorithm queued to load on completion."""
    return {details.name: context.temporaryLayerStore().mapLayer(layer_id)
            for layer_id, details in context.layersToLoadOnCompletion().items()}


def where_photos_were_taken(crs: QgsCoordinateReferenceSystem) -> QgsPointXY:
    wgs84 = QgsCoordinateReferenceSystem("EPSG:4326")
    return QgsCoordinateTransform(wgs84, crs, QgsProject.instance()).transform(
        QgsPointXY(SAMPLE_LONGITUDE, SAMPLE_LATITUDE))


def start_in_background(params: dict) -> SimpleNamespace:
    """Run processimages as the algorithm dialog runs it: a QgsProcessingAlgRunnerTask in QGIS's task manager."""
    algorithm = QgsApplication.processingRegistry().createAlgorithmById("odxrelay:processimages")
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    feedback = RecordingFeedback()
    task = QgsProcessingAlgRunnerTask(algorithm, params, context, feedback)
    run = SimpleNamespace(algorithm=algorithm, context=context, feedback=feedback, task=task, ended=[])
    task.executed.connect(lambda ok, results: run.ended.append(ok))
    QgsApplication.taskManager().addTask(task)
    return run


def wait_for(condition: Callable[[], object], timeout: float = 30, what: str = "") -> object:
    """Let Qt run (queued signals, QGIS tasks) until `condition()` is true; its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        QgsApplication.processEvents()
        result = condition()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or condition}")


def refreshed(panel) -> object:
    """Ask a task panel for a refresh and wait for it to be shown; the Snapshot."""
    shown: list = []
    panel.refreshed.connect(shown.append)
    try:
        wait_for(panel.refresh, 10, "a refresh to start")
        wait_for(lambda: shown, 30, "a refresh")
    finally:
        panel.refreshed.disconnect(shown.append)
    return shown[0]


def relay_with_tasks(group: ServerGroup, token: str, photo_sets: list[list[Path]],
                     name: str) -> tuple[Relay, list[str]]:
    """A relay with a client `token` before one fast development node (in `group`), and one completed task
    through it for each set of photos, named `name 0`, `name 1`, ...: (the relay, the tasks' uuids)."""
    node = group.start(start_devnode, slots=2, **FAST)
    relay = group.add(start_relay(group.tmp_path, [node.url], token=token, check_interval=0.3))
    client = shared.Node.from_url(relay.url, token=token)
    uuids = []
    for index, photos in enumerate(photo_sets):
        task = client.create_task(photos, name=f"{name} {index}")
        task.wait_for_completion(interval=0.2)
        uuids.append(task.uuid)
    return relay, uuids
