"""9. Client: our client (`shared.Node`, the plugin's) against pyodx 1.5.14, upload and download, side by side.

Each client runs in a process of its own (`bench.client_worker`, which imports only that client), so
its time and its peak resident memory (VmHWM, the whole process) are its own; both go to the same
server in one interleaved loop (ours then pyodx, then the other way round), each with its own defaults
(ours: 4 parallel uploads, 4 parallel ranges; pyodx: 10 parallel uploads, 16 parallel ranges).

- upload: `create_task` of 30 photos of 8 MB (random bytes named `IMG_nnnn.JPG`: NodeODX's test mode
  does not decode them; made once under the bench cache), init to commit, to a real NodeODX in test
  mode directly and through a relay in front of it; the task is removed after each run;
- download: `download_zip` of one completed task whose all.zip was swapped for a large one (256 MB,
  stored, incompressible; NodeODX's own test all.zip is a few hundred KB): from the plain NodeODX
  (which ignores Range: one stream) and through a relay in front of it (which answers Range from its
  cache, filled once before the timing: parallel ranges for both clients).

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
import time
import zipfile
from pathlib import Path

import requests

from shared import Node

from .context import Context
from .report import Bar, Row, Section, median
from .stack import KINDS, MB, kind_problem, samples, stack

SIZES = {"full": {"photos": 30, "photo_mb": 8, "zip_mb": 256, "repetitions": 5},
         "quick": {"photos": 4, "photo_mb": 8, "zip_mb": 16, "repetitions": 1}}
CLIENTS = ("ours", "pyodx")
#: uploads: a committed task never gets to processing before it is removed; downloads: tasks end at once
UPLOAD_FLAGS = {"devnode": {"slots": 4, "seconds_per_image": 2, "memory_gb": 64},
                "nodeodx": {"parallel_queue_processing": 4, "test_seconds": 3600}}
DOWNLOAD_FLAGS = {"devnode": {"slots": 2, "seconds_per_image": 0.02}, "nodeodx": {"parallel_queue_processing": 2}}
#: where each client sends to: the node itself, or the relay in front of it (`Stack.url`'s names for them)
SIDES_OF = {"node": "direct", "relay": "relay"}
WORKER_TIMEOUT = 600
REPO = Path(__file__).resolve().parents[1]


def photos(cache: Path, count: int, size_mb: int) -> list[Path]:
    """`count` files of `size_mb` MB of random bytes named like camera JPEGs, written once and kept."""
    folder = cache / f"client-photos-{size_mb}mb"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"IMG_{i:04d}.JPG" for i in range(count)]
    for path in paths:
        if not (path.exists() and path.stat().st_size == size_mb * MB):
            partial = path.with_suffix(".part")
            with open(partial, "wb") as out:
                for _ in range(size_mb):
                    out.write(os.urandom(MB))
            partial.replace(path)
    return paths


def large_zip(cache: Path, size_mb: int) -> Path:
    """An all.zip of `size_mb` MB: a stored (uncompressed) orthophoto of random bytes, written once and kept."""
    path = cache / f"client-all-{size_mb}mb.zip"
    if path.exists():
        return path
    partial = path.with_suffix(".part")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as archive:
        with archive.open("odm_orthophoto/odm_orthophoto.tif", "w", force_zip64=True) as member:
            for _ in range(size_mb):
                member.write(os.urandom(MB))
    partial.replace(path)
    return path


def task_folder(server, kind: str, uuid: str) -> Path:
    """Where the node keeps a task's all.zip."""
    if kind == "nodeodx":
        return server.workdir / "tests" / "data" / uuid
    return server.data_dir / uuid


def completed_task(relay_url: str, node, kind: str, zip_path: Path, cache: Path) -> str:
    """A task created through the relay, run to completion on its node, its all.zip swapped for `zip_path`."""
    with Node.from_url(relay_url, timeout=60) as client:
        task = client.create_task(samples(cache, 2), name="bench client download")
        task.wait_for_completion(interval=0.1)
    target = task_folder(node, kind, task.uuid) / "all.zip"
    target.unlink()
    try:
        os.link(zip_path, target)
    except OSError:
        shutil.copyfile(zip_path, target)
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
    kind = "nodeodx" if "nodeodx" in ctx.nodes and not kind_problem("nodeodx") else "devnode"
    label = KINDS[kind]
    files = photos(ctx.cache, size["photos"], size["photo_mb"])
    archive = large_zip(ctx.cache, size["zip_mb"])
    downloads = ctx.scratch / "client-downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    workdir = ctx.scratch / "client"
    with stack(workdir / "up", UPLOAD_FLAGS[kind], kind=kind) as up, \
            stack(workdir / "down", DOWNLOAD_FLAGS[kind], kind=kind) as down:
        uuid = completed_task(down.relay.url, down.node, kind, archive, ctx.cache)
        with requests.get(down.relay.url + f"/task/{uuid}/download/all.zip", stream=True, timeout=120) as warm:
            for _ in warm.iter_content(MB):  # fills the relay's cache: every timed download is served from it
                pass
        uploads = interleaved_clients(size["repetitions"], list(SIDES_OF), lambda target, client: run_worker(
            ["upload", client, up.url(SIDES_OF[target]), *map(str, files)]))
        time.sleep(0.5)
        fetched = interleaved_clients(size["repetitions"], list(SIDES_OF), lambda target, client: run_worker(
            ["download", client, down.url(SIDES_OF[target]), uuid, str(downloads / client)]))
    details: dict = {"photos": size["photos"], "photo_mb": size["photo_mb"], "zip_mb": size["zip_mb"],
                     "repetitions": size["repetitions"], "node": kind}
    for job, results in (("upload", uploads), ("download all.zip", fetched)):
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
