"""Quitting QGIS while tasks run: the follow-up in QGIS stops, the tasks on the server keep running.

QGIS 3.22 will not quit while a background task is active: it asks whether to cancel them, and whatever
the answer, stays open (Yes cancels them, which the plugin used to take as the user canceling the remote
task). So the plugin steps in first. When the main window is asked to close (its close button, or the
Exit action's shortcut), every run of an ODX Relay algorithm is marked "left running" and stopped; once
those runs have ended, the close is asked again, and QGIS quits without a question about them. Where the
request reaches QGIS first (Exit from the menu: QGIS asks, then the Exit action's `triggered` reaches the
plugin), the runner waits `core.runner.CLOSE_GRACE` seconds after a cancel before it treats it as the user's own, so
the plugin can still mark the runs; the exit is then asked again once they have ended.

Which cancel is which:
- the algorithm dialog's Cancel button, the task's cancel in QGIS's status bar, a script's
  `feedback.cancel()`: the user canceled that task, so it is canceled on the server too;
- QGIS closing (close button, Exit, the "cancel active tasks?" question on exit), the plugin being
  unloaded or reloaded: QGIS stops following; the task keeps running and "Load results" picks it up.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QEvent, QObject, QTimer

#: Set when QGIS quits or the plugin unloads: every run, now and later, leaves its task running.
QGIS_CLOSING = threading.Event()
#: How long a quit waits for the stopped runs to end before it is asked again anyway.
WAIT_FOR_RUNS = 10.0


class Run:
    """One algorithm run that may follow a task: canceled locally with `leave()`, it leaves the task running."""

    def __init__(self, cancel: Callable[[], None]):
        self.cancel = cancel
        self.left = threading.Event()

    def leave(self) -> None:
        self.left.set()
        self.cancel()

    def leaves_task_running(self) -> bool:
        return self.left.is_set() or QGIS_CLOSING.is_set()


_RUNS: set[Run] = set()
_LOCK = threading.Lock()


def begin_run(cancel: Callable[[], None]) -> Run:
    run = Run(cancel)
    with _LOCK:
        _RUNS.add(run)
    return run


def end_run(run: Run) -> None:
    with _LOCK:
        _RUNS.discard(run)


def active_runs() -> int:
    with _LOCK:
        return len(_RUNS)


def leave_all_running() -> int:
    """Stop following every run without canceling its task; how many were stopped."""
    with _LOCK:
        runs = list(_RUNS)
    for run in runs:
        run.leave()
    return len(runs)


class QuitWatcher(QObject):
    """Sees QGIS being asked to quit, before QGIS's own question where it can (see the module's text)."""

    def __init__(self, iface):
        super().__init__()
        self.window = iface.mainWindow() if iface is not None else None
        exit_action = getattr(iface, "actionExit", None)
        self.exit_action = exit_action() if callable(exit_action) else None
        self.timer: QTimer | None = None
        if self.window is not None:
            self.window.installEventFilter(self)
        if self.exit_action is not None:
            self.exit_action.installEventFilter(self)
            self.exit_action.triggered.connect(self.after_exit_action)

    def eventFilter(self, watched, event) -> bool:
        if watched is self.window and event.type() == QEvent.Type.Close:
            return self.stop_then(self.window.close)
        if watched is self.exit_action and event.type() == QEvent.Type.Shortcut:
            return self.stop_then(self.exit_action.trigger)
        return False

    def after_exit_action(self) -> None:
        """Exit chosen from the menu: QGIS has asked (or not) already; stop ours and ask to exit again."""
        self.stop_then(self.exit_action.trigger)

    def stop_then(self, again: Callable[[], None]) -> bool:
        """Stop following our runs, then call `again` once they have ended; True if the request waits."""
        if self.timer is not None:
            return True  # already stopping: this request is the same one
        busy = QgsApplication.taskManager().countActiveTasks()
        stopped = leave_all_running()
        if not stopped:
            return False
        waited = [0.0]
        self.timer = QTimer(self)

        def check() -> None:
            waited[0] += 0.1
            ended = active_runs() == 0 and QgsApplication.taskManager().countActiveTasks() <= max(0, busy - stopped)
            if ended or waited[0] >= WAIT_FOR_RUNS:
                self.timer.stop()
                self.timer = None
                again()

        self.timer.timeout.connect(check)
        self.timer.start(100)
        return True

    def close(self) -> None:
        if self.timer is not None:
            self.timer.stop()
            self.timer = None
        if self.window is not None:
            self.window.removeEventFilter(self)
        if self.exit_action is not None:
            self.exit_action.removeEventFilter(self)
            self.exit_action.triggered.disconnect(self.after_exit_action)


_WATCHER: list[QuitWatcher] = []


_QUIT_CONNECTED: list[bool] = []


def watch_for_quit(iface=None) -> None:
    """On the main thread: from initProcessing (QGIS quitting) and initGui (its window and Exit action)."""
    app = QgsApplication.instance()
    if app is not None and not _QUIT_CONNECTED:
        app.aboutToQuit.connect(QGIS_CLOSING.set)
        _QUIT_CONNECTED.append(True)
    if iface is not None and iface.mainWindow() is not None and not _WATCHER:
        _WATCHER.append(QuitWatcher(iface))


def stop_watching() -> None:
    """The plugin unloads (QGIS quits, or the plugin is reloaded): stop following, leave the tasks running."""
    leave_all_running()
    while _WATCHER:
        _WATCHER.pop().close()
