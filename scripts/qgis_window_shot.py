"""Run inside the QGIS desktop by `scripts.demo_desktop` (`qgis.bin --code THIS_FILE`): open the ODX Relay
task panel, wait until it lists the demo's task as completed and the canvas has drawn the project's
layers, save a PNG of the main window, write what happened to a JSON file, and quit QGIS.

Everything it needs comes from the environment (set by `scripts.demo_desktop`):
ODX_DEMO_SHOT (the PNG), ODX_DEMO_STATUS (the JSON), ODX_DEMO_TASK (the task to show selected),
ODX_DEMO_WAIT (seconds before it gives up and saves the window as it is), ODX_DEMO_SIZE (WIDTHxHEIGHT).
"""
from __future__ import annotations

import json
import os
import time

import qgis.utils
from qgis.core import QgsCoordinateTransform, QgsProject, QgsRasterLayer, QgsRectangle
from qgis.PyQt.QtCore import QCoreApplication, QObject, Qt, QTimer
from qgis.PyQt.QtWidgets import QDockWidget

PANEL = "odx_relay_tasks"  # the dock's objectName (qgis_plugin/gui/task_panel.py)
LAYOUT_MS = 300  # the dock's width settles before the map's extent is set
SETTLE_MS = 800  # after the panel and the canvas are ready: one more paint of both
QUIT_MS = 5000  # the File › Exit path gets this long before QGIS is told to leave its event loops


class WindowShot(QObject):
    """Kept alive by its parent, the main window: this file's globals go away once QGIS has run it."""

    def __init__(self, iface) -> None:
        super().__init__(iface.mainWindow())
        self.iface = iface
        self.png = os.environ["ODX_DEMO_SHOT"]
        self.status = os.environ["ODX_DEMO_STATUS"]
        self.task = os.environ.get("ODX_DEMO_TASK", "")
        width, height = (int(v) for v in os.environ.get("ODX_DEMO_SIZE", "1920x1080").split("x"))
        self.size = (width, height)
        self.started = time.monotonic()
        self.panel = None
        self.listed: list[str] = []  # "title: status" of each task the panel showed last
        self.panel_error = ""
        self.panel_ready = self.canvas_ready = self.shooting = self.finished = False
        self.deadline = QTimer(self)
        self.deadline.setSingleShot(True)
        self.deadline.timeout.connect(self.give_up)
        self.deadline.start(int(float(os.environ.get("ODX_DEMO_WAIT", "60")) * 1000))
        QTimer.singleShot(0, self.start)

    def start(self) -> None:
        window = self.iface.mainWindow()
        window.setGeometry(0, 0, *self.size)  # no window manager under Xvfb: no "maximized" either
        toolbox = window.findChild(QDockWidget, "ProcessingToolbox")
        if toolbox is not None:
            toolbox.hide()  # the task panel gets the right-hand side to itself
        self.panel = window.findChild(QDockWidget, PANEL)
        if self.panel is None:
            loaded = ", ".join(sorted(qgis.utils.plugins)) or "none"
            self.finish(False, f"the ODX Relay plugin's task panel is not in the window (plugins loaded: {loaded})")
            return
        self.panel.refreshed.connect(self.refreshed)
        self.panel.set_open(True)  # as the user's click on "ODX Relay tasks" would; it refreshes at once
        self.panel.raise_()
        window.resizeDocks([self.panel], [int(self.size[0] * 0.36)], Qt.Orientation.Horizontal)
        QTimer.singleShot(LAYOUT_MS, self.draw_map)  # once the dock has its width, the canvas its size

    def draw_map(self) -> None:
        canvas = self.iface.mapCanvas()
        canvas.renderStarting.connect(self.canvas_drawing)
        canvas.mapCanvasRefreshed.connect(self.canvas_drawn)
        extent = self.layers_extent()
        if extent is None:
            self.finish(False, "the project has no raster layer to show")
            return
        canvas.setExtent(extent)
        canvas.refresh()

    def layers_extent(self) -> QgsRectangle | None:
        """The visible rasters' extent in the canvas's CRS (set to the first raster's), with a margin."""
        project = QgsProject.instance()
        rasters = [lyr for lyr in project.layerTreeRoot().checkedLayers() if isinstance(lyr, QgsRasterLayer)]
        if not rasters:
            return None
        canvas = self.iface.mapCanvas()
        if not project.crs().isValid():
            project.setCrs(rasters[0].crs())
        extent = QgsRectangle()
        extent.setMinimal()
        for layer in rasters:
            transform = QgsCoordinateTransform(layer.crs(), canvas.mapSettings().destinationCrs(), project)
            extent.combineExtentWith(transform.transformBoundingBox(layer.extent()))
        extent.scale(1.05)
        return extent

    def refreshed(self, snapshot) -> None:
        if snapshot.error:
            self.panel_error = snapshot.error
            return
        self.panel_error = ""
        self.listed = [f"{e.title}: {e.status_word}" for e in snapshot.tasks]
        entry = self.panel.entry(self.task) if self.task else (snapshot.tasks[0] if snapshot.tasks else None)
        if entry is not None and entry.status.name == "COMPLETED":
            self.panel.select([entry.uuid])  # the finished task, highlighted as a click would
            self.panel_ready = True
            self.shoot_when_ready()

    def canvas_drawing(self) -> None:
        self.canvas_ready = False

    def canvas_drawn(self) -> None:
        self.canvas_ready = True
        self.shoot_when_ready()

    def shoot_when_ready(self) -> None:
        if self.panel_ready and self.canvas_ready and not self.shooting:
            self.shooting = True
            QTimer.singleShot(SETTLE_MS, self.shoot)

    def shoot(self) -> None:
        if self.iface.mapCanvas().isDrawing() or not self.canvas_ready:  # drawn again meanwhile: its next end
            self.shooting = False
            return
        self.finish(True, "the task panel lists the finished task and the canvas shows its layers")

    def give_up(self) -> None:
        waited = []
        if not self.panel_ready:
            why = f" (its last refresh said: {self.panel_error})" if self.panel_error else ""
            waited.append(f"the task panel to list {f'task {self.task}' if self.task else 'a task'} as completed{why}")
        if not self.canvas_ready:
            waited.append("the map canvas to finish drawing")
        self.finish(False, f"gave up after {time.monotonic() - self.started:.0f} s waiting for " + " and ".join(waited))

    def finish(self, ok: bool, message: str) -> None:
        """Save the window (also when something is missing: the PNG shows what), say why, quit QGIS."""
        if self.finished:
            return
        self.finished = True
        self.deadline.stop()
        saved = False
        try:
            saved = self.iface.mainWindow().grab().save(self.png, "PNG")
        finally:
            with open(self.status, "w", encoding="utf-8") as out:
                json.dump({"ok": ok and saved, "message": message if saved else f"{message}; the PNG could not "
                           f"be written to {self.png}", "tasks": self.listed,
                           "seconds": round(time.monotonic() - self.started, 1)}, out)
            # No question on the way out ("save the project?", or "temporary layers will be lost" when the
            # results are under /tmp): the project goes first. Should a dialog still come, QGIS quits anyway.
            QgsProject.instance().clear()
            QTimer.singleShot(0, self.iface.actionExit().trigger)
            app = QCoreApplication.instance()
            QTimer.singleShot(QUIT_MS, app, lambda: app.exit(0))  # leaves every event loop, a dialog's too


qgis.utils.odx_relay_window_shot = WindowShot(qgis.utils.iface)
