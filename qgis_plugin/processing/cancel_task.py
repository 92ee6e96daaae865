"""odxrelay:canceltask — stop a queued or running task on the server."""
from __future__ import annotations

from .task_actions import TaskAction


class CancelTask(TaskAction):
    NAME, DISPLAY = "canceltask", "Cancel a task"
    HELP = "<p>Stops a queued or running task on the server. Its results, if any, stay on the server until removed.</p>"

    def act(self, task, parameters, context, reporter) -> str:
        task.cancel()
        return f"Canceled. {self.summary(task)}"
