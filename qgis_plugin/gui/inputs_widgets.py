"""The processimages dialog's folder field: it says what the folder holds ("6 photos, 1.2 MB") as soon as one is
chosen, and, while "Show the photos' positions on the map" is ticked (it starts ticked), puts the photos' EXIF
positions on the map, so the flight is seen before anything is sent. Scripts and `qgis_process` do not use this
widget: their parameters and results are the same as before."""
from __future__ import annotations

from qgis.core import QgsProject
from qgis.gui import QgsFileWidget, QgsProcessingGui
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QCheckBox, QLabel, QVBoxLayout, QWidget

from ..core.input_summary import short_summary
from ..core.inputs import InputError, UploadPlan, plan_upload
from ..core.photo_positions import survey
from ..processing.photo_layer import LAYER_NAME, remove_positions, show_positions
from .dialog_only import DialogOnlyWrapper

SUBFOLDERS = "SUBFOLDERS"
#: Milliseconds of quiet after the last keystroke in the path before the folder is read.
SETTLE_MS = 300


def folder_plan(folder: str, recursive: bool = True) -> tuple[UploadPlan | None, str]:
    """The folder's plan and its line of summary, or None and why it cannot make a task."""
    if not folder:
        return None, ""
    try:
        plan = plan_upload(folder=folder, recursive=recursive)
    except (InputError, OSError) as exc:
        return None, str(exc)
    return plan, short_summary(plan)


class PhotoFolderWidgetWrapper(DialogOnlyWrapper):
    """A folder picker, a line under it counting the photos and their size, and (in the algorithm dialog) the
    "Show the photos' positions on the map" box."""

    def createWidget(self):
        self.subfolders = None
        self.shown = None
        widget = QWidget()
        layout = QVBoxLayout(widget)
        layout.setContentsMargins(0, 0, 0, 0)
        self.picker = QgsFileWidget()
        self.picker.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.show_box = QCheckBox(self.tr("Show the photos' positions on the map"))
        self.show_box.setToolTip(self.tr(f"A point layer “{LAYER_NAME}”: one point per photo at its EXIF GPS "
                                         "position, with file name, altitude and capture time"))
        self.show_box.setChecked(True)
        self.in_dialog = self.dialogType == QgsProcessingGui.WidgetType.Standard  # not in batch or modeler
        self.show_box.setVisible(self.in_dialog)
        self.timer = QTimer(widget)
        self.timer.setSingleShot(True)
        self.timer.setInterval(SETTLE_MS)
        self.timer.timeout.connect(self.read_folder)
        self.picker.fileChanged.connect(lambda *_: self.timer.start())
        self.show_box.toggled.connect(lambda *_: self.read_folder())
        layout.addWidget(self.picker)
        layout.addWidget(self.summary)
        layout.addWidget(self.show_box)
        return widget

    def postInitialize(self, wrappers):
        for wrapper in wrappers:
            if wrapper.parameterDefinition().name() == SUBFOLDERS:
                self.subfolders = wrapper
                wrapper.widgetValueHasChanged.connect(lambda *_: self.read_folder())
        self.read_folder()

    def recursive(self) -> bool:
        value = self.subfolders.parameterValue() if self.subfolders is not None else None
        return True if value is None else bool(value)

    def read_folder(self) -> None:
        """Count the folder's photos, and show or take away their positions (main thread: this is the dialog).
        Not named `refresh`: the dialog calls every wrapper's `refresh` when a layer is added or removed."""
        self.timer.stop()
        plan, text = folder_plan(self.picker.filePath(), self.recursive())
        project = QgsProject.instance()
        positions = survey(u.source for u in plan.photos()) if plan is not None and self.in_dialog else None
        showing = positions is not None and bool(positions.positions) and self.show_box.isChecked()
        if positions is not None:
            text += f"; {len(positions.positions)} with a GPS position"
            text += ", on the map" if showing else ""
            text += f", {len(positions.without_gps)} without" if positions.without_gps else ""
        if showing:
            self.shown = show_positions(positions, project)
        elif self.shown is not None:
            remove_positions(project)
            self.shown = None
        self.summary.setText(text)

    def setValue(self, value):
        self.picker.setFilePath("" if value is None else str(value))
        self.read_folder()

    def value(self):
        if self.timer.isActive():  # the path was typed a moment ago
            self.read_folder()
        return self.picker.filePath() or None
