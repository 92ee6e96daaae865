"""The settings page: server URL, token (kept in QGIS's authentication database), results folder, and a
"Test connection" that says what the server reported (asked in a worker thread: a server that does not answer
never freezes QGIS). Shown in QGIS › Options and, as a dialog, from the "Settings…" button beside each
algorithm's Server field."""
from __future__ import annotations

from qgis.gui import QgsFileWidget, QgsOptionsPageWidget, QgsOptionsWidgetFactory, QgsPasswordLineEdit
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .. import settings
from ..core.connection import Connection, proxies_for
from ..core.describe import describe_info, error_message
from ..deps import shared
from ..processing.base import ICON
from .background import Background

TEST_TIMEOUT = 10


def check_connection(url: str, token: str) -> str:
    """What the server says about itself, in words, or what went wrong. Also proves the token works:
    NodeODX answers `/info` to anyone but lists tasks only for a valid token."""
    connection = Connection(url, token, proxies_for(url, settings.proxy_settings()))
    try:
        node = connection.node(timeout=TEST_TIMEOUT)
        text = describe_info(node.info(), connection.display_url)
        tasks = node.list_tasks()
    except (shared.GenericError, ValueError) as exc:
        return error_message(exc, connection.display_url)
    return f"{text}\nThis token sees {len(tasks)} task(s)."


class SettingsWidget(QWidget):
    tested = pyqtSignal(str)  # what "Test connection" found, once shown

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.background = Background(self, "odx-relay-settings")
        self.url = QLineEdit(settings.saved_url())
        self.url.setPlaceholderText("http://relay.example.com:3000")
        self.token = QgsPasswordLineEdit()
        self.token.setText(settings.saved_token())
        self.token.setToolTip(self.tr("Kept in QGIS's authentication database, not in plain settings"))
        self.results = QgsFileWidget()
        self.results.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.results.setFilePath(str(settings.results_folder()))
        self.auto_load = QCheckBox(self.tr("Load the results of tasks started from this QGIS when they complete"))
        self.auto_load.setToolTip(self.tr("Also for tasks that completed while QGIS was closed; the task panel "
                                          "loads them when it sees them completed"))
        self.auto_load.setChecked(settings.auto_load())
        self.test_button = QPushButton(self.tr("Test connection"))
        self.test_button.clicked.connect(self.run_test)
        self.report = QLabel()
        self.report.setWordWrap(True)
        self.report.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form = QFormLayout()
        form.addRow(self.tr("Relay or node URL"), self.url)
        form.addRow(self.tr("Token"), self.token)
        form.addRow(self.tr("Results folder"), self.results)
        form.addRow("", self.auto_load)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.test_button)
        layout.addWidget(self.report)
        layout.addStretch(1)

    def run_test(self) -> bool:
        """Ask the server in a worker thread; the answer shows under the button (and `tested` says it)."""
        url, token = self.url.text().strip(), self.token.text()
        self.test_button.setEnabled(False)
        self.report.setText(self.tr("Asking {} …").format(url or self.tr("the server")))
        return self.background.submit(lambda: check_connection(url, token), self.show_test)

    def show_test(self, text: str | BaseException) -> None:
        text = error_message(text) if isinstance(text, BaseException) else text
        self.test_button.setEnabled(True)
        self.report.setText(text)
        self.tested.emit(text)

    def save(self) -> bool:
        results = self.results.filePath().strip()
        if results == str(settings.default_results_folder()):
            results = ""
        try:
            settings.save(self.url.text(), self.token.text(), results)
            settings.set_auto_load(self.auto_load.isChecked())
        except settings.TokenStoreError as exc:
            QMessageBox.warning(self, "ODX Relay", str(exc))
            return False
        return True


class SettingsPage(QgsOptionsPageWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("odx_relay")
        self.widget = SettingsWidget(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.widget)

    def apply(self) -> None:
        self.widget.save()


class SettingsPageFactory(QgsOptionsWidgetFactory):
    def __init__(self):
        super().__init__("ODX Relay", QIcon(str(ICON)))

    def createWidget(self, parent=None):
        return SettingsPage(parent)


class SettingsDialog(QDialog):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(self.tr("ODX Relay settings"))
        self.widget = SettingsWidget(self)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.widget)
        layout.addWidget(buttons)

    def accept(self) -> None:
        if self.widget.save():
            super().accept()
