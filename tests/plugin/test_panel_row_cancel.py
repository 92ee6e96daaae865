"""Issue 11: each queued or running task's row in the task panel has a Cancel button (after a confirmation), and
the elapsed time of running tasks ticks every second between refreshes without asking the server. Real headless
QGIS against a development node."""
from __future__ import annotations

import time

import pytest
from qgis.core import QgsApplication
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtTest import QTest

from qgis_plugin.core.connection import Connection
from qgis_plugin.deps import shared
from tests.plugin.plugin_helpers import wait_for

pytestmark = pytest.mark.usefixtures("odx_provider", "fast_polls")
S = shared.TaskStatus


@pytest.fixture
def shown_panel(qgis_iface, devnode_factory, monkeypatch):
    """A panel on a development node, shown (floating), refreshing by itself every 0.2 s."""
    from qgis_plugin.gui.task_panel import TaskPanel

    node = devnode_factory(slots=2, seconds_per_image=1.0)
    monkeypatch.setenv("ODX_RELAY_URL", node.url)  # the panel's algorithm runs go to this node too
    dock = TaskPanel(qgis_iface, None, interval_ms=200, connection=lambda: Connection(node.url))
    dock.confirmations = []
    monkeypatch.setattr(dock, "confirm", lambda question: dock.confirmations.append(question) or True)
    dock.show()
    dock.resize(900, 400)
    yield dock, shared.Node.from_url(node.url)
    dock.shutdown()
    wait_for(lambda: not dock.running, what="the panel's runs to end")
    dock.deleteLater()


def cell(dock, uuid: str, column: int):
    return dock.proxy.mapFromSource(dock.model.index(dock.model.row_of(uuid), column))


def click(dock, index) -> None:
    QTest.mouseClick(dock.table.viewport(), Qt.MouseButton.LeftButton, pos=dock.table.visualRect(index).center())


def test_a_rows_cancel_button_cancels_that_task_after_asking(shown_panel, sample_images):
    from qgis_plugin.gui.task_model import CANCEL

    dock, client = shown_panel
    done = client.create_task(sample_images[:2], name="done")
    done.wait_for_completion(interval=0.1)
    busy = client.create_task(sample_images, name="busy")
    wait_for(lambda: (e := dock.entry(busy.uuid)) and e.status == S.RUNNING, 30, "the running task in the panel")
    assert dock.entry(done.uuid) is not None
    assert cell(dock, busy.uuid, CANCEL).data(Qt.ItemDataRole.ToolTipRole).startswith("Cancel this task")
    assert cell(dock, done.uuid, CANCEL).data(Qt.ItemDataRole.ToolTipRole) is None  # no button: it has ended

    click(dock, cell(dock, done.uuid, CANCEL))
    assert dock.confirmations == [] and not dock.running  # nothing to cancel there
    click(dock, cell(dock, busy.uuid, CANCEL))
    assert len(dock.confirmations) == 1 and "“busy”" in dock.confirmations[0]
    wait_for(lambda: client.get_task(busy.uuid).info().status == S.CANCELED, 30, "the cancel on the node")
    assert client.get_task(done.uuid).info().status == S.COMPLETED
    wait_for(lambda: dock.entry(busy.uuid).status == S.CANCELED, 30, "the panel to show it canceled")


def test_a_declined_confirmation_cancels_nothing(shown_panel, sample_images, monkeypatch):
    from qgis_plugin.gui.task_model import CANCEL

    dock, client = shown_panel
    busy = client.create_task(sample_images, name="kept")
    wait_for(lambda: (e := dock.entry(busy.uuid)) and e.status in (S.QUEUED, S.RUNNING), 30, "the task")
    monkeypatch.setattr(dock, "confirm", lambda question: False)
    click(dock, cell(dock, busy.uuid, CANCEL))
    assert not dock.running and client.get_task(busy.uuid).info().status in (S.QUEUED, S.RUNNING)
    busy.cancel()


def test_elapsed_time_ticks_each_second_without_a_request(shown_panel, sample_images):
    from qgis_plugin.gui.task_model import ELAPSED

    dock, client = shown_panel
    busy = client.create_task(sample_images, name="ticking")
    wait_for(lambda: (e := dock.entry(busy.uuid)) and e.status == S.RUNNING, 30, "the running task")
    dock.timer.stop()  # no more refreshes: only the clock runs
    asked = dock.refreshes
    wait_for(lambda: not dock.refreshing, 10)
    ticks: list = []
    dock.model.dataChanged.connect(lambda first, last, roles=(): ticks.append((first.column(), last.column())))
    before = cell(dock, busy.uuid, ELAPSED).data()
    wait_for(lambda: ticks, 5, "a tick of the panel's clock")  # (the text is read live: it may change first)
    shown = wait_for(lambda: (text := cell(dock, busy.uuid, ELAPSED).data()) != before and text, 5, "a tick")
    assert dock.refreshes == asked  # nothing asked of the server meanwhile
    assert ticks and all(columns == (ELAPSED, ELAPSED) for columns in ticks)  # the view repaints that column
    assert int(shown.split()[0]) > int(before.split()[0]), (before, shown)
    busy.cancel()


def test_a_completed_tasks_elapsed_time_stands_still(shown_panel, sample_images):
    from qgis_plugin.gui.task_model import ELAPSED

    dock, client = shown_panel
    done = client.create_task(sample_images[:2], name="still")
    done.wait_for_completion(interval=0.1)
    wait_for(lambda: (e := dock.entry(done.uuid)) and e.status == S.COMPLETED, 30, "the completed task")
    dock.timer.stop()
    first = cell(dock, done.uuid, ELAPSED).data()
    wait_for(lambda: not dock.refreshing, 10)
    time.sleep(1.2)
    QgsApplication.processEvents()
    assert cell(dock, done.uuid, ELAPSED).data() == first and not dock.model.tick()
