"""Settings (URL in QgsSettings, token in the authentication database, QGIS's proxy), the settings page,
the Server field of the algorithm dialogs, and the plugin's registration — in real QGIS, headless."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from qgis.core import QgsApplication, QgsProcessingRegistry, QgsSettings
from qgis.gui import QgsOptionsPageWidget

from qgis_plugin import settings
from tests.plugin.plugin_helpers import FAST

MASTER_PASSWORD = "odx-relay-tests"


@pytest.fixture
def clean_settings():
    """No saved server or token before and after; the test profile's master password is set."""
    manager = QgsApplication.authManager()
    if not manager.masterPasswordIsSet():
        assert manager.setMasterPassword(MASTER_PASSWORD, True), "the test profile has another master password"

    def reset() -> None:
        settings.save("", "", "")
        for key in settings.PROXY_KEYS:
            QgsSettings().remove(key)

    reset()
    yield
    reset()


def test_token_lives_in_the_authentication_database(clean_settings):
    settings.save("http://relay.example:3000", "s3cret-token", "")
    assert settings.saved_url() == "http://relay.example:3000"
    assert settings.saved_token() == "s3cret-token"
    authcfg = QgsSettings().value(settings.KEY_AUTHCFG)
    assert authcfg in QgsApplication.authManager().configIds()
    QgsSettings().sync()
    assert "s3cret-token" not in Path(QgsSettings().fileName()).read_text(encoding="utf-8", errors="replace")

    settings.save("http://relay.example:3000", "new-token", "")
    assert QgsSettings().value(settings.KEY_AUTHCFG) == authcfg and settings.saved_token() == "new-token"
    settings.save("http://relay.example:3000", "", "")
    assert settings.saved_token() == "" and authcfg not in QgsApplication.authManager().configIds()


def test_saved_token_goes_only_to_the_saved_server_and_proxy_settings_apply(clean_settings, monkeypatch):
    monkeypatch.delenv("ODX_RELAY_TOKEN", raising=False)
    monkeypatch.delenv("ODX_RELAY_URL", raising=False)
    settings.save("http://relay.example:3000", "tok", "")
    for key, value in {"proxy/proxyEnabled": "true", "proxy/proxyType": "HttpProxy", "proxy/proxyHost": "proxy.lan",
                       "proxy/proxyPort": 3128, "proxy/proxyExcludedUrls": "http://intranet"}.items():
        QgsSettings().setValue(key, value)
    saved = settings.connection("")
    assert (saved.url, saved.token) == ("http://relay.example:3000", "tok")
    assert saved.proxies == {"http": "http://proxy.lan:3128", "https": "http://proxy.lan:3128"}
    assert saved.node().session.proxies["http"] == "http://proxy.lan:3128"
    other = settings.connection("http://intranet:3000")
    assert other.token == "" and other.proxies is None


def test_results_folder_setting(clean_settings, tmp_path):
    assert settings.results_folder() == settings.default_results_folder()
    settings.save("", "", str(tmp_path))
    assert settings.results_folder() == tmp_path


def answer_of(widget) -> str:
    """Press "Test connection" and wait for its answer (asked in a worker thread)."""
    import time

    answers: list[str] = []
    widget.tested.connect(answers.append)
    try:
        assert widget.run_test() and not widget.test_button.isEnabled()
        deadline = time.monotonic() + 30
        while not answers and time.monotonic() < deadline:
            QgsApplication.processEvents()
            time.sleep(0.01)
    finally:
        widget.tested.disconnect(answers.append)
    assert answers, "no answer from Test connection"
    return answers[0]


def test_settings_page_tests_the_connection_in_words(clean_settings, devnode_factory, qgis_app):
    from qgis_plugin.gui.settings_widget import SettingsPageFactory

    node = devnode_factory(token="right", slots=3, max_images=50, **FAST)
    page = SettingsPageFactory().createWidget(None)
    assert isinstance(page, QgsOptionsPageWidget)
    widget = page.widget
    widget.url.setText(node.url)
    widget.token.setText("right")
    text = answer_of(widget)
    assert f"Connected to NodeODX 2.2.1 at {node.url}" in text
    assert "0 task(s) running or waiting, for 3 parallel slot(s)" in text
    assert "up to 50 images" in text and "GB free of 16.0 GB" in text and "This token sees 0 task(s)" in text
    assert widget.report.text() == text and widget.test_button.isEnabled()

    widget.token.setText("wrong")
    assert "refused the token" in answer_of(widget)
    widget.url.setText("http://127.0.0.1:9")
    assert "Cannot reach the server" in answer_of(widget)

    widget.url.setText(node.url)
    widget.token.setText("right")
    page.apply()
    assert settings.saved_url() == node.url and settings.saved_token() == "right"


