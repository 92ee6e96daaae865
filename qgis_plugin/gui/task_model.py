"""The task panel's table: one row per task (name, status, progress, elapsed time, images, node), kept in
place across refreshes so a selection survives, and a proxy that filters by status.

Rows change only on the main thread, from a `Snapshot` a worker fetched (`core/task_list.py`).
"""
from __future__ import annotations

from qgis.PyQt.QtCore import QAbstractTableModel, QEvent, QModelIndex, QSortFilterProxyModel, Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QApplication,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionButton,
    QStyleOptionProgressBar,
)

from ..core.describe import duration
from ..core.task_list import ACTIVE, TaskEntry, matches
from ..deps import shared

TaskStatus = shared.TaskStatus
COLUMNS = ("Name", "Status", "Progress", "Elapsed", "Images", "Node", "")
NAME, STATUS, PROGRESS, ELAPSED, IMAGES, NODE, CANCEL = range(len(COLUMNS))
CANCEL_TEXT = "Cancel"
#: The role that gives a row's TaskEntry (for actions and tests).
ENTRY_ROLE = Qt.ItemDataRole.UserRole + 1
#: The progress as a number 0-100, for the progress bar delegate.
PROGRESS_ROLE = Qt.ItemDataRole.UserRole + 2


class TaskTableModel(QAbstractTableModel):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.entries: list[TaskEntry] = []

    # --- updates (main thread) -----------------------------------------------------------------
    def set_entries(self, entries: list[TaskEntry]) -> None:
        """Replace the rows; a task that stays in the same place is updated in place (keeps the selection)."""
        if [e.uuid for e in entries] == [e.uuid for e in self.entries]:
            self.entries = list(entries)
            if entries:
                self.dataChanged.emit(self.index(0, 0), self.index(len(entries) - 1, len(COLUMNS) - 1))
            return
        self.beginResetModel()
        self.entries = list(entries)
        self.endResetModel()

    def tick(self) -> bool:
        """Once a second (no request): the elapsed time of queued and running tasks is drawn anew."""
        rows = [row for row, e in enumerate(self.entries) if e.status in ACTIVE]
        if rows:
            self.dataChanged.emit(self.index(rows[0], ELAPSED), self.index(rows[-1], ELAPSED),
                                  [Qt.ItemDataRole.DisplayRole])
        return bool(rows)

    def entry(self, row: int) -> TaskEntry:
        return self.entries[row]

    def row_of(self, uuid: str) -> int:
        return next((i for i, e in enumerate(self.entries) if e.uuid == uuid), -1)

    # --- QAbstractTableModel -------------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self.entries)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.tr(COLUMNS[section])
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or index.row() >= len(self.entries):
            return None
        entry = self.entries[index.row()]
        column = index.column()
        if role == ENTRY_ROLE:
            return entry
        if role == PROGRESS_ROLE:
            return float(entry.info.progress)
        if role == Qt.ItemDataRole.ToolTipRole and column == CANCEL:
            return self.tr("Cancel this task on the server (asks first)") if entry.status in ACTIVE else None
        if role == Qt.ItemDataRole.ToolTipRole:
            error = f"\n{entry.info.last_error}" if entry.info.last_error else ""
            return f"{entry.uuid}{error}"
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if column == NAME:
            return entry.title
        if column == STATUS:
            return entry.status_word
        if column == PROGRESS:
            return f"{entry.info.progress:.0f} %"
        if column == ELAPSED:
            elapsed = entry.elapsed_ms()
            return duration(elapsed) if elapsed else ""
        if column == IMAGES:
            return entry.info.images_count
        if column == NODE:
            return entry.node or ""
        return None  # CANCEL: drawn as a button (CancelButtonDelegate)


class StatusFilter(QSortFilterProxyModel):
    """Shows the tasks whose status is one of `statuses` (None: all); keeps the source's order."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.statuses: tuple[TaskStatus, ...] | None = None

    def set_statuses(self, statuses: tuple[TaskStatus, ...] | None) -> None:
        self.statuses = statuses
        self.invalidateFilter()

    def filterAcceptsRow(self, source_row, source_parent) -> bool:
        model = self.sourceModel()
        return isinstance(model, TaskTableModel) and matches(model.entry(source_row), self.statuses)


class ProgressDelegate(QStyledItemDelegate):
    """The Progress column drawn as a progress bar."""

    def paint(self, painter, option, index) -> None:
        value = index.data(PROGRESS_ROLE)
        if value is None:
            super().paint(painter, option, index)
            return
        bar = QStyleOptionProgressBar()
        bar.rect = option.rect.adjusted(2, 2, -2, -2)
        bar.minimum, bar.maximum, bar.progress = 0, 100, int(value)
        bar.text, bar.textVisible = f"{value:.0f} %", True
        QApplication.style().drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter)


class CancelButtonDelegate(QStyledItemDelegate):
    """A "Cancel" button in the row of each queued or running task; a click asks for that task's cancel
    (`cancel_requested`, with its uuid: the panel confirms first)."""

    cancel_requested = pyqtSignal(str)

    def button(self, option, index) -> QStyleOptionButton | None:
        entry = index.data(ENTRY_ROLE)
        if entry is None or entry.status not in ACTIVE:
            return None
        button = QStyleOptionButton()
        button.rect = option.rect.adjusted(2, 1, -2, -1)
        button.text = self.tr(CANCEL_TEXT)
        button.state = QStyle.StateFlag.State_Enabled
        return button

    def paint(self, painter, option, index) -> None:
        super().paint(painter, option, index)
        button = self.button(option, index)
        if button is not None:
            QApplication.style().drawControl(QStyle.ControlElement.CE_PushButton, button, painter)

    def sizeHint(self, option, index):
        hint = super().sizeHint(option, index)
        width = option.fontMetrics.horizontalAdvance(self.tr(CANCEL_TEXT)) + 24
        hint.setWidth(max(hint.width(), width))
        return hint

    def editorEvent(self, event, model, option, index) -> bool:
        if event.type() != QEvent.Type.MouseButtonRelease or event.button() != Qt.MouseButton.LeftButton:
            return False
        button = self.button(option, index)
        where = event.position().toPoint() if hasattr(event, "position") else event.pos()  # Qt 6, Qt 5
        if button is None or not button.rect.contains(where):
            return False
        self.cancel_requested.emit(index.data(ENTRY_ROLE).uuid)
        return True
