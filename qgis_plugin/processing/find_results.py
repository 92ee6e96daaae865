"""odxrelay:findresults — browse the relay's results catalogue (STAC) by map extent and capture dates: the tasks
found become a layer of footprints (uuid, title, capture times), and the first ones can be loaded at once,
streamed or downloaded."""
from __future__ import annotations

import datetime as dt
import json

from osgeo import ogr
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsProcessing,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterDateTime,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterNumber,
    QgsWkbTypes,
)

from ..core.catalogue import CatalogueItem, search
from ..core.runner import TaskRunner
from .base import OdxAlgorithm
from .list_tasks import FIELD_TYPES
from .load_results import STREAM, add_mode_parameter, load_task

WGS84 = QgsCoordinateReferenceSystem("EPSG:4326")
FOOTPRINT_FIELDS = (("uuid", "str"), ("title", "str"), ("start", "str"), ("end", "str"), ("assets", "str"))


def footprint_fields() -> QgsFields:
    fields = QgsFields()
    for name, kind in FOOTPRINT_FIELDS:
        fields.append(QgsField(name, FIELD_TYPES[kind]))
    return fields


def footprint(item: CatalogueItem) -> QgsGeometry:
    """The item's footprint (its GeoJSON geometry, else its bbox) as a QGIS geometry in WGS 84."""
    if item.geometry:
        parsed = ogr.CreateGeometryFromJson(json.dumps(item.geometry))  # (QgsJsonUtils reads geometries from 3.36)
        if parsed is not None:
            return QgsGeometry.fromWkt(parsed.ExportToWkt())
    if item.bbox and len(item.bbox) >= 4:
        west, south, east, north = (item.bbox[:4] if len(item.bbox) == 4 else
                                    (item.bbox[0], item.bbox[1], item.bbox[3], item.bbox[4]))
        return QgsGeometry.fromWkt(f"POLYGON(({west} {south},{east} {south},{east} {north},{west} {north},"
                                   f"{west} {south}))")
    return QgsGeometry()


class FindResults(OdxAlgorithm):
    NAME = "findresults"
    DISPLAY = "Find results in the relay's catalogue"
    GROUP_ID, GROUP = "photogrammetry", "Photogrammetry"
    EXTENT, START, END, LIMIT, LOAD, MODE = "EXTENT", "START", "END", "LIMIT", "LOAD", "MODE"
    OUTPUT, FOUND, LOADED = "OUTPUT", "FOUND", "LOADED"
    HELP = (
        "<p>Searches the relay's catalogue of results (its STAC API) for the tasks whose orthophoto lies in the "
        "<b>extent</b> (the map's, or any other; empty: everywhere) and whose photos were taken between the "
        "<b>dates</b> given (either may be left empty). The tasks found become a layer of footprints, newest "
        "capture first, with each task's uuid, title and capture times: “Load results” takes the uuid.</p>"
        "<p><b>Load the first</b> loads the results of that many of the tasks found at once, each into a group "
        "of its own: streamed from the relay (nothing downloaded, the default) or as a local copy.</p>")

    def initParameters(self) -> None:
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, self.tr("Where (empty: everywhere)"),
                                                       optional=True))
        self.addParameter(QgsProcessingParameterDateTime(self.START, self.tr("Photos taken from"), optional=True))
        self.addParameter(QgsProcessingParameterDateTime(self.END, self.tr("Photos taken until"), optional=True))
        self.addParameter(QgsProcessingParameterNumber(self.LIMIT, self.tr("Find at most"), minValue=1,
                                                       maxValue=10000, defaultValue=100))
        self.addParameter(QgsProcessingParameterNumber(self.LOAD, self.tr("Load the results of the first (0: none)"),
                                                       minValue=0, maxValue=20, defaultValue=0))
        add_mode_parameter(self, default=STREAM)
        self.addResultsFolderParameter()
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, self.tr("Results found"),
                                                            QgsProcessing.SourceType.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputNumber(self.FOUND, self.tr("Number of tasks found")))
        self.addOutput(QgsProcessingOutputString(self.LOADED, self.tr("Tasks loaded (uuids, comma-separated)")))

    def when(self, parameters, key: str, context) -> dt.datetime | None:
        chosen = self.parameterAsDateTime(parameters, key, context)
        if parameters.get(key) in (None, "") or not chosen.isValid():
            return None
        return dt.datetime.fromtimestamp(chosen.toSecsSinceEpoch(), tz=dt.UTC)

    def perform(self, parameters, context, reporter):
        bbox = None
        if parameters.get(self.EXTENT) not in (None, ""):
            extent = self.parameterAsExtent(parameters, self.EXTENT, context, WGS84)
            if not extent.isNull() and not extent.isEmpty():
                bbox = (extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum())
        start, end = self.when(parameters, self.START, context), self.when(parameters, self.END, context)
        limit = self.parameterAsInt(parameters, self.LIMIT, context)
        node = self.node()
        items = search(node, bbox, start, end, limit)
        where = "anywhere" if bbox is None else "in " + ", ".join(f"{v:.5f}" for v in bbox) + " (WGS 84)"
        reporter.info(f"{len(items)} task(s) found {where} on {self.connection.display_url}.")
        fields = footprint_fields()
        sink, dest_id = self.parameterAsSink(parameters, self.OUTPUT, context, fields, QgsWkbTypes.Type.Polygon, WGS84)
        for item in items:
            feature = QgsFeature(fields)
            feature.setGeometry(footprint(item))
            feature.setAttributes([item.uuid, item.title, item.start, item.end, ", ".join(item.assets)])
            sink.addFeature(feature, QgsFeatureSink.Flag.FastInsert)
            reporter.info(f"{item.uuid}  {item.title}  {item.start}" + (f" – {item.end}" if item.end != item.start
                                                                         else ""))
        loaded = []
        stream = self.parameterAsEnum(parameters, self.MODE, context) == STREAM
        runner = TaskRunner(node, reporter, self.cache(parameters, context), self.POLL_INTERVAL)
        for item in items[:self.parameterAsInt(parameters, self.LOAD, context)]:
            if reporter.is_canceled():
                break
            load_task(runner, item.uuid, False, stream, context, reporter)
            loaded.append(item.uuid)
        return {self.OUTPUT: dest_id, self.FOUND: len(items), self.LOADED: ",".join(loaded)}
