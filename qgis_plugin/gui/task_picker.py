"""The Task field of the algorithms that act on a task (load results, cancel, restart, remove) in their dialog
and batch runs: an editable drop-down listing the server's newest tasks as `name · status · short uuid`, asked
for in a worker thread when the dialog opens (and again with the button beside it, or when the Server field
changes). Choosing one gives its uuid; a uuid typed or pasted is taken as it is, so scripts, `processing.run` and
`qgis_process`, which never see this widget, pass the uuid as before. The model designer gets QGIS's own text
field (`DialogOnlyWrapper`), which can take a model input."""
from __future__ import annotations

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QComboBox, QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from .. import settings
from ..core.connection import ConnectionError
from ..core.describe import STATUS_WORDS, error_message
from ..core.task_list import TaskEntry, fetch_entries, matches, picker_label
from ..deps import shared
from .background import Background
from .dialog_only import DialogOnlyWrapper

SERVER = "SERVER"


class TaskPickerWidgetWrapper(DialogOnlyWrapper):
    """`statuses` (from the parameter's metadata): the status codes of the tasks worth listing (None: all)."""

    def createWidget(self, statuses=None, **kwargs):
        self.statuses = tuple(shared.TaskStatus(s) for s in statuses) if statuses else None
        self.server = None
        self.asked = 0
        self.entries: list[TaskEntry] | None = None  # what the server listed (None: not answered yet)
        widget = QWidget()
        layout = QVBoxLayout(widget)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.combo = QComboBox()
        self.combo.setEditable(True)
        self.combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.combo.lineEdit().setPlaceholderText(self.tr("Choose a task, or type its uuid"))
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setMinimumContentsLength(36)
        self.reload = QToolButton()
        self.reload.setText("⟳")
        self.reload.setToolTip(self.tr("Ask the server for its tasks again"))
        self.reload.clicked.connect(lambda _checked=False: self.fill())
        row.addWidget(self.combo, 1)
        row.addWidget(self.reload)
        self.note = QLabel()
        self.note.setWordWrap(True)
        layout.addLayout(row)
        layout.addWidget(self.note)
        self.background = Background(widget, "odx-relay-picker")
        return widget

    def postInitialize(self, wrappers):
        self.server = next((w for w in wrappers if w.parameterDefinition().name() == SERVER), None)
        line = getattr(self.server, "line", None)  # our Server field: a QLineEdit
        if line is not None:
            line.editingFinished.connect(self.fill)
        self.fill()

    def fill(self) -> bool:
        """Ask the server of the Server field (else the saved one) for its tasks; False if none is set."""
        url = self.server.value() if self.server is not None else ""
        try:
            connection = settings.connection(url or "")  # main thread: the token may need the master password
        except ConnectionError as exc:
            self.note.setText(str(exc))
            return False
        self.asked += 1
        asked = self.asked
        self.note.setText(self.tr("Asking {} for its tasks…").format(connection.display_url))
        return self.background.submit(lambda: fetch_entries(connection),
                                      lambda result: self.show_tasks(result, asked, connection.display_url))

    def show_tasks(self, result: list[TaskEntry] | BaseException, asked: int, url: str) -> None:
        if asked != self.asked:  # a newer question is on its way
            return
        if isinstance(result, BaseException):
            self.note.setText(error_message(result, url))
            return
        typed = self.value()
        entries = [e for e in result if matches(e, self.statuses)]
        self.combo.blockSignals(True)
        self.combo.clear()
        for entry in entries:
            self.combo.addItem(picker_label(entry), entry.uuid)
            self.combo.setItemData(self.combo.count() - 1, entry.uuid, Qt.ItemDataRole.ToolTipRole)
        self.setValue(typed)
        self.combo.blockSignals(False)
        self.entries = entries
        which = "" if self.statuses is None else " or ".join(STATUS_WORDS[s] for s in self.statuses) + " "
        self.note.setText(self.tr("{} {}task(s) on {}, newest first").format(len(entries), which, url))

    def setValue(self, value):
        text = "" if value is None else str(value).strip()
        index = self.combo.findData(text) if text else -1
        self.combo.setCurrentIndex(index)
        if index < 0:
            self.combo.setEditText(text)

    def value(self):
        """The chosen task's uuid, else what was typed (a uuid, checked when the algorithm runs)."""
        text = self.combo.currentText().strip()
        index = self.combo.findText(text)
        return str(self.combo.itemData(index)) if index >= 0 and text else text
