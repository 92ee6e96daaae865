"""10. Streaming: from COMPLETED to the first map image in headless QGIS, the orthophoto streamed from the relay
(its signed URL read by GDAL /vsicurl/ with Range requests) against downloaded (the plugin's "keep a local
copy": all.zip down through the relay, extracted, the local file opened), side by side in one run.

The orthophoto is a real Cloud-Optimized GeoTIFF (tiled 512 px, overviews, uncompressed random RGB so that its
size is what it says: 500 MB in the full run, 24 MB with --quick), made once with GDAL under the bench cache.
A real NodeODX in test mode makes each task's all.zip around it (this task result is placed as its test output:
`tests/processing_results/odm_orthophoto/odm_orthophoto.tif`, as the client section does), so the relay holds,
archives and serves a large result exactly as it would a real one. Each run is a new task through the relay,
polled every 0.1 s; the clock starts when the poll sees COMPLETED and stops when QGIS (already started, in a
process of its own: `bench.streaming_worker`) has drawn a 1200 x 800 map of the whole orthophoto. A second row
measures a task that completed earlier: the clock starts once the relay holds its results (archived), as when
a user loads an older task. Runs alternate streamed, downloaded, downloaded, streamed; each task is removed
after its run, so every run starts cold.

In this section's rows "relay" is streamed and "direct" is downloaded, so the ratio is streamed / downloaded.
Everything runs on loopback, where moving 500 MB costs about a second on an idle machine: a download over a
real network takes longer by the time to move all.zip, a stream by that of the few MB a map reads, so these
ratios understate what streaming saves a remote user. Right after COMPLETED both ways wait for the relay to
fetch all.zip from the node (NodeODX serves nothing else), and a stream also for its orthophoto to be cut out.
"""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import requests

from shared import Node

from .client import large_outputs
from .context import Context
from .report import Bar, Row, Section, median
from .stack import MB, kind_problem, samples, stack

SIZES = {"full": {"orthophoto_mb": 500, "repetitions": 2}, "quick": {"orthophoto_mb": 24, "repetitions": 1}}
#: When the load is asked: the moment the task completes (the issue's measure), or once the relay holds the
#: task's results (a task that completed earlier, loaded later).
AT_ONCE, LATER = "at_completed", "after_archived"
WHEN = {AT_ONCE: "COMPLETED to first map image", LATER: "completed earlier: load to first map image"}
MODES = ("streamed", "downloaded")
TOKEN = "bench-streaming-token"
REPO = Path(__file__).resolve().parents[1]
WORKER_TIMEOUT = 900


def cog(cache: Path, size_mb: int) -> Path:
    """An RGB COG of about `size_mb` MB (overviews included), georeferenced in UTM 33N, made once and kept."""
    path = cache / f"streaming-orthophoto-{size_mb}mb.tif"
    if path.exists():
        return path
    from osgeo import gdal, osr

    gdal.UseExceptions()
    side = int(math.sqrt(size_mb * MB / 3 / (4 / 3)))  # 3 bytes a pixel, overviews add a third
    memory = gdal.GetDriverByName("MEM").Create("", side, side, 3, gdal.GDT_Byte)
    memory.SetGeoTransform((391000.0, 0.02, 0.0, 5815000.0, 0.0, -0.02))  # 2 cm pixels near Berlin
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    memory.SetProjection(srs.ExportToWkt())
    rng = np.random.default_rng(7)
    for band in range(1, 4):
        memory.GetRasterBand(band).WriteArray(rng.integers(0, 256, (side, side), dtype=np.uint8))
    partial = path.with_name(path.name + ".part")
    gdal.Translate(str(partial), memory, format="COG", creationOptions=[
        "COMPRESS=NONE", "BLOCKSIZE=512", "OVERVIEW_RESAMPLING=NEAREST", "BIGTIFF=IF_SAFER"])
    partial.replace(path)
    return path


def completed_task(relay_url: str, photos: list[Path]) -> tuple[str, float]:
    """A new task through the relay, polled every 0.1 s: its uuid and the moment COMPLETED was seen."""
    with Node.from_url(relay_url, token=TOKEN, timeout=600) as client:
        task = client.create_task(photos, name="bench streaming")
        while True:
            info = task.info()
            if info.status.is_final:
                if info.status.name != "COMPLETED":
                    raise RuntimeError(f"the bench task ended {info.status.name}: {info.last_error}")
                return task.uuid, time.perf_counter()
            time.sleep(0.1)


