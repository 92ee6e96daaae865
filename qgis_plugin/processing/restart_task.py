"""odxrelay:restarttask — process a task again, with changed options if given, follow it, and load its results."""
from __future__ import annotations

import time

from qgis.core import QgsProcessingParameterBoolean, QgsProcessingParameterString

from ..core.presets import parse_option_text
from ..core.runner import TaskRunner, require_online
from ..deps import shared
from .results import add_result_outputs, result_outputs
from .task_actions import TaskAction


class RestartTask(TaskAction):
    NAME, DISPLAY = "restarttask", "Restart a task"
    OPTIONS, FOLLOW = "OPTIONS", "FOLLOW"
    PICK = (shared.TaskStatus.FAILED, shared.TaskStatus.COMPLETED, shared.TaskStatus.CANCELED)
    HELP = ("<p>Processes a finished, failed or canceled task again with the images it already has. "
            "<b>Options</b> (one <code>name=value</code> a line) change the task's options; the others stay. "
            "They are checked with the server first. Results downloaded earlier are moved aside.</p>"
            "<p>With <b>Follow the task and load its results</b> (the default), the task is followed as "
            "“Process drone images” follows it, and its new results load into the task's group, replacing the "
            "old layers. Cancel stops the task on the server; if QGIS closes, it keeps running and “Load "
            "results” fetches it later.</p>")

    def initActionParameters(self) -> None:
        self.addParameter(QgsProcessingParameterString(
            self.OPTIONS, self.tr("Options to change (name=value, one a line)"), multiLine=True, optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            self.FOLLOW, self.tr("Follow the task and load its results"), defaultValue=True))
        self.addResultsFolderParameter()
        add_result_outputs(self, with_uuid=False)

    def perform(self, parameters, context, reporter):
        restarted = super().perform(parameters, context, reporter)
        if not self.parameterAsBoolean(parameters, self.FOLLOW, context):
            return restarted
        runner = TaskRunner(self.node(), reporter, self.cache(parameters, context), self.POLL_INTERVAL)
        outcome = runner.load(restarted[self.TASK_UUID], wait=True)
        return {**result_outputs(outcome, context, reporter), self.STATUS: "completed"}

    def act(self, task, parameters, context, reporter) -> str:
        changes = parse_option_text(self.parameterAsString(parameters, self.OPTIONS, context))
        options = None
        require_online(task.node)  # else a relay with no node online would refuse every option as unknown
        if changes:
            problems = shared.options.validate_options(task.node.options(), changes)
            if problems:
                raise shared.OptionsError(problems)
            options = {**task.info().options, **changes}
        task.restart(options)
        moved = self.cache(parameters, context).retire(task.uuid, time.strftime("%Y%m%d-%H%M%S"))
        note = f" Earlier results were moved to {moved}." if moved else ""
        changed = ", ".join(f"{k}={v}" for k, v in changes.items()) or "the same options"
        return f"Restarted with {changed}.{note} {self.summary(task)}"
