"""odxrelay:removetask — delete a task and its results from the server."""
from __future__ import annotations

from .task_actions import TaskAction


class RemoveTask(TaskAction):
    NAME, DISPLAY = "removetask", "Remove a task"
    HELP = ("<p>Cancels the task if it runs, and deletes it and its results from the server. Results already "
            "downloaded stay in the local results folder, so layers showing them keep working.</p>")

    def initActionParameters(self) -> None:
        self.addResultsFolderParameter()

    def act(self, task, parameters, context, reporter) -> str:
        task.remove()
        folder = self.cache(parameters, context).folder(task.uuid)
        kept = f" Local results stay in {folder}." if folder.exists() else ""
        return f"Task {task.uuid} removed from the server.{kept}"

    def status_after(self, task) -> str:
        return "removed"
