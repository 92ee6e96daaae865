"""Options chosen from the server's own `/options`: a check box for each true/false option, a drop-down for
each list of choices, a spin box within the domain's bounds for each number, a line for the rest, each with
ODM's help as its tooltip, and a filter by name. It writes `name=value` lines into the algorithm's Options
field, which stays free text for power users and scripts; the preset still applies under it."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .. import settings
from ..core.connection import Connection, ConnectionError
from ..core.describe import error_message
from ..core.option_form import NodeOption, OptionSpec, merge_text, specs, typed
from ..core.presets import parse_option_text
from .background import Background
from .dialog_only import DialogOnlyWrapper

SERVER = "SERVER"
INT_LIMIT = 2**31 - 1


def make_editor(spec: OptionSpec) -> QWidget:
    if spec.kind == "bool":
        editor = QCheckBox()
    elif spec.kind == "enum":
        editor = QComboBox()
        editor.addItems([choice or "(none)" for choice in spec.choices])
    elif spec.kind == "int":
        editor = QSpinBox()
        editor.setRange(int(max(spec.minimum, -INT_LIMIT)), int(min(spec.maximum, INT_LIMIT)))
    elif spec.kind == "float":
        editor = QDoubleSpinBox()
        places = repr(float(spec.default)).partition(".")[2]
        editor.setDecimals(min(8, max(3, len(places))))  # the server's default shown (and kept) exactly
        editor.setRange(spec.minimum, spec.maximum)
    else:
        editor = QLineEdit()
    editor.setToolTip(spec.help)
    return editor


def editor_value(spec: OptionSpec, editor: QWidget) -> Any:
    if spec.kind == "bool":
        return editor.isChecked()
    if spec.kind == "enum":
        return spec.choices[editor.currentIndex()]
    if spec.kind in ("int", "float"):
        return editor.value()
    return editor.text()


def set_editor_value(spec: OptionSpec, editor: QWidget, value: Any) -> None:
    if spec.kind == "bool":
        editor.setChecked(bool(value))
    elif spec.kind == "enum":
        editor.setCurrentIndex(spec.choices.index(str(value)) if str(value) in spec.choices else 0)
    elif spec.kind in ("int", "float"):
        editor.setValue(value)
    else:
        editor.setText(str(value))


class OptionsDialog(QDialog):
    """The server's options, set to the server's defaults overridden by `current` (the Options text so far)."""

    def __init__(self, options: Iterable[NodeOption], current: Mapping[str, Any], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(self.tr("Task options from the server"))
        self.current = dict(current)
        self.rows: dict[str, tuple[OptionSpec, QLabel, QWidget]] = {}
        layout = QVBoxLayout(self)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText(self.tr("Filter by name, for example dsm or quality"))
        self.filter.textChanged.connect(self.apply_filter)
        layout.addWidget(self.filter)
        form_widget = QWidget()
        form = QFormLayout(form_widget)
        for option_spec in specs(options):
            label, editor = QLabel(option_spec.name), make_editor(option_spec)
            label.setToolTip(option_spec.help)
            chosen = option_spec.name in self.current
            value = typed(option_spec, self.current[option_spec.name]) if chosen else option_spec.default
            set_editor_value(option_spec, editor, value)
            if chosen:
                label.setText(f"<b>{option_spec.name}</b>")
            form.addRow(label, editor)
            self.rows[option_spec.name] = (option_spec, label, editor)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(form_widget)
        layout.addWidget(scroll, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(560, 640)

    def editor(self, name: str) -> QWidget:
        return self.rows[name][2]

    def apply_filter(self, text: str) -> None:
        needle = text.strip().lower()
        for name, (_, label, editor) in self.rows.items():
            visible = needle in name.lower()
            label.setVisible(visible)
            editor.setVisible(visible)

    def chosen(self) -> dict[str, Any]:
        """Options set away from the server's default, and those the Options text named, in name order."""
        out = {}
        for name, (option_spec, _, editor) in self.rows.items():
            value = editor_value(option_spec, editor)
            if name in self.current or value != option_spec.default:
                out[name] = value
        return out


def read_options(connection: Connection, timeout: float = 15) -> list[NodeOption]:
    """The server's `/options` (in a worker thread)."""
    node = connection.node(timeout=timeout)
    try:
        return node.options()
    finally:
        node.session.close()


class OptionsWidgetWrapper(DialogOnlyWrapper):
    """The Options field: free `name=value` text, and a button that opens the server's options as widgets."""

    def createWidget(self):
        self.server = None
        widget = QWidget()
        layout = QHBoxLayout(widget)
        layout.setContentsMargins(0, 0, 0, 0)
        self.text = QPlainTextEdit()
        self.text.setPlaceholderText("dsm=true\npc-quality=high")
        self.text.setMaximumHeight(90)
        self.button = QPushButton(self.tr("Choose…"))
        self.button.setToolTip(self.tr("The server's options as check boxes, lists and numbers, with their help"))
        self.button.clicked.connect(self.choose)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.button, 0, Qt.AlignmentFlag.AlignTop)
        self.background = Background(widget, "odx-relay-options")
        return widget

    def postInitialize(self, wrappers):
        self.server = next((w for w in wrappers if w.parameterDefinition().name() == SERVER), None)

    def connection(self) -> Connection:
        """The Server field's server, else the saved one (main thread: the token may need the master password)."""
        url = self.server.value() if self.server is not None else ""
        return settings.connection(url or "")

    def open_dialog(self, options: list[NodeOption]) -> OptionsDialog:
        try:
            current = parse_option_text(self.text.toPlainText())
        except ValueError:
            current = {}
        return OptionsDialog(options, current, self.widget)

    def apply(self, dialog: OptionsDialog) -> None:
        self.text.setPlainText(merge_text(self.text.toPlainText(), dialog.chosen(), dialog.rows))

    def choose(self) -> bool:
        """Ask the server for its options in a worker thread; `offer` opens the dialog with them."""
        try:
            connection = self.connection()
        except ConnectionError as exc:
            QMessageBox.warning(self.widget, self.tr("Options"), str(exc))
            return False
        self.button.setEnabled(False)
        self.button.setText(self.tr("Asking…"))
        return self.background.submit(lambda: read_options(connection), self.offer)

    def offer(self, options: list[NodeOption] | BaseException) -> OptionsDialog | None:
        self.button.setEnabled(True)
        self.button.setText(self.tr("Choose…"))
        if isinstance(options, BaseException):  # any failure to reach the server is told, not raised in the UI
            QMessageBox.warning(self.widget, self.tr("Options"),
                                self.tr("Cannot read the server's options: {}").format(error_message(options)))
            return None
        if not options:
            QMessageBox.warning(self.widget, self.tr("Options"), self.tr("The server lists no options (a relay "
                                                                         "with no node online lists none)."))
            return None
        dialog = self.open_dialog(options)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.apply(dialog)
        dialog.deleteLater()
        return dialog

    def setValue(self, value):
        self.text.setPlainText("" if value is None else str(value))

    def value(self):
        return self.text.toPlainText()
