"""The outputs shared by "Process drone images" and "Load results", and how a finished task becomes them."""
from __future__ import annotations

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingOutputFile,
    QgsProcessingOutputFolder,
    QgsProcessingOutputRasterLayer,
    QgsProcessingOutputString,
    QgsProcessingOutputVectorLayer,
)

from ..core.runner import Outcome
from ..layers import queue_results
from .base import FeedbackReporter, OdxAlgorithm

ORTHOPHOTO, DSM, DTM, POINT_CLOUD = "ORTHOPHOTO", "DSM", "DTM", "POINT_CLOUD"
REPORT, CAMERAS = "REPORT", "CAMERA_POSITIONS"
RESULTS, TASK_UUID = "RESULTS", "TASK_UUID"


def add_result_outputs(alg: OdxAlgorithm, with_uuid: bool = True) -> None:
    alg.addOutput(QgsProcessingOutputRasterLayer(ORTHOPHOTO, alg.tr("Orthophoto")))
    alg.addOutput(QgsProcessingOutputRasterLayer(DSM, alg.tr("Digital surface model (DSM)")))
    alg.addOutput(QgsProcessingOutputRasterLayer(DTM, alg.tr("Digital terrain model (DTM)")))
    alg.addOutput(QgsProcessingOutputFile(POINT_CLOUD, alg.tr("Point cloud")))
    alg.addOutput(QgsProcessingOutputVectorLayer(CAMERAS, alg.tr("Camera positions (shots.geojson)")))
    alg.addOutput(QgsProcessingOutputFile(REPORT, alg.tr("Processing report (PDF)")))
    alg.addOutput(QgsProcessingOutputFolder(RESULTS, alg.tr("Results folder")))
    if with_uuid:
        alg.addOutput(QgsProcessingOutputString(TASK_UUID, alg.tr("Task UUID")))


def result_outputs(outcome: Outcome, context: QgsProcessingContext, reporter: FeedbackReporter) -> dict:
    """Queue the task's layers to load into its group, and return the outputs (files stay in the cache)."""
    loaded = queue_results(outcome.folder, outcome.name, outcome.uuid, context, reporter.feedback)
    return {ORTHOPHOTO: loaded.orthophoto, DSM: loaded.dsm, DTM: loaded.dtm, POINT_CLOUD: loaded.point_cloud,
            CAMERAS: loaded.shots, REPORT: loaded.report, RESULTS: str(outcome.folder), TASK_UUID: outcome.uuid}
