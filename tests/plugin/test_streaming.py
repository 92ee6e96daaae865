"""Streamed results in real QGIS: "Load results" in streaming mode adds the orthophoto, DSM and DTM as /vsicurl/
rasters and the EPT point cloud over HTTP from a real relay's signed URLs, nothing downloaded; they are valid
and draw; a saved project holds no token; and a project opened after its links expired gets fresh ones (with the
token saved for that relay), or, without a token, shows the layers as unavailable."""
from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from qgis.core import (
    QgsMapLayer,
    QgsMapRendererSequentialJob,
    QgsMapSettings,
    QgsPointCloudLayer,
    QgsRasterLayer,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor

from qgis_plugin.deps import shared
from testkit.servers import ServerGroup
from tests.plugin.plugin_helpers import layers_to_load, relay_with_tasks, run_algorithm

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("odx_provider", "fast_polls")]
TOKEN = "streaming-client-token"
STREAM = 1
SIGNED = re.compile(r"/task/[^/]+/signed/(\d+)/([0-9a-f]+)/([\w.\-]+)")


@pytest.fixture(scope="module")
def relay_task(tmp_path_factory, sample_images: list[Path]) -> Iterator[tuple]:
    """A relay with a token before a development node, and one completed task through it."""
    with ServerGroup(tmp_path_factory.mktemp("streaming")) as group:
        relay, (uuid,) = relay_with_tasks(group, TOKEN, [sample_images[:4]], "Streamed")
        yield relay, uuid


def render(layers: list[QgsMapLayer]) -> int:
    """Draw the layers over their extent, as QGIS's map does; the number of pixels that are not background."""
    settings = QgsMapSettings()
    settings.setLayers(layers)
    settings.setDestinationCrs(layers[0].crs())
    settings.setExtent(layers[0].extent())
    settings.setOutputSize(QSize(200, 200))
    settings.setBackgroundColor(QColor(255, 255, 255, 0))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    return sum(1 for x in range(0, 200, 4) for y in range(0, 200, 4) if image.pixelColor(x, y).alpha() > 0)


def stream(relay, uuid: str, tmp_path: Path, load: bool = False):
    return run_algorithm("odxrelay:loadresults", {"TASK": uuid, "SERVER": f"{relay.url}?token={TOKEN}",
                                                  "MODE": STREAM, "RESULTS_FOLDER": str(tmp_path / "results")},
                         load=load)


def test_streamed_layers_are_valid_and_draw_without_a_download(relay_task, tmp_path: Path) -> None:
    relay, uuid = relay_task
    results, context, feedback = stream(relay, uuid, tmp_path)
    layers = layers_to_load(context)
    assert {"Orthophoto", "DSM (surface)", "DTM (terrain)", "Point cloud", "Camera positions"} <= set(layers)
    for name, layer in layers.items():
        assert layer.isValid(), name
        assert TOKEN not in layer.source(), name
        assert SIGNED.search(layer.source()), (name, layer.source())
    assert layers["Orthophoto"].source().startswith(f"/vsicurl/{relay.url}/task/{uuid}/signed/")
    assert isinstance(layers["Point cloud"], QgsPointCloudLayer)
    assert layers["Point cloud"].providerType() == "ept"
    assert layers["Point cloud"].source().startswith(f"{relay.url}/task/{uuid}/signed/")
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())  # nothing downloaded
    assert results["RESULTS"] is None and results["ORTHOPHOTO"].startswith("/vsicurl/")
    assert "expire" in feedback.text()
    ortho: QgsRasterLayer = layers["Orthophoto"]
    assert ortho.dataProvider().bandCount() == 4
    assert render([ortho]) > 100
    assert render([layers["DSM (surface)"]]) > 100
    assert render([layers["Point cloud"]]) > 20  # its tiles, fetched one by one through the signed path


def test_a_saved_project_holds_no_token_and_renews_expired_links(relay_task, tmp_path: Path, clean_project,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    relay, uuid = relay_task
    stream(relay, uuid, tmp_path, load=True)
    assert len(clean_project.mapLayers()) >= 6
    saved = tmp_path / "streamed.qgs"
    assert clean_project.write(str(saved))
    text = saved.read_text()
    assert TOKEN not in text and "token=" not in text
    assert len(set(SIGNED.findall(text))) >= 5

    # the links go stale: the same project, with links of this task that expired a moment ago
    short = requests.get(f"{relay.url}/task/{uuid}/signed-urls", params={"token": TOKEN, "expires_in": 1},
                         timeout=30).json()
    time.sleep(short["expires"] + 1.1 - time.time())
    expired = {name: entry["path"] for name, entry in short["assets"].items()}
    assert requests.get(relay.url + expired["orthophoto.tif"], timeout=30).status_code == 403
    stale = SIGNED.sub(lambda m: expired[m.group(3)] if m.group(3) in expired else m.group(0), text)
    assert stale != text
    (tmp_path / "stale.qgs").write_text(stale)

    # opened with the relay's token saved (here: ODX_RELAY_TOKEN): fresh links, valid layers that draw
    monkeypatch.setenv("ODX_RELAY_TOKEN", TOKEN)
    clean_project.clear()
    assert clean_project.read(str(tmp_path / "stale.qgs"))
    layers = {layer.name(): layer for layer in clean_project.mapLayers().values()}
    for name, layer in layers.items():
        assert layer.isValid(), name
        found = SIGNED.search(layer.source())
        assert found and int(found.group(1)) > time.time() + 3600, (name, layer.source())
    assert render([layers["Orthophoto"]]) > 100

    # without a token for that relay: the layers stay as saved, unavailable, and nothing crashes
    monkeypatch.delenv("ODX_RELAY_TOKEN")
    monkeypatch.setattr("qgis_plugin.settings.saved_token", lambda: "")
    from qgis_plugin import stream_sources
    stream_sources.register().fresh.clear()  # forgets the answers it had
    stream_sources.unregister()
    clean_project.clear()
    clean_project.read(str(tmp_path / "stale.qgs"))
    ortho = next(layer for layer in clean_project.mapLayers().values() if layer.name() == "Orthophoto")
    assert not ortho.isValid() and expired["orthophoto.tif"] in ortho.source()


def test_a_plain_nodeodx_node_cannot_stream_and_the_results_download(devnode, tmp_path: Path,
                                                                      sample_images: list[Path]) -> None:
    task = shared.Node.from_url(devnode.url).create_task(sample_images[:3])
    task.wait_for_completion(interval=0.2)
    results, context, feedback = run_algorithm("odxrelay:loadresults", {
        "TASK": task.uuid, "SERVER": devnode.url, "MODE": STREAM, "RESULTS_FOLDER": str(tmp_path / "results")})
    assert "cannot stream results" in feedback.text() and "downloading them" in feedback.text()
    assert results["RESULTS"] and Path(results["RESULTS"]).is_dir()
    assert layers_to_load(context)["Orthophoto"].isValid()


def test_the_relay_s_word_on_a_raster_that_is_not_a_cog_reaches_the_user(relay_task, sample_images: list[Path],
                                                                          tmp_path: Path) -> None:
    relay, _ = relay_task
    task = shared.Node.from_url(relay.url, token=TOKEN).create_task(sample_images[:3], {"cog": False})
    task.wait_for_completion(interval=0.2)
    results, context, feedback = stream(relay, task.uuid, tmp_path)
    assert any("orthophoto.tif is not a Cloud-Optimized GeoTIFF" in w and "no overviews" in w
               for w in feedback.warnings), feedback.warnings
    assert layers_to_load(context)["Orthophoto"].isValid()  # it still streams, slowly
