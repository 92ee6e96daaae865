"""Issue 11: the algorithms that act on a task (load results, cancel, restart, remove) get, in their dialog, a
picker filled from the server (in a worker thread), while a typed uuid keeps working there and in scripts; the
model designer keeps QGIS's own text field. In real headless QGIS against a relay with a development node."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from qgis.core import QgsApplication, QgsProcessingModelAlgorithm
from qgis.gui import QgsBrowserGuiModel, QgsProcessingModelerParameterWidget

from qgis_plugin.deps import shared
from testkit.devnode import start_devnode
from testkit.relay import start_relay
from testkit.servers import ServerGroup
from tests.plugin.plugin_helpers import run_algorithm, wait_for

pytestmark = pytest.mark.usefixtures("odx_provider", "fast_polls")
TaskStatus = shared.TaskStatus
TOKEN = "picker-token"


@pytest.fixture(scope="module")
def relay(tmp_path_factory) -> Iterator:
    tmp = tmp_path_factory.mktemp("picker-relay")
    with ServerGroup(tmp) as group:
        node = group.start(start_devnode, slots=2, seconds_per_image=0.5)
        yield group.add(start_relay(tmp, [node.url], token=TOKEN, check_interval=0.3))


@pytest.fixture
def on_relay(relay, monkeypatch, qgis_iface):
    """The relay as the server of every algorithm (nothing saved: the environment, as scripts use it)."""
    from qgis_plugin import settings

    monkeypatch.setattr(settings, "saved_url", lambda: "")
    monkeypatch.setattr(settings, "saved_token", lambda: "")
    monkeypatch.setenv("ODX_RELAY_URL", relay.url)
    monkeypatch.setenv("ODX_RELAY_TOKEN", TOKEN)
    browser = QgsBrowserGuiModel()  # the dialog asks the interface for one; pytest-qgis's stub has none
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: browser, raising=False)
    return relay


def dialog_of(algorithm_id: str, qgis_iface):
    from processing.gui.AlgorithmDialog import AlgorithmDialog

    algorithm = QgsApplication.processingRegistry().algorithmById(algorithm_id)
    return AlgorithmDialog(algorithm.create(), parent=qgis_iface.mainWindow())


def labels(wrapper) -> list[str]:
    return [wrapper.combo.itemText(i) for i in range(wrapper.combo.count())]


def test_the_picker_lists_the_servers_tasks_and_gives_the_chosen_uuid(on_relay, qgis_iface, sample_images):
    from qgis_plugin.gui.task_picker import TaskPickerWidgetWrapper

    client = shared.Node.from_url(on_relay.url, token=TOKEN)
    done = client.create_task(sample_images[:2], name="finished")
    done.wait_for_completion(interval=0.1)
    busy = client.create_task(sample_images, name="busy")
    dialog = dialog_of("odxrelay:canceltask", qgis_iface)
    try:
        picker = dialog.mainWidget().wrappers["TASK"]
        assert type(picker).__name__ == TaskPickerWidgetWrapper.__name__
        wait_for(lambda: picker.entries is not None, 30, "the server's tasks")
        listed = labels(picker)
        assert any(text.startswith("busy · ") and text.endswith(f" · {busy.uuid[:8]}") for text in listed), listed
        assert not any(text.startswith("finished") for text in listed)  # cancel lists queued or running tasks only
        assert picker.value() == "" and picker.combo.currentIndex() == -1  # nothing chosen for the user
        picker.combo.setCurrentIndex(next(i for i, t in enumerate(listed) if t.startswith("busy")))
        assert picker.value() == busy.uuid
        assert dialog.mainWidget().createProcessingParameters()["TASK"] == busy.uuid
        picker.combo.setCurrentIndex(-1)
        picker.combo.setEditText(f"  {done.uuid} ")  # typed (or pasted): taken as it is
        assert picker.value() == done.uuid
    finally:
        dialog.deleteLater()

    loader = dialog_of("odxrelay:loadresults", qgis_iface)
    try:
        picker = loader.mainWidget().wrappers["TASK"]
        picker.setValue(done.uuid)  # a uuid given before the list came
        wait_for(lambda: picker.entries is not None, 30, "the server's tasks")
        assert picker.combo.currentText() == f"finished · completed · {done.uuid[:8]}"  # shown by its name now
        assert picker.value() == done.uuid
    finally:
        loader.deleteLater()

    results, _, feedback = run_algorithm("odxrelay:canceltask", {"TASK": busy.uuid})  # a script types it
    assert results["STATUS"] == "canceled", feedback.text()
    assert client.get_task(busy.uuid).info().status == TaskStatus.CANCELED


def test_a_server_that_does_not_answer_is_said_in_the_picker(on_relay, qgis_iface, monkeypatch):
    monkeypatch.setenv("ODX_RELAY_URL", "http://127.0.0.1:9")
    dialog = dialog_of("odxrelay:removetask", qgis_iface)
    try:
        picker = dialog.mainWidget().wrappers["TASK"]
        wait_for(lambda: "Cannot reach" in picker.note.text(), 30, "the error in words")
        assert picker.entries is None and picker.combo.count() == 0
        picker.combo.setEditText("0f8fad5b-d9cb-469f-a165-70867728950e")  # typing still works
        assert picker.value() == "0f8fad5b-d9cb-469f-a165-70867728950e"
    finally:
        dialog.deleteLater()


def test_batch_gets_the_picker_and_the_model_designer_qgis_text_field(on_relay, qgis_iface):
    from processing.gui.wrappers import WidgetWrapperFactory
    from processing.modeler.ModelerParametersDialog import ModelerParametersDialog
    from qgis.gui import QgsProcessingGui

    algorithm = QgsApplication.processingRegistry().algorithmById("odxrelay:restarttask")
    model = QgsProcessingModelAlgorithm("m", "g")
    designer = ModelerParametersDialog(algorithm, model)
    wrapper = WidgetWrapperFactory.create_wrapper(algorithm.parameterDefinition("TASK"), designer)
    assert isinstance(wrapper, QgsProcessingModelerParameterWidget)  # can take a model input
    designer.deleteLater()

    batch = type("BatchAlgorithmDialog", (), {})()  # Processing tells a batch run by its dialog's class name
    picker = WidgetWrapperFactory.create_wrapper(algorithm.parameterDefinition("TASK"), batch)
    assert picker.dialogType == QgsProcessingGui.WidgetType.Batch
    picker.postInitialize([])
    wait_for(lambda: picker.entries is not None, 30, "the server's tasks")
    assert all(" · " in text for text in labels(picker))
    assert all(e.status.is_final for e in picker.entries)  # restart lists ended tasks
    picker.widget.deleteLater()
