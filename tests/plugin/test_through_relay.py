"""The plugin in front of the real thing: a relay (with a client token) before two development nodes,
one of which has its own token. Process, load, and cancel, as a QGIS user would."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from qgis.core import QgsCoordinateReferenceSystem, QgsProcessingException

from devnode.samples import SAMPLE_EPSG
from qgis_plugin.deps import shared
from testkit.devnode import start_devnode
from testkit.relay import start_relay
from testkit.servers import ServerGroup
from tests.plugin.plugin_helpers import FAST, RecordingFeedback, layers_to_load, run_algorithm, where_photos_were_taken

pytestmark = pytest.mark.usefixtures("odx_provider", "fast_polls")
TOKEN = "relay-client-token"


@pytest.fixture(scope="module")
def relay(tmp_path_factory) -> Iterator:
    tmp = tmp_path_factory.mktemp("relay")
    with ServerGroup(tmp) as group:
        fast = group.start(start_devnode, slots=1, **FAST)
        secured = group.start(start_devnode, slots=1, token="node-secret", **FAST)
        yield group.add(start_relay(tmp, [fast.url, secured.url + "?token=node-secret"], token=TOKEN,
                                    check_interval=0.3))


def test_processimages_through_the_relay_loads_valid_layers(relay, photo_folder, tmp_path):
    results, context, feedback = run_algorithm("odxrelay:processimages", {
        "IMAGE_FOLDER": str(photo_folder), "SERVER": f"{relay.url}?token={TOKEN}", "PRESET": 3,
        "TASK_NAME": "Through the relay", "RESULTS_FOLDER": str(tmp_path)})
    layers = layers_to_load(context)
    assert {"Orthophoto", "DSM (surface)", "DTM (terrain)", "Point cloud", "Camera positions"} <= set(layers)
    assert layers.pop("Camera positions").isValid()  # in WGS 84, as shots.geojson is
    expected = QgsCoordinateReferenceSystem(f"EPSG:{SAMPLE_EPSG}")
    for name, layer in layers.items():
        assert layer.isValid() and layer.crs() == expected, name
        assert layer.extent().contains(where_photos_were_taken(layer.crs())), name
    info = shared.Node.from_url(relay.url, token=TOKEN).get_task(results["TASK_UUID"]).info()
    assert info.status == shared.TaskStatus.COMPLETED and info.name == "Through the relay"
    assert "node-secret" not in relay.log() and "node-secret" not in feedback.text()


def test_two_tasks_at_once_are_spread_over_both_nodes(relay, photo_folder, tmp_path):
    node = shared.Node.from_url(relay.url, token=TOKEN)
    photos = sorted(photo_folder.glob("*.JPG"))
    tasks = [node.create_task(photos[:3]) for _ in range(2)]
    for task in tasks:
        task.wait_for_completion(interval=0.2)
    placed = {line.split("node=")[1].split()[0] for line in relay.log().splitlines()
              if "task on node" in line and any(t.uuid in line for t in tasks)}
    assert len(placed) == 2, relay.log()[-2000:]


def test_cancel_in_qgis_cancels_through_the_relay(tmp_path_factory, photo_folder, tmp_path):
    tmp = tmp_path_factory.mktemp("slow-relay")
    with ServerGroup(tmp) as group:
        slow = group.start(start_devnode, seconds_per_image=2.0)
        relay = group.add(start_relay(tmp, [slow.url], check_interval=0.3))
        node = shared.Node.from_url(relay.url)
        feedback = RecordingFeedback()

        def cancel_when_running() -> None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                for uuid in node.list_tasks():
                    if node.get_task(uuid).info().status == shared.TaskStatus.RUNNING:
                        feedback.cancel()
                        return
                time.sleep(0.05)

        watcher = threading.Thread(target=cancel_when_running, daemon=True)
        watcher.start()
        with pytest.raises(QgsProcessingException, match="canceled"):
            run_algorithm("odxrelay:processimages", {"IMAGE_FOLDER": str(photo_folder), "SERVER": relay.url,
                                                     "RESULTS_FOLDER": str(tmp_path)}, feedback)
        watcher.join(5)
        [uuid] = node.list_tasks()
        assert node.get_task(uuid).info().status == shared.TaskStatus.CANCELED
        assert shared.Node.from_url(slow.url).get_task(uuid).info().status == shared.TaskStatus.CANCELED
