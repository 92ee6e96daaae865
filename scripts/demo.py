"""The main job, end to end: sample drone photos → relay → two development nodes → map outputs,
first through the library's client, then through the QGIS plugin run by qgis_process, and last the QGIS
desktop itself (under Xvfb) with the plugin's task panel and the results, saved as a PNG of its window.

Run by `make demo`. Everything it starts listens on 127.0.0.1 and is stopped at the end; everything
it writes goes under var/demo/.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from osgeo import gdal, osr

from devnode.samples import SAMPLE_LATITUDE, SAMPLE_LONGITUDE, make_samples
from scripts.demo_desktop import WindowShotError, shoot_window
from shared import Node
from shared.assets import Product, asset_for
from testkit.devnode import start_devnode
from testkit.relay import start_relay

OUT = Path("var/demo")
WINDOW_PNG = OUT / "qgis" / "odx-relay-qgis-window.png"


def centre_lat_lon(raster: Path) -> tuple[float, float]:
    """Where a GeoTIFF's centre is, in WGS 84: the proof that the outputs are georeferenced."""
    ds = gdal.Open(str(raster))
    x0, dx, _, y0, _, dy = ds.GetGeoTransform()
    cx, cy = x0 + dx * ds.RasterXSize / 2, y0 + dy * ds.RasterYSize / 2
    src = osr.SpatialReference(wkt=ds.GetProjection())
    dst = osr.SpatialReference()
    dst.ImportFromEPSG(4326)
    dst.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    src.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    lon, lat, _ = osr.CoordinateTransformation(src, dst).TransformPoint(cx, cy)
    return lat, lon


def main() -> int:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    started = time.monotonic()
    photos = make_samples(OUT / "photos", count=12)
    print(f"1. {len(photos)} sample photos in {OUT / 'photos'} "
          f"(taken around {SAMPLE_LATITUDE:.4f} N, {SAMPLE_LONGITUDE:.4f} E)")
    servers = []
    try:
        servers.append(start_devnode(OUT, slots=1, seconds_per_image=0.2))
        servers.append(start_devnode(OUT, slots=2, seconds_per_image=0.2, token="node-secret"))
        relay = start_relay(OUT, [servers[0].url, servers[1].url + "?token=node-secret"], check_interval=2)
        servers.append(relay)
        print(f"2. relay on {relay.url} in front of development nodes {servers[0].url} and {servers[1].url}")
        node = Node.from_url(relay.url)
        info = node.info()
        print(f"   /info: {info.extra['relay']['online']} nodes online, {info.max_parallel_tasks} slots, "
              f"{info.available_memory / 2**30:.1f} GB available")
        shown = set()

        def uploaded(percent: float) -> None:
            if int(percent) // 25 not in shown:
                shown.add(int(percent) // 25)
                print(f"   upload {percent:5.1f} %")

        task = node.create_task(photos, {"dsm": True, "dtm": True}, name="demo", progress_callback=uploaded)
        print(f"3. task {task.uuid} committed; processing")
        last = [-1]

        def show(status) -> None:
            if int(status.progress) // 10 != last[0]:
                last[0] = int(status.progress) // 10
                print(f"   {status.status.name.lower():9} {status.progress:5.1f} %")

        task.wait_for_completion(status_callback=show, interval=0.5)
        results = Path(task.download_assets(OUT / "results"))
        print(f"4. results of {task.uuid} downloaded to {results}")
        for product in (Product.ORTHOPHOTO, Product.DSM, Product.DTM, Product.POINT_CLOUD_LAZ, Product.POINT_CLOUD_EPT):
            path = results / asset_for(product).path
            print(f"   {product.value:11} {path}" + ("" if path.exists() else "  (missing)"))
        ortho = results / asset_for(Product.ORTHOPHOTO).path
        lat, lon = centre_lat_lon(ortho)
        print(f"5. orthophoto centre: {lat:.5f} N, {lon:.5f} E (gdalinfo {ortho})")
        if abs(lat - SAMPLE_LATITUDE) > 0.01 or abs(lon - SAMPLE_LONGITUDE) > 0.01:
            print("   the orthophoto is not where the photos were taken")
            return 1
        print("6. the same photos from QGIS: odxrelay:processimages through qgis_process.bin, "
              "then a project and a map render")
        qgis = subprocess.run([sys.executable, "-m", "scripts.demo_qgis", relay.url, str(OUT / "photos"),
                               "--out", str(OUT / "qgis"), "--name", "ODX Relay demo"],
                              stdout=subprocess.PIPE, text=True)
        print(qgis.stdout, end="")
        if qgis.returncode != 0:
            return qgis.returncode
        printed = dict(line.split(maxsplit=1) for line in qgis.stdout.splitlines() if " " in line.strip())
        print("7. QGIS itself under Xvfb: the demo project, the plugin's task panel on the relay, a PNG of the window")
        desktop_started = time.monotonic()
        try:
            shot = shoot_window(OUT / "qgis" / "odx-relay-demo.qgz", WINDOW_PNG, relay.url,
                                OUT / "qgis" / "plugins" / "odx_relay", task_uuid=printed.get("task:", ""))
        except WindowShotError as exc:
            print(f"   no screenshot of QGIS: {exc}")
            return 1
        for task_line in shot["tasks"]:
            print(f"   panel: {task_line}")
        if not shot["ok"]:
            print(f"   the screenshot is not what it should be: {shot['message']} ({WINDOW_PNG})")
            return 1
        print(f"   {shot['message']} (QGIS started, shown and closed in {time.monotonic() - desktop_started:.0f} s)")
    finally:
        for server in reversed(servers):
            server.stop()
    print(f"done in {time.monotonic() - started:.0f} s")
    print(f"QGIS window with the task panel and the results: {WINDOW_PNG.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
