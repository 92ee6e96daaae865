"""The plugin through a relay in front of two real NodeODX 2.3.1 nodes (test mode): the user's options
reach the node, and the orthophoto and elevation models load as valid layers. NodeODX's test outputs have
no EPT, only a LAZ, which Debian's QGIS 3.22 (no PDAL provider) cannot show: the user is told so."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from qgis_plugin.deps import shared
from testkit.nodeodx import start_nodeodx
from testkit.relay import start_relay
from testkit.servers import ServerGroup
from tests.plugin.plugin_helpers import layers_to_load, run_algorithm

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("odx_provider", "fast_polls")]
TOKEN = "relay-client-token"
NODE_TOKEN = "nodeodx-secret"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[tuple]:
    tmp = tmp_path_factory.mktemp("nodeodx-relay")
    with ServerGroup(tmp) as group:
        plain = group.start(start_nodeodx)
        secured = group.start(start_nodeodx, token=NODE_TOKEN)
        relay = group.add(start_relay(tmp, [plain.url, f"{secured.url}?token={NODE_TOKEN}"], token=TOKEN,
                                      check_interval=0.3))
        yield relay, plain, secured


def test_processimages_through_the_relay_to_real_nodeodx(cluster, photo_folder, tmp_path):
    relay, *nodes = cluster
    results, context, feedback = run_algorithm("odxrelay:processimages", {
        "IMAGE_FOLDER": str(photo_folder), "SERVER": f"{relay.url}?token={TOKEN}", "PRESET": 0,
        "OPTIONS": "orthophoto-resolution=7\ndsm=true\ndtm=true\npc-quality=low", "TASK_NAME": "Real node",
        "RESULTS_FOLDER": str(tmp_path)})
    layers = layers_to_load(context)
    assert {"Orthophoto", "DSM (surface)", "DTM (terrain)"} <= set(layers), feedback.text()
    for name in ("Orthophoto", "DSM (surface)", "DTM (terrain)"):
        layer = layers[name]
        assert layer.isValid() and layer.crs().isValid() and not layer.extent().isEmpty(), name
    assert "Point cloud" not in layers and "odm_georeferenced_model.laz" in feedback.text()
    uuid = results["TASK_UUID"]
    answers = [requests.get(node.api(f"/task/{uuid}/info"), timeout=10).json() for node in nodes]
    held = [shared.TaskInfo.from_json(a) for a in answers if "error" not in a]
    assert len(held) == 1, answers  # exactly one node holds the task
    info = held[0]
    assert info.name == "Real node" and info.status == shared.TaskStatus.COMPLETED
    chosen = info.options
    assert chosen["orthophoto-resolution"] == 7 and chosen["dsm"] is True and chosen["dtm"] is True
    assert chosen["pc-quality"] == "low"
    assert NODE_TOKEN not in relay.log() and NODE_TOKEN not in feedback.text()
