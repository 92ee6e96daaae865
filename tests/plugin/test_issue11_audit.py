"""Issue 11, the items the audit found without a test of their own: the first console lines of a task that waited
in the relay's queue reach the run's log; a task started in this QGIS raises the panel's end notice too; the
panel's and the task picker's network work runs off the GUI thread. Real headless QGIS, a real relay in front of a
development node."""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
import requests
from qgis.core import QgsApplication, QgsProcessingAlgRunnerTask, QgsProcessingContext, QgsProject

from qgis_plugin.core.connection import Connection
from qgis_plugin.deps import shared
from testkit.devnode import start_devnode
from testkit.relay import start_relay
from testkit.servers import ServerGroup
from tests.plugin.plugin_helpers import RecordingFeedback, run_algorithm, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("odx_provider", "fast_polls")]
S = shared.TaskStatus


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory) -> Iterator[SimpleNamespace]:
    """A relay in front of one development node with one slot: a second task waits in the relay's queue."""
    tmp = tmp_path_factory.mktemp("audit")
    with ServerGroup(tmp) as group:
        node = group.start(start_devnode, slots=1, seconds_per_image=0.3)
        relay = group.add(start_relay(tmp, [node.url], check_interval=0.3))
        yield SimpleNamespace(node=node, relay=relay)


def test_a_task_that_waited_in_the_relays_queue_logs_its_first_console_lines(one_slot, sample_images, photo_folder,
                                                                           tmp_path):
    client = shared.Node.from_url(one_slot.relay.url)
    blocker = client.create_task(sample_images, name="takes the slot")
    wait_for(lambda: blocker.info().status == S.RUNNING, 30, "the slot to be taken")
    results, _, feedback = run_algorithm("odxrelay:processimages", {
        "IMAGE_FOLDER": str(photo_folder), "SERVER": one_slot.relay.url, "RESULTS_FOLDER": str(tmp_path)})
    uuid = results["TASK_UUID"]
    assert f"Task {uuid} is queued." in feedback.infos  # it did wait in the relay's queue
    on_node = requests.get(f"{one_slot.node.url}/task/{uuid}/output", timeout=10).json()
    assert len(on_node) > 2 and feedback.console == on_node  # every line, from the first, once


def test_a_task_started_in_this_qgis_raises_the_end_notice(one_slot, photo_folder, tmp_path, qgis_iface):
    from qgis_plugin.gui.task_panel import TaskPanel

    qgis_iface.messageBar().clearWidgets()
    dock = TaskPanel(qgis_iface, None, interval_ms=200, connection=lambda: Connection(one_slot.relay.url))
    try:
        dock.show()  # refreshes every 0.2 s from now on
        wait_for(lambda: dock.snapshot.health is not None, 30, "the first refresh")
        algorithm = QgsApplication.processingRegistry().createAlgorithmById("odxrelay:processimages")
        context = QgsProcessingContext()
        context.setProject(QgsProject.instance())
        feedback = RecordingFeedback()
        run = QgsProcessingAlgRunnerTask(algorithm, {  # as its dialog runs it
            "IMAGE_FOLDER": str(photo_folder), "SERVER": one_slot.relay.url, "TASK_NAME": "from this QGIS",
            "RESULTS_FOLDER": str(tmp_path)}, context, feedback)
        ended: list[bool] = []
        run.executed.connect(lambda ok, _results: ended.append(ok))
        QgsApplication.taskManager().addTask(run)
        wait_for(lambda: ended, 90, "the run to end")
        assert ended == [True], feedback.text()
        notice = wait_for(lambda: [item for item in qgis_iface.messageBar().items()
                                   if "from this QGIS" in item.text()], 30, "the notice")[0]
        assert "completed" in notice.text()
    finally:
        dock.shutdown()
        wait_for(lambda: not dock.running)
        dock.deleteLater()


def test_the_panels_and_the_pickers_network_work_runs_off_the_gui_thread(one_slot, qgis_iface, monkeypatch):
    from processing.gui.AlgorithmDialog import AlgorithmDialog
    from qgis.gui import QgsBrowserGuiModel

    import qgis_plugin.gui.task_panel as task_panel
    import qgis_plugin.gui.task_picker as task_picker

    threads: dict[str, threading.Thread] = {}

    def recorded(name: str, function: Callable) -> Callable:
        def call(*args, **kwargs):
            threads[name] = threading.current_thread()
            return function(*args, **kwargs)
        return call

    monkeypatch.setattr(task_panel, "snapshot_of", recorded("refresh", task_panel.snapshot_of))
    monkeypatch.setattr(task_picker, "fetch_entries", recorded("picker", task_picker.fetch_entries))
    monkeypatch.setenv("ODX_RELAY_URL", one_slot.relay.url)
    dock = task_panel.TaskPanel(qgis_iface, None, connection=lambda: Connection(one_slot.relay.url))
    browser = QgsBrowserGuiModel()
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: browser, raising=False)
    algorithm = QgsApplication.processingRegistry().algorithmById("odxrelay:loadresults")
    dialog = AlgorithmDialog(algorithm.create(), parent=qgis_iface.mainWindow())
    try:
        assert dock.refresh()
        console = dock.in_background(lambda node: threads.setdefault("action", threading.current_thread()),
                                     lambda _result: None)
        assert console
        wait_for(lambda: len(threads) == 3 and dock.snapshot.health is not None
                 and dialog.mainWidget().wrappers["TASK"].entries is not None, 30, "the three calls")
        assert all(thread is not threading.main_thread() for thread in threads.values()), threads
    finally:
        dialog.deleteLater()
        dock.shutdown()
        dock.deleteLater()