def test_processing_dialog_has_the_server_field_with_a_settings_button(odx_provider, clean_settings, qgis_iface,
                                                                      monkeypatch):
    from processing.gui.AlgorithmDialog import AlgorithmDialog
    from qgis.gui import QgsBrowserGuiModel

    from qgis_plugin.gui.server_widget import ServerWidgetWrapper
    from qgis_plugin.gui.settings_widget import SettingsDialog

    browser = QgsBrowserGuiModel()  # the dialog asks the interface for one; pytest-qgis's stub has none
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: browser, raising=False)
    settings.save("http://relay.example:3000", "", "")
    algorithm = QgsApplication.processingRegistry().algorithmById("odxrelay:processimages")
    dialog = AlgorithmDialog(algorithm.create(), parent=qgis_iface.mainWindow())
    wrapper = dialog.mainWidget().wrappers["SERVER"]
    assert type(wrapper).__name__ == ServerWidgetWrapper.__name__
    assert "http://relay.example:3000" in wrapper.line.placeholderText()
    wrapper.setValue("http://other:3000")
    assert wrapper.value() == "http://other:3000"
    settings_dialog = SettingsDialog(wrapper.widget)
    assert settings_dialog.widget.url.text() == "http://relay.example:3000"
    settings_dialog.deleteLater()
    dialog.deleteLater()


def test_plugin_registers_provider_and_options_page(qgis_iface, monkeypatch):
    """classFactory → initProcessing/initGui → unload, on a private registry so the session's stays."""
    import qgis_plugin.plugin as plugin_module
    from qgis_plugin import classFactory

    registry = QgsProcessingRegistry()
    monkeypatch.setattr(plugin_module, "QgsApplication", SimpleNamespace(processingRegistry=lambda: registry))
    iface = SimpleNamespace(registered=[], registerOptionsWidgetFactory=lambda f: iface.registered.append(f),
                            unregisterOptionsWidgetFactory=lambda f: iface.registered.remove(f),
                            mainWindow=lambda: None, addDockWidget=lambda area, dock: None,
                            removeDockWidget=lambda dock: None, added=[],  # the task panel's dock and action
                            addPluginToMenu=lambda menu, a: iface.added.append(a), addToolBarIcon=lambda a: None,
                            removePluginMenu=lambda menu, a: iface.added.remove(a), removeToolBarIcon=lambda a: None)
    monkeypatch.setattr("qgis_plugin.gui.task_panel.was_visible", lambda: False)
    plugin = classFactory(iface)
    plugin.initProcessing()
    plugin.initGui()  # QGIS calls both; the provider is added once
    provider = registry.providerById("odxrelay")
    assert provider is not None and provider.name() == "ODX Relay" and len(registry.providers()) == 1
    assert sorted(a.id() for a in provider.algorithms()) == [
        "odxrelay:canceltask", "odxrelay:findresults", "odxrelay:listtasks", "odxrelay:loadresults",
        "odxrelay:processimages",
        "odxrelay:removetask", "odxrelay:restarttask"]
    assert [f.title() for f in iface.registered] == ["ODX Relay"]
    assert [a.text() for a in iface.added] == ["ODX Relay tasks"] and plugin.panel.objectName() == "odx_relay_tasks"
    plugin.unload()
    assert registry.providerById("odxrelay") is None and iface.registered == [] and iface.added == []


def test_algorithms_describe_themselves(odx_provider):
    from qgis.core import QgsProcessingParameterDefinition

    expected = {
        "processimages": {"IMAGES", "IMAGE_FOLDER", "SUBFOLDERS", "RASTERS", "PRESET", "OPTIONS", "TASK_NAME", "ALIGN",
                          "GCP", "GEO", "IMAGE_GROUPS", "RESULTS_FOLDER", "SERVER", "WHOLE_CLUSTER"},
        "loadresults": {"TASK", "WAIT", "MODE", "RESULTS_FOLDER", "SERVER"},
        "listtasks": {"OUTPUT", "SERVER"},
        "findresults": {"EXTENT", "START", "END", "LIMIT", "LOAD", "MODE", "RESULTS_FOLDER", "OUTPUT", "SERVER"},
        "canceltask": {"TASK", "SERVER"},
        "restarttask": {"TASK", "OPTIONS", "FOLLOW", "RESULTS_FOLDER", "SERVER"},
        "removetask": {"TASK", "RESULTS_FOLDER", "SERVER"},
    }
    for name, parameters in expected.items():
        algorithm = QgsApplication.processingRegistry().algorithmById(f"odxrelay:{name}")
        assert {p.name() for p in algorithm.parameterDefinitions()} == parameters, name
        assert algorithm.shortHelpString() and "Settings" in algorithm.shortHelpString()
        assert algorithm.createInstance().name() == name
    process = QgsApplication.processingRegistry().algorithmById("odxrelay:processimages")
    assert {o.name() for o in process.outputDefinitions()} == {"ORTHOPHOTO", "DSM", "DTM", "POINT_CLOUD", "RESULTS",
                                                               "TASK_UUID", "CAMERA_POSITIONS", "REPORT"}
    assert process.parameterDefinition("GCP").flags() & QgsProcessingParameterDefinition.Flag.FlagAdvanced
    assert len(process.parameterDefinition("PRESET").options()) >= 4
