"""Custom parameter widgets for the algorithm dialog and batch runs only. The model designer gets QGIS's own
widget instead: a legacy Python wrapper there could take only fixed values, never a model input."""
from __future__ import annotations

from processing.gui.wrappers import WidgetWrapper
from qgis.gui import QgsGui

MODELER_DIALOG = "ModelerParametersDialog"


class DialogOnlyWrapper(WidgetWrapper):
    def __new__(cls, param, dialog, row=0, col=0, **kwargs):
        if dialog.__class__.__name__ == MODELER_DIALOG:  # what WidgetWrapperFactory does without metadata
            widget = QgsGui.processingGuiRegistry().createModelerParameterWidget(
                dialog.model, dialog.childId, param, dialog.context)
            widget.setDialog(dialog)
            return widget
        return super().__new__(cls)