def archived(relay_data: Path, uuid: str, timeout: float = 300) -> float:
    """Wait until the relay holds the task's results in its results store; the moment it does."""
    deadline = time.perf_counter() + timeout
    while not (relay_data / "results" / uuid / "all.zip").is_file():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"the relay did not archive task {uuid} within {timeout:g} s")
        time.sleep(0.1)
    time.sleep(1.0)  # whatever the relay does next with a new result (its facts) is over, as it is for old tasks
    return time.perf_counter()


def one_run(mode: str, relay_url: str, photos: list[Path], folder: Path, relay_data: Path | None = None) -> dict:
    """QGIS started and waiting, then a task; the time from its COMPLETED to QGIS's map image, or, with
    `relay_data`, from a load asked once the relay holds the task's results (a task that completed earlier)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    worker = subprocess.Popen([sys.executable, "-m", "bench.streaming_worker", mode, relay_url, TOKEN, str(folder)],
                              cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        if worker.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the QGIS worker did not start: {worker.stderr.read()[-2000:]}")
        uuid, completed = completed_task(relay_url, photos)
        if relay_data is not None:
            completed = archived(relay_data, uuid)
        worker.stdin.write(uuid + "\n")
        worker.stdin.flush()
        line = worker.stdout.readline()
        drawn = time.perf_counter()
        worker.wait(WORKER_TIMEOUT)
        if worker.returncode != 0 or not line.strip():
            raise RuntimeError(f"the QGIS worker ({mode}) failed: {worker.stderr.read()[-2000:]}")
    finally:
        if worker.poll() is None:
            worker.kill()
    result = json.loads(line)
    requests.post(relay_url + "/task/remove", data={"uuid": uuid}, params={"token": TOKEN}, timeout=120)
    shutil.rmtree(folder, ignore_errors=True)
    return {**result, "seconds": drawn - completed, "worker_seconds": result["seconds"], "uuid": uuid}


def run(ctx: Context) -> Section:
    size = SIZES[ctx.mode]
    section = Section("streaming", f"Streaming into QGIS: COMPLETED to first map image, {size['orthophoto_mb']} MB "
                                   "orthophoto (COG), streamed vs downloaded")
    problem = kind_problem("nodeodx")
    if problem:
        section.error = problem
        return section
    workdir = ctx.scratch / "streaming"
    outputs = large_outputs(workdir / "nodeodx-large-outputs", cog(ctx.cache, size["orthophoto_mb"]))
    photos = samples(ctx.cache, 2)
    runs: dict[str, dict[str, list[dict]]] = {when: {mode: [] for mode in MODES} for when in WHEN}
    with stack(workdir / "stack", {"parallel_queue_processing": 1, "workdir": outputs}, {"token": TOKEN},
               kind="nodeodx") as served:
        for when in WHEN:
            for rep in range(size["repetitions"]):
                for mode in (MODES if rep % 2 == 0 else MODES[::-1]):
                    runs[when][mode].append(one_run(mode, served.relay.url, photos, workdir / "qgis-cache",
                                                    served.relay.data_dir if when == LATER else None))
    for when, label in WHEN.items():
        streamed, downloaded = (median(r["seconds"] for r in runs[when][mode]) for mode in MODES)
        section.rows.append(Row(f"{label}, streamed | downloaded", streamed, downloaded, "s", "NodeODX"))
        if when == AT_ONCE:
            section.bars.append(Bar("first map image: streamed / downloaded (medians)", streamed / downloaded, "<",
                                    1.0, node="NodeODX"))
    if any(r["pixels"] == 0 for by_mode in runs.values() for rs in by_mode.values() for r in rs):
        section.error = "a map image was empty: " + json.dumps(runs)[:400]
    section.details = {"orthophoto_mb": size["orthophoto_mb"], "orthophoto_bytes": cog(ctx.cache,
                       size["orthophoto_mb"]).stat().st_size, "repetitions": size["repetitions"], "runs": runs}
    return section
