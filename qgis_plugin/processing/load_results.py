"""odxrelay:loadresults — load the results of a task that already exists, without processing again."""
from __future__ import annotations

from qgis.core import QgsProcessingParameterBoolean

from ..core.runner import TaskRunner
from ..deps import shared
from .base import OdxAlgorithm
from .results import add_result_outputs, result_outputs
from .task_actions import task_parameter


class LoadResults(OdxAlgorithm):
    NAME = "loadresults"
    DISPLAY = "Load results of a task"
    GROUP_ID, GROUP = "photogrammetry", "Photogrammetry"
    TASK, WAIT = "TASK", "WAIT"
    HELP = (
        "<p>Loads the orthophoto, elevation models and point cloud of an existing task, by its uuid: one sent "
        "earlier (also one still running when QGIS closed), or one sent by someone else with the same token. "
        "Nothing is processed again, and results already downloaded are not downloaded again. "
        "“List tasks” shows the uuids.</p>")

    def initParameters(self) -> None:
        self.addParameter(task_parameter(self.TASK, (shared.TaskStatus.QUEUED, shared.TaskStatus.RUNNING,
                                                     shared.TaskStatus.COMPLETED)))
        self.addParameter(QgsProcessingParameterBoolean(self.WAIT, self.tr("Wait for the task if it is still running"),
                                                        defaultValue=True))
        self.addResultsFolderParameter()
        add_result_outputs(self)

    def perform(self, parameters, context, reporter):
        uuid = self.task_uuid(parameters, context)
        wait = self.parameterAsBoolean(parameters, self.WAIT, context)
        cache = self.cache(parameters, context)
        node = None if cache.has(uuid) else self.node()  # cached results load without a server
        outcome = TaskRunner(node, reporter, cache, self.POLL_INTERVAL).load(uuid, wait)
        return result_outputs(outcome, context, reporter)
