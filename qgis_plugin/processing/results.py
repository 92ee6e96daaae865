"""The outputs shared by "Process drone images" and "Load results", and how a finished task becomes them."""
from __future__ import annotations

import time

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingOutputFile,
    QgsProcessingOutputFolder,
    QgsProcessingOutputRasterLayer,
    QgsProcessingOutputString,
    QgsProcessingOutputVectorLayer,
)

from ..core.runner import Outcome
from ..core.streaming import StreamedResults
from ..layers import queue_layers, queue_results
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


def streamed_outputs(streamed: StreamedResults, name: str, context: QgsProcessingContext,
                     reporter: FeedbackReporter) -> dict:
    """Queue the task's layers read over HTTP from the relay's signed URLs (nothing downloaded); the outputs are
    those URLs as QGIS sources, with no results folder and no report (it stays on the relay)."""
    for warning in streamed.warnings:
        reporter.feedback.pushWarning(warning)
    loaded = queue_layers(streamed.results(), name, streamed.uuid, context, reporter.feedback)
    reporter.info(f"The layers read the task's results from the relay as they are drawn, through links that expire "
                  f"at {time.strftime('%Y-%m-%d %H:%M', time.localtime(streamed.expires))}; a project saved with "
                  "them holds no token, and opening it later renews the links with the token saved for this relay.")
    return {ORTHOPHOTO: loaded.orthophoto, DSM: loaded.dsm, DTM: loaded.dtm, POINT_CLOUD: loaded.point_cloud,
            CAMERAS: loaded.shots, REPORT: None, RESULTS: None, TASK_UUID: streamed.uuid}
