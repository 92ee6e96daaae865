"""9. Client: our client (`shared.Node`, the plugin's) against pyodx 1.5.14, upload and download, side by side.

Each client runs in a process of its own (`bench.client_worker`, which imports only that client), so
its time and its peak resident memory (VmHWM, the whole process) are its own; both go to the same
server in one interleaved loop (ours then pyodx, then the other way round), each with its own defaults
(ours: 4 parallel uploads, 4 parallel ranges; pyodx: 10 parallel uploads, 16 parallel ranges).

- upload: `create_task` of 30 photos of 8 MB (random bytes named `IMG_nnnn.JPG`: NodeODX's test mode
  does not decode them; made once under the bench cache), init to commit, to a real NodeODX in test
  mode directly and through a relay in front of it; the task is removed after each run;
- download: `download_zip` of one completed task whose all.zip is large (NodeODX's test mode zips the
  files of its `tests/processing_results`, a few hundred KB; here that node's copy of them holds a 256 MB
  orthophoto of random bytes, so the node itself makes an all.zip of 256 MB): from the plain NodeODX
  (which ignores Range: one stream) and through a relay in front of it (which answers Range from its
  cache, filled once before the timing: parallel ranges for both clients);
- the orthophoto alone: ours `download_asset("orthophoto.tif")` (the relay serves it alone; from the node,
  which serves only all.zip, it downloads all.zip and takes it out), pyodx `download_zip` and extract.

In this section's rows the "relay" column is our client and "direct" is pyodx, so "ratio" is ours /
pyodx; the node column says where the client sent to: the node itself or the relay in front of it.
Bars (the issue's), on the real node: upload time ours / pyodx <= 1.0, our peak RSS <= 0.2 x pyodx's.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import requests

from shared import Node
from testkit import nodeodx

from .context import Context
from .report import Bar, Row, Section, median
from .stack import KINDS, MB, kind_problem, random_file, samples, stack

SIZES = {"full": {"photos": 30, "photo_mb": 8, "zip_mb": 256, "repetitions": 5},
         "quick": {"photos": 4, "photo_mb": 8, "zip_mb": 16, "repetitions": 1}}
CLIENTS = ("ours", "pyodx")
#: uploads: a committed task never gets to processing before it is removed; downloads: the task ends at once
UPLOAD_FLAGS = {"parallel_queue_processing": 4, "test_seconds": 3600}
DOWNLOAD_FLAGS = {"parallel_queue_processing": 2}
#: where each client sends to: the node itself, or the relay in front of it (`Stack.url`'s names for them)
SIDES_OF = {"node": "direct", "relay": "relay"}
WORKER_TIMEOUT = 600
REPO = Path(__file__).resolve().parents[1]


def photos(cache: Path, count: int, size_mb: int) -> list[Path]:
    """`count` files of `size_mb` MB of random bytes named like camera JPEGs, written once and kept."""
    folder = cache / f"client-photos-{size_mb}mb"
    folder.mkdir(parents=True, exist_ok=True)
    return [random_file(folder / f"IMG_{i:04d}.JPG", size_mb * MB) for i in range(count)]


def orthophoto(cache: Path, size_mb: int) -> Path:
    """`size_mb` MB of random bytes to stand for an orthophoto (incompressible), written once and kept."""
    return random_file(cache / f"client-orthophoto-{size_mb}mb.tif", size_mb * MB)


def large_outputs(root: Path, tif: Path) -> Path:
    """A NodeODX working folder whose test outputs (`tests/processing_results`, which NodeODX's test mode zips
    into each task's all.zip) are the build's with `tif` as the orthophoto: the node makes a large all.zip
    itself, so whatever the relay keeps of it (its cache, its results copy) is large too."""
    results = root / "tests" / "processing_results"
    shutil.rmtree(root, ignore_errors=True)
    (results / "odm_orthophoto").mkdir(parents=True)
    for entry in (nodeodx.BUILD / "tests" / "processing_results").iterdir():
        if entry.name not in ("odm_orthophoto", "all.zip"):
            (results / entry.name).symlink_to(entry)
    target = results / "odm_orthophoto" / "odm_orthophoto.tif"
    try:
        os.link(tif, target)
    except OSError:
        shutil.copyfile(tif, target)
    return root


def completed_task(relay_url: str, cache: Path) -> str:
    """A task created through the relay and run to completion on its node (all.zip made and all)."""
    with Node.from_url(relay_url, timeout=120) as client:
        task = client.create_task(samples(cache, 2), name="bench client download")
        task.wait_for_completion(interval=0.2)
    return task.uuid


def run_worker(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, "-m", "bench.client_worker", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=WORKER_TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"client worker {args[:3]} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def interleaved_clients(repetitions: int, targets: list[str], run) -> dict[str, dict[str, list[dict]]]:
    """`run(target, client)` for every target and client, forwards then backwards in turn (ABBA)."""
    pairs = [(target, client) for target in targets for client in CLIENTS]
    results: dict[str, dict[str, list[dict]]] = {t: {c: [] for c in CLIENTS} for t in targets}
    for rep in range(repetitions):
        for target, client in (pairs if rep % 2 == 0 else pairs[::-1]):
            results[target][client].append(run(target, client))
    return results


def summary(runs: list[dict]) -> dict:
    return {"seconds": median(r["seconds"] for r in runs), "peak_rss_mb": median(r["peak_rss_mb"] for r in runs),
            "cpu_seconds": median(r["cpu_seconds"] for r in runs), "runs": runs}


def run(ctx: Context) -> Section:
    size = SIZES[ctx.mode]
    section = Section("client", f"Client: shared.Node vs pyodx, {size['photos']} x {size['photo_mb']} MB up, "
                                f"{size['zip_mb']} MB all.zip down")
    if importlib.util.find_spec("pyodx") is None:
        section.error = "pyodx is not installed: nothing to compare with"
        return section
    if "nodeodx" not in ctx.nodes or kind_problem("nodeodx"):
        section.error = kind_problem("nodeodx") or "the client is measured against a real NodeODX: add it to --nodes"
        return section
    label = KINDS["nodeodx"]
    files = photos(ctx.cache, size["photos"], size["photo_mb"])
    workdir = ctx.scratch / "client"
    downloads = workdir / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    outputs = large_outputs(workdir / "nodeodx-large-outputs", orthophoto(ctx.cache, size["zip_mb"]))
    with stack(workdir / "up", UPLOAD_FLAGS, kind="nodeodx") as up, \
            stack(workdir / "down", {**DOWNLOAD_FLAGS, "workdir": outputs}, kind="nodeodx") as down:
        uuid = completed_task(down.relay.url, ctx.cache)
        with requests.get(down.relay.url + f"/task/{uuid}/download/all.zip", stream=True, timeout=300) as warm:
            for _ in warm.iter_content(MB):  # fills the relay's cache: every timed download is served from it
                pass
        uploads = interleaved_clients(size["repetitions"], list(SIDES_OF), lambda target, client: run_worker(
            ["upload", client, up.url(SIDES_OF[target]), *map(str, files)]))
        fetched = interleaved_clients(size["repetitions"], list(SIDES_OF), lambda target, client: run_worker(
            ["download", client, down.url(SIDES_OF[target]), uuid, str(downloads / client)]))
        with requests.get(down.relay.url + f"/task/{uuid}/download/orthophoto.tif", stream=True, timeout=300) as warm:
            for _ in warm.iter_content(MB):  # the relay cuts the asset out of its copy once
                pass
        assets = interleaved_clients(size["repetitions"], list(SIDES_OF), lambda target, client: run_worker(
            ["asset", client, down.url(SIDES_OF[target]), uuid, str(downloads / client)]))
    details: dict = {"photos": size["photos"], "photo_mb": size["photo_mb"], "zip_mb": size["zip_mb"],
                     "repetitions": size["repetitions"]}
    sizes = {r["bytes"] for target in fetched.values() for runs in target.values() for r in runs}
    if len(sizes) != 1 or min(sizes) < size["zip_mb"] * MB:
        section.error = f"all.zip sizes differ or are short of {size['zip_mb']} MB: {sorted(sizes)}"
    details["zip_bytes"] = max(sizes)
    tifs = {r["bytes"] for target in assets.values() for runs in target.values() for r in runs}
    if tifs != {size["zip_mb"] * MB}:
        section.error = f"the orthophotos downloaded are not the node's ({size['zip_mb']} MB): {sorted(tifs)}"
    jobs = (("upload", uploads), ("download all.zip", fetched), ("orthophoto.tif alone", assets))
    for job, results in jobs:
        for target in SIDES_OF:
            where = label if target == "node" else "relay"
            ours, theirs = summary(results[target]["ours"]), summary(results[target]["pyodx"])
            section.rows.append(Row(f"{job}: time, ours | pyodx", ours["seconds"], theirs["seconds"], "s", where))
            section.rows.append(Row(f"{job}: peak RSS, ours | pyodx", ours["peak_rss_mb"], theirs["peak_rss_mb"],
                                    "MB", where))
            section.rows.append(Row(f"{job}: CPU, ours | pyodx", ours["cpu_seconds"], theirs["cpu_seconds"], "s",
                                    where))
            details[f"{job} via {where}"] = {"ours": ours, "pyodx": theirs}
            if job == "upload" and target == "node":
                section.bars.append(Bar("upload time: ours / pyodx (medians)", ours["seconds"] / theirs["seconds"],
                                        "<=", 1.0, node=label))
                section.bars.append(Bar("upload peak RSS: ours / pyodx", ours["peak_rss_mb"] / theirs["peak_rss_mb"],
                                        "<=", 0.2, node=label))
    section.details = details
    return section
