"""odxrelay:listtasks — the tasks this token can see, as a table."""
from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsProcessing,
    QgsProcessingParameterFeatureSink,
    QgsWkbTypes,
)

from ..core.describe import TASK_FIELDS, task_row, task_summary
from .base import OdxAlgorithm

try:  # QGIS 3 (Qt 5) types fields with QVariant; QGIS 4 (Qt 6) with QMetaType
    from qgis.PyQt.QtCore import QVariant
    FIELD_TYPES = {"str": QVariant.Type.String, "int": QVariant.Type.Int, "float": QVariant.Type.Double}
except (ImportError, AttributeError):
    from qgis.PyQt.QtCore import QMetaType
    FIELD_TYPES = {"str": QMetaType.Type.QString, "int": QMetaType.Type.Int, "float": QMetaType.Type.Double}


def task_fields() -> QgsFields:
    fields = QgsFields()
    for name, kind in TASK_FIELDS:
        fields.append(QgsField(name, FIELD_TYPES[kind]))
    return fields


class ListTasks(OdxAlgorithm):
    NAME, DISPLAY = "listtasks", "List tasks"
    OUTPUT = "OUTPUT"
    HELP = ("<p>Lists the tasks on the server that this token can see: status, progress, number of images, "
            "when each was created and how long it has been processing. The uuid column is what “Load "
            "results”, “Cancel”, “Restart” and “Remove” take.</p>")

    def initParameters(self) -> None:
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, self.tr("Tasks"),
                                                            QgsProcessing.SourceType.TypeVector))

    def perform(self, parameters, context, reporter):
        node = self.node()
        uuids = node.list_tasks()
        fields = task_fields()
        sink, dest_id = self.parameterAsSink(parameters, self.OUTPUT, context, fields,
                                             QgsWkbTypes.Type.NoGeometry, QgsCoordinateReferenceSystem())
        for index, uuid in enumerate(uuids):
            if reporter.is_canceled():
                break
            info = node.get_task(uuid).info()
            reporter.info(task_summary(info))
            row = task_row(info)
            feature = QgsFeature(fields)
            feature.setAttributes([row[name] for name, _ in TASK_FIELDS])
            sink.addFeature(feature, QgsFeatureSink.Flag.FastInsert)
            reporter.progress(100.0 * (index + 1) / len(uuids))
        reporter.info(f"{len(uuids)} task(s) on {self.connection.display_url}.")
        return {self.OUTPUT: dest_id}
