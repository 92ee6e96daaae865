"""Issue 11: the task panel opens (and reads the saved token, which may ask for the master password) only once
QGIS has started, on `iface.initializationCompleted`, never during `initGui`; a plugin enabled later opens it at
once. With auto-load on and tasks started here remembered, a closed panel starts watching then."""
from __future__ import annotations

import pytest
from qgis.core import QgsSettings
from qgis.PyQt.QtCore import QObject, pyqtSignal

from qgis_plugin import settings


class Started(QObject):
    initializationCompleted = pyqtSignal()  # noqa: N815 - QgisInterface's name


@pytest.fixture
def starting_qgis(qgis_iface, monkeypatch):
    """QGIS while it starts: its main window not shown yet, `initializationCompleted` still to come."""
    from qgis_plugin.gui.task_panel import KEY_VISIBLE, TaskPanel

    started = Started()
    monkeypatch.setattr(qgis_iface, "initializationCompleted", started.initializationCompleted, raising=False)
    for name in ("addPluginToMenu", "removePluginMenu"):
        monkeypatch.setattr(qgis_iface, name, lambda menu, action: None, raising=False)
    for name in ("addToolBarIcon", "removeToolBarIcon"):
        monkeypatch.setattr(qgis_iface, name, lambda action: None, raising=False)
    asked: list[TaskPanel] = []
    monkeypatch.setattr(TaskPanel, "refresh", lambda self: asked.append(self) or False)  # what reads the token
    qgis_iface.mainWindow().hide()
    yield started, asked
    QgsSettings().setValue(KEY_VISIBLE, False)
    QgsSettings().remove(settings.KEY_STARTED)
    QgsSettings().remove(settings.KEY_AUTO_LOAD)
    qgis_iface.mainWindow().show()


def test_a_panel_left_open_opens_after_start_up_not_during_it(starting_qgis, qgis_iface):
    from qgis_plugin import classFactory
    from qgis_plugin.gui.task_panel import KEY_VISIBLE

    started, asked = starting_qgis
    QgsSettings().setValue(KEY_VISIBLE, True)
    plugin = classFactory(qgis_iface)
    plugin.initPanel()  # what initGui does, during start-up
    try:
        assert plugin.panel is not None and not plugin.panel.isUserVisible() and asked == []
        qgis_iface.mainWindow().show()
        started.initializationCompleted.emit()
        assert plugin.panel.isUserVisible() and asked == [plugin.panel]
        started.initializationCompleted.emit()  # (once only)
        assert asked == [plugin.panel]
    finally:
        plugin.unloadPanel()


def test_a_closed_panel_watches_after_start_up_for_tasks_started_here(starting_qgis, qgis_iface):
    from qgis_plugin import classFactory
    from qgis_plugin.gui.task_panel import KEY_VISIBLE

    started, asked = starting_qgis
    QgsSettings().setValue(KEY_VISIBLE, False)
    settings.set_auto_load(True)
    settings.remember_started("0f8fad5b-d9cb-469f-a165-70867728950e")
    plugin = classFactory(qgis_iface)
    plugin.initPanel()
    try:
        assert asked == [] and not plugin.panel.timer.isActive()
        qgis_iface.mainWindow().show()
        started.initializationCompleted.emit()
        assert asked == [plugin.panel] and not plugin.panel.isUserVisible() and plugin.panel.timer.isActive()
    finally:
        plugin.unloadPanel()


def test_unloaded_before_start_up_ended_nothing_opens(starting_qgis, qgis_iface):
    from qgis_plugin import classFactory
    from qgis_plugin.gui.task_panel import KEY_VISIBLE

    started, asked = starting_qgis
    QgsSettings().setValue(KEY_VISIBLE, True)
    plugin = classFactory(qgis_iface)
    plugin.initPanel()
    plugin.unloadPanel()
    started.initializationCompleted.emit()
    assert asked == [] and plugin.panel is None
