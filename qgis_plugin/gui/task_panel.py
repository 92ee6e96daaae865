"""The task panel: a dock listing the tasks the configured token sees, with live progress, the cluster's
health, actions on the selected tasks, and a message-bar notice when a task ends, whoever started it.

Network work runs in a worker thread (`Background`), and only its result comes back to the main thread,
through a queued signal; the actions run the plugin's Processing algorithms as QGIS tasks
(`QgsProcessingAlgRunnerTask`), so what the panel does is what `processing.run` does.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsProcessingAlgRunnerTask,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProject,
    QgsSettings,
)
from qgis.gui import QgsDockWidget, QgsMessageBar
from qgis.PyQt.QtCore import Qt, QTimer, QUrl, pyqtSignal
from qgis.PyQt.QtGui import QDesktopServices, QGuiApplication, QIcon
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QAction,
    QComboBox,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QTableView,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from .. import settings
from ..core.connection import Connection, ConnectionError
from ..core.describe import error_message
from ..core.task_list import (
    ACTIVE,
    MAX_TASKS,
    Snapshot,
    TaskEntry,
    ended_between,
    ended_entries,
    newest_created,
    snapshot_of,
)
from ..deps import shared
from ..processing.base import ICON
from .background import Background
from .task_model import (
    CANCEL,
    ENTRY_ROLE,
    NAME,
    PROGRESS,
    CancelButtonDelegate,
    ProgressDelegate,
    StatusFilter,
    TaskTableModel,
)

TaskStatus = shared.TaskStatus
OBJECT_NAME = "odx_relay_tasks"
KEY_VISIBLE = "odx_relay/task_panel_visible"
REFRESH_MS = 3000
TICK_MS = 1000
#: While the panel is closed, once it has reached the server (so the token is unlocked): ends are still announced.
WATCH_MS = 15000
#: Against a plain node, tasks that had ended are asked for again only every so many refreshes (restarts elsewhere).
FULL_EVERY = 10
NOTICE_SECONDS = 0  # notices stay until dismissed: a task may end while the user is away
FILTERS: tuple[tuple[str, tuple[TaskStatus, ...] | None], ...] = (
    ("All tasks", None),
    ("Queued or running", ACTIVE),
    ("Completed", (TaskStatus.COMPLETED,)),
    ("Failed or canceled", (TaskStatus.FAILED, TaskStatus.CANCELED)),
)
REPORT = ("odm_report", "report.pdf")


class PanelFeedback(QgsProcessingFeedback):
    """Keeps what an algorithm run from the panel says, for the message bar."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[str] = []
        self.infos: list[str] = []

    def reportError(self, error: str, fatalError: bool = False) -> None:  # noqa: N803 - QGIS's names
        self.errors.append(error)

    def pushInfo(self, info: str) -> None:
        self.infos.append(info)


