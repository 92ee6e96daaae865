"""The relay's results catalogue (its STAC API) from QGIS, which has no STAC data source in 3.22: "Find results in
the relay's catalogue" searches by extent and capture dates against a real relay, lists the tasks as footprints,
pages through `next` links, and loads the first ones streamed."""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from qgis.core import QgsProcessingException

from devnode.samples import SAMPLE_LATITUDE, SAMPLE_LONGITUDE
from qgis_plugin.core import catalogue
from qgis_plugin.core.catalogue import interval, search
from qgis_plugin.deps import shared
from testkit.servers import ServerGroup
from tests.plugin.plugin_helpers import layers_to_load, relay_with_tasks, run_algorithm

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("odx_provider", "fast_polls")]
TOKEN = "catalogue-client-token"
HERE = (f"{SAMPLE_LONGITUDE - 0.01},{SAMPLE_LONGITUDE + 0.01},{SAMPLE_LATITUDE - 0.01},"
        f"{SAMPLE_LATITUDE + 0.01} [EPSG:4326]")
ELSEWHERE = "2.30,2.40,48.80,48.90 [EPSG:4326]"  # Paris


@pytest.fixture(scope="module")
def catalogued(tmp_path_factory, sample_images: list[Path]) -> Iterator[tuple]:
    """A relay with a token before a development node, and three completed tasks in its catalogue."""
    with ServerGroup(tmp_path_factory.mktemp("catalogue")) as group:
        relay, uuids = relay_with_tasks(group, TOKEN, [sample_images[:3 + i] for i in range(3)], "Catalogued")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the relay reads each task's facts once it has archived its results
            found = requests.get(f"{relay.url}/stac/search", params={"token": TOKEN, "limit": 10}, timeout=30).json()
            if len([f for f in found["features"] if f.get("geometry")]) == 3:
                break
            time.sleep(0.2)
        yield relay, uuids


def find(relay, **parameters):
    return run_algorithm("odxrelay:findresults", {"SERVER": f"{relay.url}?token={TOKEN}", "OUTPUT": "memory:",
                                                  **parameters})


def test_the_catalogue_is_searched_by_extent_and_dates(catalogued, tmp_path: Path) -> None:
    relay, uuids = catalogued
    results, context, feedback = find(relay, EXTENT=HERE, START="2024-05-01T00:00:00", END="2024-05-31T00:00:00")
    assert results["FOUND"] == 3 and results["LOADED"] == ""
    footprints = results["OUTPUT"]  # (processing.run hands back the layer itself)
    assert footprints.crs().authid() == "EPSG:4326" and footprints.featureCount() == 3
    found = {f["uuid"]: f for f in footprints.getFeatures()}
    assert set(found) == set(uuids)
    for feature in found.values():
        box = feature.geometry().boundingBox()
        assert feature.geometry().area() > 0
        assert box.xMinimum() < SAMPLE_LONGITUDE < box.xMaximum() and box.yMinimum() < SAMPLE_LATITUDE < box.yMaximum()
        assert feature["start"].startswith("2024-05-04T10:00") and "orthophoto" in feature["assets"]
        assert feature["title"].startswith("Catalogued")
    assert TOKEN not in feedback.text()
    assert find(relay, EXTENT=ELSEWHERE)[0]["FOUND"] == 0
    assert find(relay, EXTENT=HERE, START="2025-01-01T00:00:00")[0]["FOUND"] == 0
    assert find(relay, END="2024-01-01T00:00:00")[0]["FOUND"] == 0
    assert find(relay)[0]["FOUND"] == 3  # everywhere, any time


def test_search_pages_through_next_links(catalogued, monkeypatch: pytest.MonkeyPatch) -> None:
    relay, uuids = catalogued
    node = shared.Node.from_url(relay.url, token=TOKEN)
    asked = []
    original = node.get_json
    monkeypatch.setattr(node, "get_json", lambda path, query=None: asked.append((path, dict(query or {})))
                        or original(path, query))
    items = search(node, limit=3, start=dt.datetime(2024, 5, 1, tzinfo=dt.UTC))
    assert {i.uuid for i in items} == set(uuids) and len(asked) == 1
    assert interval(dt.datetime(2024, 5, 1, tzinfo=dt.UTC), None) == "2024-05-01T00:00:00Z/.."
    monkeypatch.setattr(catalogue, "PAGE", 1)  # one item a page: the next links are followed
    asked.clear()
    items = search(node, limit=3)
    assert [i.uuid for i in items] == sorted(uuids, key=[i.uuid for i in items].index) and len(set(
        i.uuid for i in items)) == 3
    assert len(asked) == 3 and all("token" not in query for _, query in asked)  # the client adds its own, once
    assert "cursor" in asked[1][1] and asked[1][0] == "/stac/search"
    assert len(search(node, limit=2)) == 2


def test_found_results_load_streamed(catalogued, tmp_path: Path) -> None:
    relay, uuids = catalogued
    results, context, feedback = find(relay, EXTENT=HERE, LOAD=1, RESULTS_FOLDER=str(tmp_path / "results"))
    assert results["FOUND"] == 3 and len(results["LOADED"].split(",")) == 1
    layers = layers_to_load(context)
    assert layers["Orthophoto"].isValid() and "/signed/" in layers["Orthophoto"].source()
    assert layers["Point cloud"].isValid()
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_a_server_without_a_catalogue_says_so(devnode) -> None:
    with pytest.raises(QgsProcessingException, match="has no results catalogue"):
        run_algorithm("odxrelay:findresults", {"SERVER": devnode.url, "OUTPUT": "memory:"})
