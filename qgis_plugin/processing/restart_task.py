"""odxrelay:restarttask — process a task again, with changed options if given."""
from __future__ import annotations

import time

from qgis.core import QgsProcessingParameterString

from ..core.presets import parse_option_text
from ..deps import shared
from .task_actions import TaskAction


class RestartTask(TaskAction):
    NAME, DISPLAY = "restarttask", "Restart a task"
    OPTIONS = "OPTIONS"
    HELP = ("<p>Processes a finished, failed or canceled task again with the images it already has. "
            "<b>Options</b> (one <code>name=value</code> a line) change the task's options; the others stay. "
            "They are checked with the server first. Results downloaded earlier are moved aside, so "
            "“Load results” fetches the new ones.</p>")

    def initActionParameters(self) -> None:
        self.addParameter(QgsProcessingParameterString(
            self.OPTIONS, self.tr("Options to change (name=value, one a line)"), multiLine=True, optional=True))
        self.addResultsFolderParameter()

    def act(self, task, parameters, context, reporter) -> str:
        changes = parse_option_text(self.parameterAsString(parameters, self.OPTIONS, context))
        options = None
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

