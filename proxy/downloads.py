"""Downloads: `all.zip` streamed from the node with backpressure, Range answered from a cache, and
single products (orthophoto.tif, dsm.tif, ept.json and its tiles, ...) cut out of the cached zip.

NodeODX ignores Range and serves nothing but all.zip. The first plain download streams straight
through to the client while it fills the cache; a Range request (or a single asset) waits for the
cache to be whole, fetched once however many clients ask, and is then served from disk by aiohttp's
FileResponse, which answers 206 and sends with sendfile. Names come from the asset catalogue, never
from a path in the request.
"""
from __future__ import annotations

import asyncio
import logging
import re
import shutil
import zipfile
from pathlib import Path

from aiohttp import web

from shared import endpoints
from shared.assets import ALL_ZIP, EPT_FOLDER, Asset, asset_by_name

from .errors import DownloadError, UpstreamError
from .models import TaskRecord
from .nodes import NodeRegistry

ZIP_DISPOSITION = f"attachment; filename={ALL_ZIP}"  # exactly as NodeODX sends it

log = logging.getLogger("odx_relay.downloads")
CHUNK = 256 * 1024
EPT_TILE = re.compile(r"^(ept-data|ept-hierarchy|ept-sources)/[0-9A-Za-z_\-]+(\.[0-9A-Za-z]+){1,2}$")


class DownloadCache:
    """`<data>/cache/<uuid>/all.zip` plus products cut out of it; one fill per uuid at a time."""

    def __init__(self, root: Path):
        self.root = root
        self.fills: dict[str, asyncio.Task] = {}

    def folder(self, uuid: str) -> Path:
        return self.root / uuid

    def zip_path(self, uuid: str) -> Path:
        return self.folder(uuid) / ALL_ZIP

    def drop(self, uuid: str) -> None:
        shutil.rmtree(self.folder(uuid), ignore_errors=True)

    async def ensure(self, nodes: NodeRegistry, task: TaskRecord) -> Path:
        path = self.zip_path(task.uuid)
        if path.exists():
            return path
        fill = self.fills.get(task.uuid)
        if fill is None or fill.done():
            fill = asyncio.ensure_future(self._fill(nodes, task))
            self.fills[task.uuid] = fill
            fill.add_done_callback(lambda done, uuid=task.uuid: self.fills.get(uuid) is done and self.fills.pop(uuid))
        return await asyncio.shield(fill)

    async def _fill(self, nodes: NodeRegistry, task: TaskRecord) -> Path:
        resp = await open_node_zip(nodes, task)
        path = self.zip_path(task.uuid)
        partial = path.with_suffix(".fill")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(partial, "wb") as out:
                async for chunk in resp.content.iter_chunked(CHUNK):
                    out.write(chunk)
        finally:
            resp.release()
        partial.replace(path)
        log.info("cached all.zip uuid=%s bytes=%d", task.uuid, path.stat().st_size)
        return path


async def open_node_zip(nodes: NodeRegistry, task: TaskRecord):
    handle = nodes.get(task.node_id)
    if handle is None:
        raise DownloadError(f"{task.uuid} is not on any node yet")
    try:
        resp = await nodes.upstream.open_stream(handle.record, endpoints.download(task.uuid, ALL_ZIP))
    except UpstreamError as exc:
        raise DownloadError(str(exc)) from None
    if "application/json" in resp.headers.get("Content-Type", ""):
        body = await resp.json()
        resp.release()
        raise DownloadError(body.get("error", "the node has no all.zip") if isinstance(body, dict) else str(body))
    return resp


async def stream_zip(request: web.Request, nodes: NodeRegistry, cache: DownloadCache,
                     task: TaskRecord) -> web.StreamResponse:
    """Pass all.zip through to the client chunk by chunk, filling the cache on the way."""
    resp = await open_node_zip(nodes, task)
    out = web.StreamResponse(headers={"Content-Type": "application/zip", "Accept-Ranges": "bytes",
                                      "Content-Disposition": ZIP_DISPOSITION})
    if resp.content_length is not None:
        out.content_length = resp.content_length
    path = cache.zip_path(task.uuid)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"all.zip.{id(out)}.stream")
    complete = False
    try:
        await out.prepare(request)
        with open(partial, "wb") as copy:
            async for chunk in resp.content.iter_chunked(CHUNK):
                copy.write(chunk)
                await out.write(chunk)  # waits while the client is slow: backpressure up to the node
        complete = resp.content_length is None or partial.stat().st_size == resp.content_length
        await out.write_eof()
    except ConnectionResetError:  # the client went away (pyodx does, to switch to ranged requests)
        log.info("download closed by client uuid=%s", task.uuid)
    finally:
        resp.release()
        if complete and not path.exists():
            partial.replace(path)
        else:
            partial.unlink(missing_ok=True)
    return out


def extract(zip_path: Path, asset_path: str, target: Path, folder: bool) -> Path:
    """Cut one member (or a folder, as a zip) out of all.zip into the cache, once."""
    if target.exists():
        return target
    partial = target.with_name(target.name + ".cut")
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        if folder:
            members = [m for m in names if m.startswith(asset_path) and not m.endswith("/")]
            if not members:
                raise DownloadError(f"this task has no {asset_path} in its results")
            with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as out:
                for member in members:
                    with archive.open(member) as src, out.open(member, "w") as dst:
                        shutil.copyfileobj(src, dst, CHUNK)
        else:
            if asset_path not in names:
                raise DownloadError(f"this task has no {asset_path} in its results")
            with archive.open(asset_path) as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
    partial.replace(target)
    return target


def resolve(name: str) -> tuple[str, str, bool] | None:
    """(member path in all.zip, cache file name, is folder) for a download name, or None."""
    asset: Asset | None = asset_by_name(name)
    if asset is not None:
        return asset.path, asset.name, asset.is_folder
    tile = name.removeprefix("ept/")  # the catalogue's `ept/<path>`, or relative to ept.json
    if EPT_TILE.match(tile) and ".." not in tile:
        return EPT_FOLDER + tile, "ept/" + tile, False
    return None


async def serve(request: web.Request, nodes: NodeRegistry, cache: DownloadCache, task: TaskRecord,
                name: str) -> web.StreamResponse:
    if name == ALL_ZIP:
        if cache.zip_path(task.uuid).exists() or request.headers.get("Range"):
            return web.FileResponse(await cache.ensure(nodes, task), headers={
                "Content-Type": "application/zip", "Content-Disposition": ZIP_DISPOSITION})
        return await stream_zip(request, nodes, cache, task)
    resolved = resolve(name)
    if resolved is None:
        raise DownloadError("Invalid asset")
    member, cache_name, folder = resolved
    zip_path = await cache.ensure(nodes, task)
    target = cache.folder(task.uuid) / "assets" / cache_name
    loop = asyncio.get_running_loop()
    path = await loop.run_in_executor(None, extract, zip_path, member, target, folder)
    return web.FileResponse(path)