class TaskPanel(QgsDockWidget):
    """The dock. `iface` gives the message bar; `connection` is read on the main thread at each refresh."""

    refreshed = pyqtSignal(object)  # the Snapshot just shown (for tests and other widgets)

    def __init__(self, iface, parent: QWidget | None = None, interval_ms: int = REFRESH_MS,
                 connection: Callable[[], Connection] = settings.connection):
        super().__init__(parent)
        self.iface = iface
        self.connection = connection
        self.setObjectName(OBJECT_NAME)
        self.setWindowTitle(self.tr("ODX Relay tasks"))
        self.background = Background(self)
        self.refreshing = False
        self.refreshes = 0
        self.server: tuple[str, str] | None = None  # the server and token of the last refresh asked for
        self.seen: dict[str, TaskStatus] | None = None  # statuses at the last refresh (None: none yet)
        self.restarted: dict[str, float] = {}  # uuid -> when its restart was accepted (followed again since)
        self.snapshot = Snapshot()
        self.running: list[tuple] = []  # algorithm runs in flight: task, context, feedback kept alive
        self.dialogs: list[QWidget] = []

        self.model = TaskTableModel(self)
        self.proxy = StatusFilter(self)
        self.proxy.setSourceModel(self.model)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(NAME, QHeaderView.ResizeMode.Stretch)
        self.table.setItemDelegateForColumn(PROGRESS, ProgressDelegate(self.table))
        self.cancel_buttons = CancelButtonDelegate(self.table)
        self.cancel_buttons.cancel_requested.connect(lambda uuid: self.cancel_tasks([uuid]))
        self.table.setItemDelegateForColumn(CANCEL, self.cancel_buttons)
        self.table.horizontalHeader().setSectionResizeMode(CANCEL, QHeaderView.ResizeMode.ResizeToContents)
        self.table.doubleClicked.connect(lambda index: index.column() != CANCEL and self.load_results())

        self.header = QLabel(self.tr("Not connected yet"))
        self.header.setWordWrap(True)
        self.warning = QLabel()
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("QLabel { color: #b00020; font-weight: bold; }")
        self.warning.hide()
        self.filter = QComboBox()
        for label, _statuses in FILTERS:
            self.filter.addItem(self.tr(label))
        self.filter.currentIndexChanged.connect(lambda i: self.proxy.set_statuses(FILTERS[i][1]))

        self.toolbar = QToolBar()
        self.actions_by_name: dict[str, QAction] = {}
        for name, label, slot in (
                ("new", "New task…", self.new_task), ("refresh", "Refresh", self.refresh),
                ("load", "Load results", self.load_results), ("cancel", "Cancel", self.cancel_tasks),
                ("restart", "Restart", self.restart_tasks), ("remove", "Remove", self.remove_tasks),
                ("report", "Open report", self.open_report), ("copy", "Copy UUID", self.copy_uuids),
                ("console", "Console output", self.show_console)):
            action = QAction(self.tr(label), self)
            action.setObjectName(f"odx_relay_task_{name}")
            action.triggered.connect(lambda _checked=False, slot=slot: slot())
            self.actions_by_name[name] = action
            self.toolbar.addAction(action)
        self.actions_by_name["new"].setIcon(QIcon(str(ICON)))
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)  # the same actions on a right click
        self.table.addActions([a for name, a in self.actions_by_name.items() if name not in ("new", "refresh")])
        self.table.selectionModel().selectionChanged.connect(lambda *_: self.update_actions())

        top = QHBoxLayout()
        top.addWidget(self.header, 1)
        top.addWidget(self.filter)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addWidget(self.warning)
        layout.addWidget(self.toolbar)
        layout.addWidget(self.table, 1)
        self.setWidget(body)

        self.timer = QTimer(self)
        self.interval_ms = interval_ms
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.refresh)
        self.clock = QTimer(self)  # the elapsed time of running tasks ticks on between refreshes, without a request
        self.clock.setInterval(TICK_MS)
        self.clock.timeout.connect(self.model.tick)
        self.visibilityChanged.connect(self._visibility_changed)
        self.update_actions()

    # --- refresh -------------------------------------------------------------------------------
    def set_open(self, opened: bool) -> None:
        """Open or close the panel as the user asked, and remember it for the next session (a hide because
        QGIS's window closes is not the user's choice, so visibility changes alone are not remembered)."""
        QgsSettings().setValue(KEY_VISIBLE, bool(opened))
        self.setUserVisible(opened)

    def _visibility_changed(self, visible: bool) -> None:
        if visible:
            self.timer.setInterval(self.interval_ms)
            self.refresh()
            self.timer.start()
            self.clock.start()
            return
        self.clock.stop()
        if self.snapshot.health is not None or self.timer.isActive():  # closed: still watched, less often
            self.timer.setInterval(WATCH_MS)
        else:
            self.timer.stop()

    def refresh(self) -> bool:
        """Ask for one snapshot (one at a time); False if one is already on its way or no server is set."""
        if self.refreshing or self.background.closed:
            return False
        try:
            connection = self.connection()  # main thread: the token may need the master password
        except ConnectionError as exc:
            self.show_snapshot(Snapshot(error=str(exc)))
            return False
        if (connection.display_url, connection.token) != self.server:  # another server or token: start afresh
            self.server = (connection.display_url, connection.token)
            self.seen, self.snapshot = None, Snapshot()
        asked = time.monotonic()
        self.refreshes += 1
        ended = {} if self.refreshes % FULL_EVERY == 0 else {  # (used against a plain node only)
            uuid: entry for uuid, entry in ended_entries(self.snapshot).items() if uuid not in self.restarted}
        self.refreshing = self.background.submit(lambda: snapshot_of(connection, ended=ended),
                                                 lambda snapshot: self.show_snapshot(snapshot, asked))
        return self.refreshing

    def show_snapshot(self, snapshot: Snapshot | BaseException, asked: float = 0.0) -> None:
        """Show one refresh; `asked` is when it was asked for (a task restarted since is still followed)."""
        self.refreshing = False
        if isinstance(snapshot, BaseException):
            snapshot = Snapshot(error=error_message(snapshot))
        if snapshot.error:
            self.header.setText(snapshot.error)
            self.warning.hide()
        else:
            health = snapshot.health
            shown = len(snapshot.tasks)
            more = (f" · the newest {shown} of {snapshot.total} tasks" if snapshot.total > shown else
                    f" · the newest {shown} tasks" if snapshot.with_info and shown >= MAX_TASKS else "")
            self.header.setText((health.text if health else "") + more)
            self.warning.setText(health.warning if health else "")
            self.warning.setVisible(bool(health and health.warning))
            restarted = {uuid for uuid, at in self.restarted.items() if at >= asked}  # this refresh predates it
            for entry in ended_between(self.seen, snapshot.tasks, newest_created(self.snapshot.tasks)):
                if entry.uuid not in restarted:
                    self.notify_end(entry)
            self.seen = {e.uuid: TaskStatus.QUEUED if e.uuid in restarted else e.status for e in snapshot.tasks}
            chosen = [e.uuid for e in self.selected()]
            self.model.set_entries(snapshot.tasks)
            if [e.uuid for e in self.selected()] != chosen:  # rows came or went: the same tasks stay selected
                self.select(chosen)
            self.snapshot = snapshot
            self.load_started_here(snapshot)
        self.update_actions()
        self.refreshed.emit(snapshot)

    def load_started_here(self, snapshot: Snapshot) -> list[str]:
        """Tasks started from this QGIS (remembered across sessions) that have ended and that no run here follows
        any more (QGIS closed meanwhile, or the run was left): a completed one's results load, when the setting
        asks for it; either way the task is let go. The uuids loaded."""
        remembered = set(settings.started_here())
        loaded: list[str] = []
        for entry in snapshot.tasks:
            if entry.uuid not in remembered or not entry.status.is_final or settings.followed_here(entry.uuid):
                continue
            settings.forget_started(entry.uuid)
            if entry.status == TaskStatus.COMPLETED and settings.auto_load():
                self.say(self.tr("Loading the results of “{}”, started from this QGIS.").format(entry.title))
                self.load_results([entry.uuid])
                loaded.append(entry.uuid)
        return loaded

    def watch(self) -> bool:
        """Refresh now, then every WATCH_MS even while closed (for the end notices and auto-load)."""
        if not self.isUserVisible():
            self.timer.setInterval(WATCH_MS)
        self.timer.start()
        return self.refresh()

    # --- selection -----------------------------------------------------------------------------
    def selected(self) -> list[TaskEntry]:
        rows = sorted({index.row() for index in self.table.selectionModel().selectedRows()})
        return [self.proxy.index(row, 0).data(ENTRY_ROLE) for row in rows]

    def select(self, uuids: list[str]) -> None:
        """Select these tasks (for scripts and tests, as a click would)."""
        self.table.clearSelection()
        mode = self.table.selectionModel()
        for uuid in uuids:
            row = self.model.row_of(uuid)
            if row >= 0:
                index = self.proxy.mapFromSource(self.model.index(row, 0))
                mode.select(index, mode.SelectionFlag.Select | mode.SelectionFlag.Rows)
        self.update_actions()

    def update_actions(self) -> None:
        chosen = self.selected()
        any_chosen = bool(chosen)
        for name in ("load", "restart", "remove", "report", "copy", "console"):
            self.actions_by_name[name].setEnabled(any_chosen)
        self.actions_by_name["cancel"].setEnabled(any(e.status in ACTIVE for e in chosen))

    # --- actions -------------------------------------------------------------------------------
    def new_task(self):
        """The `processimages` dialog, not modal: the panel follows the task it starts."""
        import processing

        dialog = processing.createAlgorithmDialog("odxrelay:processimages")
        if dialog is not None:
            self.dialogs.append(dialog)
            dialog.show()
        return dialog

    def load_results(self, uuids: list[str] | None = None) -> None:
        """`loadresults` for each task: a task already on the map loads again into its own group (from the
        local results, nothing downloaded twice)."""
        for uuid in uuids or [e.uuid for e in self.selected()]:
            self.run_algorithm("odxrelay:loadresults", {"TASK": uuid, "WAIT": False}, load=True)

    def cancel_tasks(self, uuids: list[str] | None = None) -> None:
        """Cancel the selected tasks (or these) that are queued or running, once the user has confirmed."""
        entries = [self.entry(uuid) for uuid in uuids] if uuids is not None else self.selected()
        chosen = [e for e in entries if e is not None and e.status in ACTIVE]
        if chosen and self.confirm(self.tr("Cancel {}? Its processing stops on the server.").format(
                names(chosen))):
            for entry in chosen:
                self.run_algorithm("odxrelay:canceltask", {"TASK": entry.uuid})

    def restart_tasks(self) -> None:
        for entry in self.selected():
            self.run_algorithm("odxrelay:restarttask", {"TASK": entry.uuid, "FOLLOW": False},  # the panel follows
                               on_success=lambda uuid=entry.uuid: self.follow_again(uuid))

    def follow_again(self, uuid: str) -> None:
        """A restarted task is followed again: its next end is announced."""
        self.restarted[uuid] = time.monotonic()
        if self.seen is not None:
            self.seen[uuid] = TaskStatus.QUEUED

    def remove_tasks(self) -> None:
        chosen = self.selected()
        if chosen and self.confirm(self.tr("Remove {} from the server, with its results there? Results "
                                           "already loaded stay on this computer.").format(names(chosen))):
            for entry in chosen:
                self.run_algorithm("odxrelay:removetask", {"TASK": entry.uuid})

    def open_report(self) -> None:
        """The report of loaded results, else fetched alone (a relay serves it alone, a node in all.zip)."""
        for entry in self.selected():
            report = settings.results_folder().joinpath(entry.uuid, *REPORT)
            if report.is_file():
                self.open_file(report)
            elif entry.status != TaskStatus.COMPLETED:
                self.say(f"“{entry.title}” has no report: it is {entry.status_word}.", Qgis.MessageLevel.Info)
            else:
                self.in_background(lambda node, uuid=entry.uuid: node.get_task(uuid).download_asset(
                    REPORT[-1], reports_folder(uuid)), self.open_file)

    def open_file(self, path: Path | str | BaseException) -> None:
        if isinstance(path, BaseException):
            self.say(error_message(path), Qgis.MessageLevel.Warning)
            return
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))

    def in_background(self, work: Callable[[shared.Node], Any], callback: Callable[[Any], None]) -> bool:
        """`work(node)` in a worker thread on the server of the settings; `callback(result)` on this thread."""
        try:
            connection = self.connection()
        except ConnectionError as exc:
            self.say(str(exc), Qgis.MessageLevel.Warning)
            return False

        def run() -> Any:
            node = connection.node()
            try:
                return work(node)
            finally:
                node.session.close()
        return self.background.submit(run, callback)

    def copy_uuids(self) -> str:
        text = "\n".join(e.uuid for e in self.selected())
        QGuiApplication.clipboard().setText(text)
        return text

    def show_console(self) -> None:
        for entry in self.selected():
            self.in_background(lambda node, uuid=entry.uuid: node.get_task(uuid).output(),
                               lambda lines, entry=entry: self.console_dialog(entry, lines))

    def console_dialog(self, entry: TaskEntry, lines: list[str] | BaseException) -> QDialog:
        dialog = QDialog(self)
        dialog.setWindowTitle(self.tr("Console output of “{}”").format(entry.title))
        text = QPlainTextEdit()
        text.setReadOnly(True)
        text.setPlainText(error_message(lines) if isinstance(lines, BaseException) else "\n".join(lines))
        layout = QVBoxLayout(dialog)
        layout.addWidget(text)
        dialog.resize(700, 450)
        self.dialogs.append(dialog)
        dialog.show()
        return dialog

    # --- helpers -------------------------------------------------------------------------------
    def entry(self, uuid: str) -> TaskEntry | None:
        row = self.model.row_of(uuid)
        return self.model.entry(row) if row >= 0 else None

    def confirm(self, question: str) -> bool:
        answer = QMessageBox.question(self, "ODX Relay", question)
        return answer == QMessageBox.StandardButton.Yes

    def say(self, text: str, level: Qgis.MessageLevel = Qgis.MessageLevel.Info, duration: int = 8) -> None:
        if self.iface is not None:
            self.iface.messageBar().pushMessage("ODX Relay", text, level, duration)

    def notify_end(self, entry: TaskEntry) -> QWidget | None:
        """A notice in QGIS's message bar; a completed task's has a "Load results" button."""
        if self.iface is None:
            return None
        error = f": {entry.info.last_error}" if entry.info.last_error else ""
        item = QgsMessageBar.createMessage("ODX Relay", f"Task “{entry.title}” {entry.status_word}{error}.")
        item.setObjectName(f"odx_relay_notice_{entry.uuid}")
        if entry.status == TaskStatus.COMPLETED:
            button = QPushButton(self.tr("Load results"), item)
            button.setObjectName("odx_relay_load_results")
            button.clicked.connect(lambda _checked=False, uuid=entry.uuid: self.load_results([uuid]))
            item.layout().addWidget(button)
        level = Qgis.MessageLevel.Success if entry.status == TaskStatus.COMPLETED else Qgis.MessageLevel.Warning
        self.iface.messageBar().pushWidget(item, level, NOTICE_SECONDS)
        return item

    def run_algorithm(self, algorithm_id: str, parameters: dict, load: bool = False,
                      on_success: Callable[[], None] | None = None) -> QgsProcessingAlgRunnerTask:
        """One of the plugin's algorithms as a QGIS task; its layers load as Processing loads them."""
        algorithm = QgsApplication.processingRegistry().createAlgorithmById(algorithm_id)
        context = QgsProcessingContext()
        context.setProject(QgsProject.instance())
        feedback = PanelFeedback()
        task = QgsProcessingAlgRunnerTask(algorithm, parameters, context, feedback)
        record = (task, context, feedback, algorithm, on_success)
        self.running.append(record)
        task.executed.connect(lambda ok, results: self._algorithm_done(record, ok, load))
        QgsApplication.taskManager().addTask(task)
        return task

    def _algorithm_done(self, record: tuple, ok: bool, load: bool) -> None:
        task, context, feedback, algorithm, on_success = record
        if record in self.running:
            self.running.remove(record)
        if self.background.closed:  # the plugin unloaded meanwhile: its widgets are gone
            return
        if not ok:
            self.say(feedback.errors[-1] if feedback.errors else f"{algorithm.displayName()} failed.",
                     Qgis.MessageLevel.Critical, 0)
        elif load:
            from processing.gui.Postprocessing import handleAlgorithmResults

            handleAlgorithmResults(algorithm, context, feedback, showResults=False)
        elif feedback.infos:
            self.say(feedback.infos[-1], Qgis.MessageLevel.Success)
        if ok and on_success is not None:
            on_success()
        self.refresh()

    def closeEvent(self, event) -> None:  # the dock's own close button
        QgsSettings().setValue(KEY_VISIBLE, False)
        super().closeEvent(event)

    def shutdown(self) -> None:
        """The plugin is unloading: no more refreshes, the worker threads let go."""
        self.timer.stop()
        self.clock.stop()
        self.background.close()


def reports_folder(uuid: str) -> Path:
    """Where a report fetched alone is kept (beside the results cache, which holds whole downloads only)."""
    folder = settings.results_folder() / "reports" / uuid
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def names(entries: list[TaskEntry]) -> str:
    return ", ".join(f"“{e.title}”" for e in entries) if len(entries) <= 3 else f"{len(entries)} tasks"


def was_visible() -> bool:
    """Whether the panel was open when QGIS last closed (it opens again then)."""
    value = QgsSettings().value(KEY_VISIBLE, False)
    return str(value).lower() in ("true", "1")
