"""The demo's last step (scripts/demo_desktop.py): QGIS desktop under Xvfb, the task panel, a PNG of the window."""
from __future__ import annotations

import configparser
import shutil
import time
from pathlib import Path

import pytest

from scripts import demo_desktop, demo_qgis, package
from shared import Node
from shared.assets import Product, asset_for
from tests.plugin.plugin_helpers import FAST

needs_xvfb = pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed (make setup installs it)")


def test_the_token_travels_apart_from_the_url(monkeypatch):
    monkeypatch.delenv("ODX_RELAY_TOKEN", raising=False)
    assert demo_desktop.split_token("http://127.0.0.1:3000?token=T") == ("http://127.0.0.1:3000", "T")
    assert demo_desktop.split_token("http://127.0.0.1:3000") == ("http://127.0.0.1:3000", "")
    monkeypatch.setenv("ODX_RELAY_TOKEN", "E")
    assert demo_desktop.split_token("http://h:1/?a=1&token=T") == ("http://h:1/?a=1", "T")
    assert demo_desktop.split_token("http://h:1") == ("http://h:1", "E")


def test_the_throw_away_profile_has_the_plugin_enabled(tmp_path):
    plugin = tmp_path / "installed" / "odx_relay"
    (plugin / "__pycache__").mkdir(parents=True)
    (plugin / "__init__.py").write_text("")
    (plugin / "__pycache__" / "x.pyc").write_bytes(b"")
    profile = demo_desktop.make_profile(tmp_path / "root", plugin)
    assert profile == tmp_path / "root" / "profiles" / "default"  # what --profiles-path ROOT opens
    assert (profile / "python" / "plugins" / "odx_relay" / "__init__.py").is_file()
    assert not (profile / "python" / "plugins" / "odx_relay" / "__pycache__").exists()
    ini = configparser.ConfigParser()
    ini.read(profile / "QGIS" / "QGIS3.ini")
    assert ini["PythonPlugins"]["odx_relay"] == "true"


@needs_xvfb
def test_xvfb_starts_on_a_free_display_and_is_stopped_and_reaped(tmp_path):
    with (tmp_path / "xvfb.log").open("wb") as log:
        first, display = demo_desktop.start_xvfb(log)
        second, other = demo_desktop.start_xvfb(log)
        try:
            assert display.startswith(":") and other != display
            assert first.poll() is None and second.poll() is None
        finally:
            demo_desktop.stop_group(second)
            demo_desktop.stop_group(first)
    assert first.returncode is not None and second.returncode is not None


@pytest.fixture
def demo_project(devnode_factory, sample_images, tmp_path, qgis_app):
    """A finished task on a development node, its results in a .qgz, and the installed plugin folder."""
    from qgis.core import QgsProject, QgsRasterLayer

    node = devnode_factory(slots=1, **FAST)
    task = Node.from_url(node.url).create_task(sample_images, {"dsm": True}, name="Window test")
    task.wait_for_completion(interval=0.2)
    results = Path(task.download_assets(tmp_path / "results"))
    project = QgsProject()
    layer = QgsRasterLayer(str(results / asset_for(Product.ORTHOPHOTO).path), "Orthophoto")
    assert layer.isValid()
    project.addMapLayer(layer)
    project.setCrs(layer.crs())
    assert project.write(str(tmp_path / "window-test.qgz"))
    plugin = demo_qgis.install_plugin(package.build(tmp_path / "dist"), tmp_path / "plugins")
    return node, task.uuid, tmp_path / "window-test.qgz", plugin


@pytest.mark.slow
@needs_xvfb
def test_qgis_window_shows_the_finished_task_in_the_panel(demo_project, tmp_path):
    node, uuid, project, plugin = demo_project
    png = tmp_path / "window.png"
    started = time.monotonic()
    report = demo_desktop.shoot_window(project, png, node.url, plugin, task_uuid=uuid, timeout=90)
    assert report["ok"], report
    assert report["tasks"] == ["Window test: completed"]
    from qgis.PyQt.QtGui import QImage
    image = QImage(str(png))
    assert (image.width(), image.height()) == demo_desktop.SIZE
    assert time.monotonic() - started < 60
    assert not list(tmp_path.glob("odx-relay-desktop-*"))


@pytest.mark.slow
@needs_xvfb
def test_qgis_window_says_why_when_the_panel_never_lists_the_task(demo_project, tmp_path):
    """A relay that does not answer: the window is still saved (it shows the panel's error), the report says
    what was waited for, and QGIS and Xvfb are gone within the timeout."""
    _node, uuid, project, plugin = demo_project
    png = tmp_path / "window.png"
    started = time.monotonic()
    report = demo_desktop.shoot_window(project, png, "http://127.0.0.1:9", plugin, task_uuid=uuid, timeout=40)
    assert not report["ok"] and png.is_file()
    assert f"waiting for the task panel to list task {uuid} as completed" in report["message"]
    assert "Cannot reach the server" in report["message"]
    assert time.monotonic() - started < 40
