"""The plugin object QGIS creates: registers the Processing provider and the settings page."""
from __future__ import annotations

from qgis.core import QgsApplication

from .processing.closing import stop_watching, watch_for_quit
from .processing.provider import OdxRelayProvider


class ODXRelayPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider: OdxRelayProvider | None = None
        self.options_factory = None
        self.panel = None  # the task panel (gui/task_panel.py) and its menu/toolbar action
        self.panel_action = None
        self.waiting_for_start = None  # (signal, slot) while the panel waits for QGIS to finish starting

    def initProcessing(self) -> None:
        if self.provider is None:
            watch_for_quit()
            self.provider = OdxRelayProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:
        self.initProcessing()
        watch_for_quit(self.iface)  # closing QGIS stops following tasks, never cancels them on the server
        if self.iface is not None:
            from .gui.settings_widget import SettingsPageFactory
            self.options_factory = SettingsPageFactory()
            self.iface.registerOptionsWidgetFactory(self.options_factory)
            self.initPanel()

    def initPanel(self) -> None:
        """The task panel: a dock, opened from the plugin menu and a toolbar button, open again next time (once
        QGIS has started)."""
        from qgis.PyQt.QtCore import Qt
        from qgis.PyQt.QtGui import QIcon
        from qgis.PyQt.QtWidgets import QAction

        from .gui.task_panel import TaskPanel
        from .processing.base import ICON

        self.panel = TaskPanel(self.iface, self.iface.mainWindow())
        self.panel.hide()
        self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.panel)
        self.panel_action = QAction(QIcon(str(ICON)), "ODX Relay tasks", self.iface.mainWindow())
        self.panel_action.setObjectName("odx_relay_show_tasks")
        self.panel_action.setCheckable(True)
        self.panel_action.triggered.connect(self.panel.set_open)
        self.panel.visibilityChanged.connect(self.panel_action.setChecked)
        self.iface.addPluginToMenu("ODX Relay", self.panel_action)
        self.iface.addToolBarIcon(self.panel_action)
        self.after_start(self.open_saved_panel)

    def after_start(self, then) -> None:
        """Call `then` once QGIS has started: opening the panel reads the saved token, which may ask for the
        master password, and that must not interrupt QGIS's start-up. While QGIS starts, the plugins' initGui
        runs before the main window shows and `initializationCompleted` comes last; a plugin enabled later
        (its window already shown) opens its panel at once."""
        window = self.iface.mainWindow()
        started = getattr(self.iface, "initializationCompleted", None)
        if started is None or window is None or window.isVisible():
            then()
            return
        started.connect(then)
        self.waiting_for_start = (started, then)

    def open_saved_panel(self) -> None:
        """The panel as it was left: open again if it was open; else, if tasks started here may need their
        results loaded (auto-load), watched while closed."""
        from . import settings
        from .gui.task_panel import was_visible

        self.stop_waiting_for_start()
        if self.panel is None:
            return
        if was_visible():
            self.panel.setUserVisible(True)
        elif settings.auto_load() and settings.started_here():
            self.panel.watch()

    def stop_waiting_for_start(self) -> None:
        if self.waiting_for_start is not None:
            signal, slot = self.waiting_for_start
            self.waiting_for_start = None
            try:
                signal.disconnect(slot)
            except TypeError:  # (already disconnected)
                pass

    def unloadPanel(self) -> None:
        self.stop_waiting_for_start()
        if self.panel_action is not None:
            self.iface.removePluginMenu("ODX Relay", self.panel_action)
            self.iface.removeToolBarIcon(self.panel_action)
            self.panel_action = None
        if self.panel is not None:
            self.panel.shutdown()
            self.iface.removeDockWidget(self.panel)
            self.panel.deleteLater()
            self.panel = None

    def unload(self) -> None:
        self.unloadPanel()
        stop_watching()  # runs still following a task stop here; the tasks keep running on the server
        if self.options_factory is not None:
            self.iface.unregisterOptionsWidgetFactory(self.options_factory)
            self.options_factory = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
