"""What the task-management algorithms share: a task uuid in, the task's state out."""
from __future__ import annotations

from qgis.core import QgsProcessingOutputString, QgsProcessingParameterString

from ..core.describe import STATUS_WORDS, task_summary
from .base import OdxAlgorithm


class TaskAction(OdxAlgorithm):
    """An action on one task; `act` does it and returns a sentence for the log."""

    TASK, STATUS, TASK_UUID = "TASK", "STATUS", "TASK_UUID"

    def initParameters(self) -> None:
        self.addParameter(QgsProcessingParameterString(self.TASK, self.tr("Task UUID")))
        self.initActionParameters()
        self.addOutput(QgsProcessingOutputString(self.TASK_UUID, self.tr("Task UUID")))
        self.addOutput(QgsProcessingOutputString(self.STATUS, self.tr("Status afterwards")))

    def initActionParameters(self) -> None:
        """Parameters beyond the task uuid, if the action has any."""

    def perform(self, parameters, context, reporter):
        uuid = self.task_uuid(parameters, context)
        task = self.node().get_task(uuid)
        reporter.info(self.act(task, parameters, context, reporter))
        status = self.status_after(task)
        return {self.TASK_UUID: uuid, self.STATUS: status}

    def act(self, task, parameters, context, reporter) -> str:
        raise NotImplementedError

    def status_after(self, task) -> str:
        info = task.info()
        return STATUS_WORDS.get(info.status, str(info.status))

    def summary(self, task) -> str:
        return task_summary(task.info())
