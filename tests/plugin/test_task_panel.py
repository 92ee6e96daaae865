"""The task panel (a dock) in real headless QGIS, against a relay with two development nodes: it lists the
token's tasks with rising progress and the cluster's health, filters them, drives load/cancel/remove through
its own actions, and announces in the message bar the end of a task started outside QGIS by
pyodx."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from qgis.core import QgsProject
from qgis.PyQt.QtWidgets import QPlainTextEdit, QPushButton

from qgis_plugin.core.connection import Connection
from qgis_plugin.deps import shared
from testkit.devnode import start_devnode
from testkit.relay import start_relay
from testkit.servers import ServerGroup
from tests.plugin.plugin_helpers import FAST, refreshed, wait_for

pytestmark = pytest.mark.usefixtures("odx_provider", "fast_polls")
TaskStatus = shared.TaskStatus
TOKEN = "panel-token"


@pytest.fixture(scope="module")
def relay(tmp_path_factory) -> Iterator:
    tmp = tmp_path_factory.mktemp("panel-relay")
    with ServerGroup(tmp) as group:
        fast = group.start(start_devnode, slots=2, **FAST)
        slow = group.start(start_devnode, slots=2, seconds_per_image=0.4)
        yield group.add(start_relay(tmp, [fast.url, slow.url], token=TOKEN, check_interval=0.3))


@pytest.fixture
def panel(relay, qgis_iface, tmp_path, monkeypatch):
    from qgis_plugin import settings
    from qgis_plugin.gui.task_panel import TaskPanel

    monkeypatch.setattr(settings, "results_folder", lambda: tmp_path / "results")
    monkeypatch.setenv("ODX_RELAY_URL", relay.url)
    monkeypatch.setenv("ODX_RELAY_TOKEN", TOKEN)  # the same settings as the algorithms: here, the environment
    qgis_iface.messageBar().clearWidgets()
    dock = TaskPanel(qgis_iface, qgis_iface.mainWindow(), interval_ms=200)
    dock.confirmations = []
    monkeypatch.setattr(dock, "confirm", lambda question: dock.confirmations.append(question) or True)
    yield dock
    dock.shutdown()
    wait_for(lambda: not dock.running, what="the panel's algorithm runs to end")
    dock.deleteLater()


def row_of(panel, uuid: str):
    return panel.entry(uuid)


def notices(qgis_iface) -> dict[str, object]:
    return {item.objectName(): item for item in qgis_iface.messageBar().items()
            if item.objectName().startswith("odx_relay_notice_")}


def test_the_panel_lists_tasks_with_rising_progress_the_health_and_a_filter(panel, relay,
                                                                           sample_images: list[Path]):
    client = shared.Node.from_url(relay.url, token=TOKEN)
    done = client.create_task(sample_images[:2], name="finished before")
    done.wait_for_completion(interval=0.1)
    snapshot = refreshed(panel)
    assert snapshot.error == "" and snapshot.with_info
    assert panel.objectName() == "odx_relay_tasks"
    assert "Nodes online: 2/2" in panel.header.text() and panel.warning.isHidden()

    pyodx = pytest.importorskip("pyodx")
    outside = pyodx.Node("127.0.0.1", relay.port, TOKEN).create_task(  # by pyodx, outside QGIS
        [str(p) for p in sample_images], name="started outside QGIS")
    progress = []
    while True:
        refreshed(panel)
        entry = row_of(panel, outside.uuid)
        assert entry is not None
        progress.append(entry.info.progress)
        if entry.status.is_final:
            break
    assert entry.status == TaskStatus.COMPLETED
    assert progress == sorted(progress) and progress[-1] == 100 and len(set(progress)) > 2, progress
    assert panel.model.entries[0].uuid == outside.uuid  # newest first
    assert panel.proxy.index(0, 0).data() == "started outside QGIS" and panel.proxy.index(0, 5).data()

    notice = notices(panel.iface).get(f"odx_relay_notice_{outside.uuid}")
    assert notice is not None and "started outside QGIS" in notice.text() and "completed" in notice.text()
    assert f"odx_relay_notice_{done.uuid}" not in notices(panel.iface)  # it had ended before the panel saw it
    button = notice.findChild(QPushButton, "odx_relay_load_results")
    assert button is not None

    panel.filter.setCurrentIndex(1)  # queued or running
    assert panel.proxy.rowCount() == 0
    panel.filter.setCurrentIndex(2)  # completed
    assert panel.proxy.rowCount() == panel.model.rowCount() >= 2
    panel.filter.setCurrentIndex(0)

    QgsProject.instance().clear()
    button.click()  # the notice's "Load results"
    group = wait_for(lambda: QgsProject.instance().layerTreeRoot().findGroup("started outside QGIS"), 60,
                     "the results to load")
    assert {layer.name() for layer in group.findLayers()} >= {"Orthophoto", "DSM (surface)"}
    layers = len(QgsProject.instance().mapLayers())
    panel.select([outside.uuid])
    panel.actions_by_name["load"].trigger()  # already on the map: loaded again into its own group
    wait_for(lambda: not panel.running)
    root = QgsProject.instance().layerTreeRoot()
    assert len(QgsProject.instance().mapLayers()) == layers
    assert [g.name() for g in root.findGroups(True)].count("started outside QGIS") == 1
    QgsProject.instance().clear()


def test_cancel_and_remove_through_the_panels_actions(panel, relay, sample_images: list[Path]):
    client = shared.Node.from_url(relay.url, token=TOKEN)
    slow = [client.create_task(sample_images, name=f"slow {i}") for i in range(3)]
    refreshed(panel)
    running = wait_for(lambda: [t for t in slow if (e := refreshed(panel) and row_of(panel, t.uuid))
                                and e.status == TaskStatus.RUNNING], 30, "a running task")
    target = running[0]
    panel.select([target.uuid])
    assert panel.actions_by_name["cancel"].isEnabled()
    panel.actions_by_name["cancel"].trigger()
    assert panel.confirmations and "slow" in panel.confirmations[-1]
    wait_for(lambda: client.get_task(target.uuid).info().status == TaskStatus.CANCELED, 30, "the cancel")
    wait_for(lambda: refreshed(panel) and row_of(panel, target.uuid).status == TaskStatus.CANCELED, 30)
    panel.select([target.uuid])
    assert not panel.actions_by_name["cancel"].isEnabled()  # only queued or running tasks

    assert panel.copy_uuids() == target.uuid
    panel.actions_by_name["remove"].trigger()
    assert f"“{row_of(panel, target.uuid).title}”" in panel.confirmations[-1]
    wait_for(lambda: target.uuid not in client.list_tasks(), 30, "the removal")
    wait_for(lambda: refreshed(panel) and row_of(panel, target.uuid) is None, 30)
    for task in slow[1:]:
        if not task.info().status.is_final:  # (one placed on the fast node may have completed already)
            task.cancel()


def test_no_node_online_is_a_clear_warning(qgis_iface, tmp_path_factory):
    from qgis_plugin.gui.task_panel import TaskPanel

    tmp = tmp_path_factory.mktemp("nodeless")
    with ServerGroup(tmp) as group:
        lonely = group.add(start_relay(tmp, ["http://127.0.0.1:9"], check_interval=0.3))
        dock = TaskPanel(qgis_iface, None, connection=lambda: Connection(lonely.url))
        try:
            snapshot = refreshed(dock)
            assert snapshot.health.online == 0 and not dock.warning.isHidden()
            assert "No node is online" in dock.warning.text() and "0/1" in dock.header.text()
        finally:
            dock.shutdown()
            dock.deleteLater()


def test_no_server_set_says_where_to_set_it(qgis_iface, monkeypatch):
    from qgis_plugin import settings
    from qgis_plugin.gui.task_panel import TaskPanel

    monkeypatch.delenv("ODX_RELAY_URL", raising=False)
    monkeypatch.setattr(settings, "saved_url", lambda: "")
    dock = TaskPanel(qgis_iface, None)
    try:
        assert dock.refresh() is False and "No server set" in dock.header.text()
    finally:
        dock.shutdown()
        dock.deleteLater()


def test_the_plugin_opens_the_panel_from_its_menu_and_remembers_it(qgis_iface, monkeypatch):
    from qgis.core import QgsSettings
    from qgis.PyQt.QtWidgets import QDockWidget

    from qgis_plugin import classFactory
    from qgis_plugin.gui.task_panel import KEY_VISIBLE, TaskPanel

    monkeypatch.setattr(TaskPanel, "refresh", lambda self: False)  # no server here: only the dock's life
    menus, icons = [], []
    monkeypatch.setattr(qgis_iface, "addPluginToMenu", lambda menu, action: menus.append((menu, action)))
    monkeypatch.setattr(qgis_iface, "addToolBarIcon", icons.append)
    monkeypatch.setattr(qgis_iface, "removePluginMenu", lambda menu, action: menus.remove((menu, action)),
                        raising=False)
    monkeypatch.setattr(qgis_iface, "removeToolBarIcon", icons.remove)
    QgsSettings().setValue(KEY_VISIBLE, False)
    qgis_iface.mainWindow().show()  # (offscreen) a dock shows only in a shown window, as in QGIS
    plugin = classFactory(qgis_iface)
    plugin.initPanel()
    try:
        [(menu, action)] = menus
        assert menu == "ODX Relay" and icons == [action] and action.text() == "ODX Relay tasks"
        dock = qgis_iface.mainWindow().findChild(QDockWidget, "odx_relay_tasks")
        assert dock is plugin.panel and not dock.isUserVisible()
        action.trigger()
        assert dock.isUserVisible() and action.isChecked()
        assert str(QgsSettings().value(KEY_VISIBLE)).lower() == "true"
        qgis_iface.mainWindow().hide()  # QGIS's window closing hides the dock: not the user closing it
        assert not action.isChecked() and str(QgsSettings().value(KEY_VISIBLE)).lower() == "true"
    finally:
        plugin.unloadPanel()
    assert menus == [] and icons == [] and plugin.panel is None
    qgis_iface.mainWindow().show()
    plugin.initPanel()  # next session: open again, as it was left
    try:
        assert plugin.panel.isUserVisible() and plugin.panel_action.isChecked()
        plugin.panel.close()  # the dock's close button: closed next time
        assert str(QgsSettings().value(KEY_VISIBLE)).lower() == "false"
    finally:
        plugin.unloadPanel()
        QgsSettings().setValue(KEY_VISIBLE, False)


def test_restart_follows_the_task_again_and_console_and_new_task(panel, relay, qgis_iface, sample_images, monkeypatch):
    from qgis.gui import QgsBrowserGuiModel

    client = shared.Node.from_url(relay.url, token=TOKEN)
    task = client.create_task(sample_images[:3], name="again")
    task.wait_for_completion(interval=0.1)
    refreshed(panel)
    panel.select([task.uuid])
    panel.actions_by_name["restart"].trigger()
    notice = f"odx_relay_notice_{task.uuid}"
    wait_for(lambda: refreshed(panel) and notice in notices(qgis_iface), 60, "the restarted task's end")
    assert client.get_task(task.uuid).info().status == TaskStatus.COMPLETED

    panel.select([task.uuid])
    panel.actions_by_name["console"].trigger()
    dialog = wait_for(lambda: [d for d in panel.dialogs if "again" in d.windowTitle()], 30, "the console")[0]
    assert dialog.findChild(QPlainTextEdit).toPlainText().strip()

    browser = QgsBrowserGuiModel()  # the dialog asks the interface for one; pytest-qgis's stub has none
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: browser, raising=False)
    new = panel.new_task()
    assert new is not None and new.algorithm().id() == "odxrelay:processimages" and new.isVisible()
    new.close()
    for opened in panel.dialogs:
        opened.deleteLater()


def test_a_closed_panel_still_announces_ends(panel, relay, qgis_iface, sample_images, monkeypatch):
    import qgis_plugin.gui.task_panel as task_panel

    monkeypatch.setattr(task_panel, "WATCH_MS", 300)
    shown: list = []
    panel.refreshed.connect(shown.append)
    panel.show()  # (a floating dock here) opened: refreshed at once, then every interval
    wait_for(lambda: shown, 30, "the first refresh")
    panel.close()
    assert panel.timer.isActive() and panel.timer.interval() == 300
    task = shared.Node.from_url(relay.url, token=TOKEN).create_task(sample_images[:2], name="while closed")
    wait_for(lambda: f"odx_relay_notice_{task.uuid}" in notices(qgis_iface), 60, "the notice")


def test_open_report_fetches_the_report_alone_when_results_are_not_loaded(panel, relay, sample_images, monkeypatch):
    import qgis_plugin.gui.task_panel as task_panel

    opened: list = []
    monkeypatch.setattr(task_panel.QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()))
    task = shared.Node.from_url(relay.url, token=TOKEN).create_task(sample_images[:2], name="reported")
    task.wait_for_completion(interval=0.1)
    refreshed(panel)
    panel.select([task.uuid])
    panel.actions_by_name["report"].trigger()
    wait_for(lambda: opened, 30, "the report")
    assert opened[0].endswith("report.pdf") and Path(opened[0]).read_bytes().startswith(b"%PDF")


def test_against_a_plain_nodeodx_node(qgis_iface, nodeodx_factory, sample_images):
    from qgis_plugin.gui.task_panel import TaskPanel

    real = nodeodx_factory()
    task = shared.Node.from_url(real.url).create_task(sample_images[:3], name="on a plain node")
    dock = TaskPanel(qgis_iface, None, connection=lambda: Connection(real.url))
    try:
        snapshot = refreshed(dock)
        assert snapshot.error == "" and not snapshot.with_info
        assert [(e.uuid, e.node) for e in dock.model.entries] == [(task.uuid, None)]
        assert dock.header.text().startswith("NodeODX node") and dock.warning.isHidden()
        task.wait_for_completion(interval=0.2)
        wait_for(lambda: refreshed(dock) and f"odx_relay_notice_{task.uuid}" in notices(qgis_iface), 60)
    finally:
        dock.shutdown()
        dock.deleteLater()


def test_selection_survives_new_tasks_and_another_server_starts_afresh(panel, relay, qgis_iface, devnode_factory,
                                                                       sample_images):
    client = shared.Node.from_url(relay.url, token=TOKEN)
    first = client.create_task(sample_images[:2], name="selected")
    refreshed(panel)
    panel.select([first.uuid])
    client.create_task(sample_images[:2], name="newcomer")
    refreshed(panel)
    assert [e.uuid for e in panel.selected()] == [first.uuid] and panel.model.entries[0].title == "newcomer"

    other = devnode_factory(slots=1, **FAST)
    old = shared.Node.from_url(other.url).create_task(sample_images[:2], name="ended elsewhere")
    old.wait_for_completion(interval=0.1)
    panel.connection = lambda: Connection(other.url)
    refreshed(panel)
    assert [e.uuid for e in panel.model.entries] == [old.uuid]
    assert f"odx_relay_notice_{old.uuid}" not in notices(qgis_iface)  # not news: it had ended before
