"""Issue 11: the optional auto-load of results for tasks started from this QGIS. processimages remembers the task
it starts (in QgsSettings, so across a restart of QGIS) until it has followed it to its end; when the panel sees
a remembered task completed that no run here follows any more (QGIS closed meanwhile, or the run was left), it
loads its results as "Load results" does, if the setting is on (off by default). Real headless QGIS, real
development node."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from qgis.core import QgsProject, QgsSettings

from qgis_plugin import settings
from qgis_plugin.core.connection import Connection
from qgis_plugin.deps import shared
from tests.plugin.plugin_helpers import FAST, refreshed, run_algorithm, start_in_background, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("odx_provider", "fast_polls")]
S = shared.TaskStatus


@pytest.fixture
def remembered(monkeypatch, tmp_path) -> Iterator[None]:
    """A clean list of tasks started here, auto-load as the test sets it, results under tmp_path."""
    QgsSettings().remove(settings.KEY_STARTED)
    QgsSettings().remove(settings.KEY_AUTO_LOAD)
    monkeypatch.setattr(settings, "results_folder", lambda: tmp_path / "results")
    yield
    QgsSettings().remove(settings.KEY_STARTED)
    QgsSettings().remove(settings.KEY_AUTO_LOAD)


def panel_on(url: str, qgis_iface):
    from qgis_plugin.gui.task_panel import TaskPanel

    return TaskPanel(qgis_iface, None, interval_ms=200, connection=lambda: Connection(url))


def test_started_tasks_are_remembered_in_the_settings_and_let_go(remembered):
    uuids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(settings.MAX_STARTED + 2)]
    for uuid in uuids:
        settings.remember_started(uuid)
    QgsSettings().sync()
    assert settings.started_here() == uuids[2:]  # the oldest let go first
    settings.forget_started(uuids[5])
    assert uuids[5] not in settings.started_here() and len(settings.started_here()) == settings.MAX_STARTED - 1


def test_the_settings_page_has_the_auto_load_box_off_by_default(remembered, qgis_app, monkeypatch):
    from qgis_plugin.gui.settings_widget import SettingsWidget

    monkeypatch.setattr(settings, "save", lambda url, token, results="": None)  # the server settings stay
    page = SettingsWidget()
    assert not page.auto_load.isChecked() and settings.auto_load() is False  # off by default
    page.auto_load.setChecked(True)
    assert page.save() and settings.auto_load() is True
    assert SettingsWidget().auto_load.isChecked()


def test_a_task_left_running_loads_when_the_panel_sees_it_complete(remembered, devnode_factory, photo_folder,
                                                                  tmp_path, qgis_iface, monkeypatch):
    from qgis_plugin.processing.closing import leave_all_running

    node = devnode_factory(seconds_per_image=0.5)
    monkeypatch.setenv("ODX_RELAY_URL", node.url)  # the panel's loads use the algorithms' server: this node
    settings.set_auto_load(True)
    run = start_in_background({"IMAGE_FOLDER": str(photo_folder), "SERVER": node.url, "TASK_NAME": "flown here",
                               "RESULTS_FOLDER": str(tmp_path / "results")})
    [uuid] = wait_for(settings.started_here, 30, "the task's uuid to be remembered")
    assert settings.followed_here(uuid)
    dock = panel_on(node.url, qgis_iface)
    try:
        refreshed(dock)
        assert settings.started_here() == [uuid]  # still followed by its run: the panel leaves it alone
        leave_all_running()  # QGIS closes (or the plugin unloads): the run stops following, the task runs on
        wait_for(lambda: run.ended, 30, "the run to stop following")
        assert run.ended == [False] and not settings.followed_here(uuid)
        assert settings.started_here() == [uuid]  # remembered for the next session
    finally:
        dock.shutdown()
        dock.deleteLater()

    client = shared.Node.from_url(node.url)
    assert client.get_task(uuid).wait_for_completion(interval=0.2).status == S.COMPLETED  # while "closed"
    project = QgsProject.instance()
    project.clear()
    later = panel_on(node.url, qgis_iface)  # the next session's panel: its first refresh
    try:
        refreshed(later)
        group = wait_for(lambda: project.layerTreeRoot().findGroup("flown here"), 60, "the results to load")
        assert {layer.name() for layer in group.findLayers()} >= {"Orthophoto", "DSM (surface)"}
        assert settings.started_here() == []  # loaded once, then let go
        wait_for(lambda: not later.running, 30)
        layers = len(project.mapLayers())
        refreshed(later)
        assert not later.running and len(project.mapLayers()) == layers  # not loaded again
    finally:
        later.shutdown()
        later.deleteLater()
        project.clear()


def test_auto_load_off_loads_nothing_and_a_followed_task_is_not_loaded_twice(remembered, devnode_factory,
                                                                             photo_folder, tmp_path, qgis_iface,
                                                                             sample_images):
    node = devnode_factory(**FAST)
    results, _, feedback = run_algorithm("odxrelay:processimages", {
        "IMAGE_FOLDER": str(photo_folder), "SERVER": node.url, "RESULTS_FOLDER": str(tmp_path / "results")})
    assert results["TASK_UUID"] and settings.started_here() == []  # followed to its end: its own results
    client = shared.Node.from_url(node.url)
    other = client.create_task(sample_images[:3], name="not loaded")
    other.wait_for_completion(interval=0.1)
    settings.remember_started(other.uuid)  # as if started here before QGIS closed, with auto-load off
    project = QgsProject.instance()
    project.clear()
    dock = panel_on(node.url, qgis_iface)
    try:
        refreshed(dock)
        assert settings.started_here() == [] and not dock.running  # let go, nothing loaded
        assert project.layerTreeRoot().findGroup("not loaded") is None
    finally:
        dock.shutdown()
        dock.deleteLater()
