"""odxrelay:canceltask — stop a queued or running task on the server."""
from __future__ import annotations

from ..core.describe import STATUS_WORDS
from ..deps import shared
from .task_actions import TaskAction


class CancelTask(TaskAction):
    NAME, DISPLAY = "canceltask", "Cancel a task"
    PICK = (shared.TaskStatus.QUEUED, shared.TaskStatus.RUNNING)
    HELP = ("<p>Stops a queued or running task on the server. A task that has already completed, failed or been "
            "canceled is left as it is (a completed task's results stay downloadable: “Load results” loads "
            "them). Its results, if any, stay on the server until removed.</p>")

    def act(self, task, parameters, context, reporter) -> str:
        info = task.info()
        if info.status.is_final:
            return (f"Nothing canceled: task {task.uuid} is already {STATUS_WORDS[info.status]}; only a queued or "
                    "running task can be canceled." + (" Its results stay downloadable: “Load results” loads them."
                                                       if info.status == shared.TaskStatus.COMPLETED else ""))
        task.cancel()
        return f"Canceled. {self.summary(task)}"
