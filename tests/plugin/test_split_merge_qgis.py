"""Issue 12, item 5: “Use the whole cluster” in `processimages` sets split and split-overlap from the photos and
the relay's nodes online, so a user never computes them (pure cases, then a real run in headless QGIS through a
real relay of two development nodes)."""
from __future__ import annotations

import pytest
import requests

from devnode.samples import make_samples
from qgis_plugin.core.whole_cluster import MIN_SUBMODEL_IMAGES, cluster_split, nodes_online, photo_spacing_m
from testkit.devnode import start_devnode
from testkit.relay import start_relay
from testkit.servers import ServerGroup
from tests.plugin.plugin_helpers import FAST, run_algorithm

RELAY = {"relay": {"online": 4, "nodes": 4}}
# a 5 x 8 grid of photos about 20 m apart (1e-4 degrees of latitude is 11 m)
GRID = [(52.47 + row * 1.8e-4, 13.40 + col * 2.95e-4) for row in range(5) for col in range(8)]


def test_one_submodel_per_node_online() -> None:
    chosen = cluster_split(40, RELAY, GRID)
    assert chosen.options["split"] == 10  # 4 nodes, 40 photos
    assert 50 <= chosen.options["split-overlap"] <= 70  # three spacings of about 20 m
    assert "4 nodes online" in chosen.note and "4 submodels" in chosen.note
    assert cluster_split(41, RELAY).options == {"split": 11}  # no positions: ODM's own overlap
    assert cluster_split(30, RELAY).options["split"] == 10  # fewer photos than nodes x 10: fewer submodels


@pytest.mark.parametrize("count,extra,why", [
    (40, {}, "single node"),
    (40, {"relay": {"online": 1}}, "1 node online"),
    (2 * MIN_SUBMODEL_IMAGES - 1, RELAY, "too few"),
])
def test_no_split(count: int, extra: dict, why: str) -> None:
    chosen = cluster_split(count, extra)
    assert chosen.options == {} and why in chosen.note


def test_spacing_and_nodes() -> None:
    assert photo_spacing_m([(52.0, 13.0)]) is None
    assert 110 < photo_spacing_m([(52.0, 13.0), (52.001, 13.0)]) < 112
    assert nodes_online({"relay": {"online": 3}}) == 3 and nodes_online({}) == 1
    assert cluster_split(4000, RELAY, [(52.0, 13.0), (52.1, 13.0)]).options["split-overlap"] == 150  # bounded


@pytest.mark.slow
@pytest.mark.usefixtures("odx_provider", "fast_polls")
def test_processimages_uses_the_whole_cluster(tmp_path, qgis_processing) -> None:
    """Two nodes online, 24 photos: the task reaches the relay with split 12, an overlap, and the relay's own
    sm-cluster; an option the user set wins."""
    photos = tmp_path / "photos"
    make_samples(photos, count=24)
    with ServerGroup(tmp_path) as group:
        nodes = [group.start(start_devnode, **FAST) for _ in range(2)]
        relay = group.add(start_relay(tmp_path, [n.url for n in nodes], check_interval=0.3))
        results, _, feedback = run_algorithm("odxrelay:processimages", {
            "IMAGE_FOLDER": str(photos), "SERVER": relay.url, "WHOLE_CLUSTER": True, "PRESET": 1,
            "RESULTS_FOLDER": str(tmp_path / "results")})
        info = requests.get(f"{relay.url}/task/{results['TASK_UUID']}/info", timeout=10).json()
        options = {o["name"]: o["value"] for o in info["options"]}
        assert options["split"] == 12 and 20 <= options["split-overlap"] <= 150
        assert options["sm-cluster"].startswith(relay.url + "/?token=sm.")
        assert any("2 nodes online, so 2 submodels of about 12 photos" in line for line in feedback.infos)

        results, _, feedback = run_algorithm("odxrelay:processimages", {
            "IMAGE_FOLDER": str(photos), "SERVER": relay.url, "WHOLE_CLUSTER": True, "PRESET": 1,
            "OPTIONS": "split=20", "RESULTS_FOLDER": str(tmp_path / "results")})
        info = requests.get(f"{relay.url}/task/{results['TASK_UUID']}/info", timeout=10).json()
        assert {o["name"]: o["value"] for o in info["options"]}["split"] == 20
        assert any("split already: kept as given" in line for line in feedback.infos)
