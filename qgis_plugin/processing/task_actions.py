"""What the task-management algorithms share: a task uuid in, the task's state out."""
from __future__ import annotations

from collections.abc import Iterable

from qgis.core import QgsProcessingOutputString, QgsProcessingParameterString

from ..core.describe import STATUS_WORDS, task_summary
from ..deps import shared
from .base import PLUGIN_PACKAGE, OdxAlgorithm

TaskStatus = shared.TaskStatus
PICKER = f"{PLUGIN_PACKAGE}.gui.task_picker.TaskPickerWidgetWrapper"


def task_parameter(name: str, statuses: Iterable[TaskStatus] | None = None) -> QgsProcessingParameterString:
    """A task's uuid: in the dialog, a list of the server's tasks (those with `statuses`, else all) to choose
    from or type into; for scripts and `qgis_process`, the uuid as text."""
    parameter = QgsProcessingParameterString(name, "Task (choose one, or type its uuid)")
    wrapper: dict = {"class": PICKER}
    if statuses is not None:
        wrapper["statuses"] = [int(s) for s in statuses]
    parameter.setMetadata({"widget_wrapper": wrapper})
    return parameter


class TaskAction(OdxAlgorithm):
    """An action on one task; `act` does it and returns a sentence for the log."""

    TASK, STATUS, TASK_UUID = "TASK", "STATUS", "TASK_UUID"
    PICK: tuple[TaskStatus, ...] | None = None  # the tasks the dialog's picker lists (None: all)

    def initParameters(self) -> None:
        self.addParameter(task_parameter(self.TASK, self.PICK))
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
