"""The algorithms' Server field: an address (empty means the saved server) and a "Settings…" button,
so the settings page is one click away from every algorithm dialog."""
from __future__ import annotations

from processing.gui.wrappers import WidgetWrapper
from qgis.PyQt.QtWidgets import QHBoxLayout, QLineEdit, QPushButton, QWidget

from .. import settings
from .settings_widget import SettingsDialog


class ServerWidgetWrapper(WidgetWrapper):
    def createWidget(self):
        widget = QWidget()
        layout = QHBoxLayout(widget)
        layout.setContentsMargins(0, 0, 0, 0)
        self.line = QLineEdit()
        self.show_saved_url()
        button = QPushButton(self.tr("Settings…"))
        button.clicked.connect(self.open_settings)
        layout.addWidget(self.line, 1)
        layout.addWidget(button)
        return widget

    def show_saved_url(self) -> None:
        saved = settings.saved_url()
        self.line.setPlaceholderText(saved + " (from Settings)" if saved else "http://relay.example.com:3000")

    def open_settings(self) -> None:
        SettingsDialog(self.widget).exec()
        self.show_saved_url()

    def setValue(self, value):
        self.line.setText("" if value is None else str(value))

    def value(self):
        return self.line.text().strip()
