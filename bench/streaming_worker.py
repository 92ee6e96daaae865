"""`python -m bench.streaming_worker MODE RELAY_URL TOKEN CACHE_DIR`: one headless QGIS that loads one task's
orthophoto the plugin's way, streamed or downloaded, and draws a map of it, for bench/streaming.py.

QGIS starts first and says `ready`; the uuid then comes on stdin, the moment the bench sees the task COMPLETED,
so QGIS's own start-up is not counted. MODE `streamed`: the relay's signed URL (`core.streaming.stream_task`)
as a /vsicurl/ layer; `downloaded`: the task runner's download of all.zip into the results cache, extracted,
then the local file. Either way `layers.make_layer` makes the layer, and a QgsMapRendererSequentialJob draws
it at a map window's size over its whole extent. Prints one JSON line: seconds from the uuid to the image, and
how many sampled pixels the image has drawn.
"""
from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import QgsApplication, QgsMapRendererSequentialJob, QgsMapSettings
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor

MAP_SIZE = QSize(1200, 800)


class Quiet:
    """The task runner's reporter, saying nothing."""

    def progress(self, percent: float) -> None: ...
    def info(self, text: str) -> None: ...
    def console(self, text: str) -> None: ...
    def is_canceled(self) -> bool:
        return False

    def leave_running(self) -> bool:
        return False


def drawn_pixels(layer) -> int:
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(layer.extent())
    settings.setOutputSize(MAP_SIZE)
    settings.setBackgroundColor(QColor(255, 255, 255, 0))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    return sum(1 for x in range(0, image.width(), 10) for y in range(0, image.height(), 10)
               if image.pixelColor(x, y).alpha() > 0)


def main(mode: str, relay_url: str, token: str, cache_dir: str) -> dict:
    from pathlib import Path

    from qgis_plugin.core.cache import ResultsCache
    from qgis_plugin.core.products import LayerKind, LayerSpec, Product, find_results
    from qgis_plugin.core.runner import TaskRunner
    from qgis_plugin.core.streaming import stream_task
    from qgis_plugin.deps import shared
    from qgis_plugin.layers import make_layer

    print("ready", flush=True)
    uuid = sys.stdin.readline().strip()
    started = time.perf_counter()
    node = shared.Node.from_url(relay_url, token=token, timeout=600)
    if mode == "streamed":
        source = stream_task(node, uuid).results().get(Product.ORTHOPHOTO)
    else:
        outcome = TaskRunner(node, Quiet(), ResultsCache(Path(cache_dir))).load(uuid)
        source = find_results(outcome.folder).get(Product.ORTHOPHOTO)
    layer = make_layer(LayerSpec("orthophoto", "Orthophoto", source, LayerKind.ORTHOPHOTO))
    if not layer.isValid():
        raise RuntimeError(f"the orthophoto layer is not valid: {source}")
    pixels = drawn_pixels(layer)
    return {"mode": mode, "seconds": time.perf_counter() - started, "pixels": pixels, "width": layer.width(),
            "height": layer.height()}


if __name__ == "__main__":
    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    print(json.dumps(main(*sys.argv[1:5])), flush=True)
    app.exitQgis()
