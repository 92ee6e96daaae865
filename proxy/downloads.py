"""Downloads: `all.zip` streamed from the node with backpressure, Range answered from a cache, and
single products (orthophoto.tif, dsm.tif, ept.json and its tiles, ...) cut out of the cached zip.

NodeODX ignores Range and serves nothing but all.zip. The first plain download streams straight
through to the client while it fills the cache; a Range request (or a single asset) waits for the
cache to be whole, fetched once however many clients ask, and is then served from disk by aiohttp's
FileResponse, which answers 206 and sends with sendfile. Names come from the asset catalogue, never
from a path in the request. The cache is bounded (`--cache-mb`): least recently used tasks' files go first.

Once a task's results are archived (`results.py`), the node is not asked again: a results folder's all.zip is
served as a file, a bucket's is streamed from it (Range asked of the bucket), and the cache fills from the store.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import time
import zipfile
from pathlib import Path

from aiohttp import web

from shared import endpoints
from shared.assets import ALL_ZIP, ASSETS, EPT_FOLDER, Asset, asset_by_name

from .errors import DownloadError, UpstreamError
from .models import TaskRecord
from .nodes import NodeRegistry
from .results import ResultsStore, archived

ZIP_DISPOSITION = f"attachment; filename={ALL_ZIP}"  # exactly as NodeODX sends it

log = logging.getLogger("odx_relay.downloads")
CHUNK = 256 * 1024
EPT_TILE = re.compile(r"^(ept-data|ept-hierarchy|ept-sources)/[0-9A-Za-z_\-]+(\.[0-9A-Za-z]+){1,2}$")


class DownloadCache:
    """`<data>/cache/<uuid>/all.zip` plus products cut out of it; one fill per uuid at a time; bounded in size.

    With `limit_bytes` (`--cache-mb`; 0: no bound), whenever the whole files kept pass the limit, whole tasks'
    folders go, the least recently used first, but never one whose files are being served or filled (held
    by a `Lease` from the start of a request until its response is sent). A single all.zip larger than the
    limit is served, then let go. The size is counted here, in this process (each replica has a cache of its
    own), from a walk of the folder at start; files still being written (`*.fill`, `*.stream`, `*.cut`) are
    not counted, and those a dead process left behind are removed at start.
    """

    PARTIAL = (".fill", ".stream", ".cut")

    def __init__(self, root: Path, limit_bytes: int = 0, results: ResultsStore | None = None):
        self.root, self.limit = root, limit_bytes
        self.results = results  # a task's archived all.zip is served from there, never copied here
        self.fills: dict[str, asyncio.Task] = {}
        self.files: dict[str, dict[str, int]] = {}  # uuid -> {path in its folder: bytes}, whole files only
        self.total = 0
        self.last_used: dict[str, float] = {}
        self.users: dict[str, int] = {}  # requests serving from a uuid's folder right now
        self._scan()

    def folder(self, uuid: str) -> Path:
        return self.root / uuid

    def zip_path(self, uuid: str) -> Path:
        return self.folder(uuid) / ALL_ZIP

    # --- what the cache holds ----------------------------------------------------------------------
    def _scan(self) -> None:
        if not self.root.is_dir():
            return
        for folder in self.root.iterdir():
            if folder.name.startswith(".trash-"):
                shutil.rmtree(folder, ignore_errors=True)
                continue
            if not folder.is_dir():
                continue
            for path in [p for p in folder.rglob("*") if p.is_file()]:
                if path.name.endswith(self.PARTIAL):
                    path.unlink(missing_ok=True)
                else:
                    self.record(folder.name, path, found=True)
        self.shrink()

    def record(self, uuid: str, path: Path, found: bool = False) -> None:
        """Count a whole file just written in `uuid`'s folder (again: its new size replaces the old), then
        evict what no longer fits. `found`: met on disk at start, last used when it was last written."""
        try:
            stat = path.stat()
        except OSError:
            return
        files = self.files.setdefault(uuid, {})
        name = path.relative_to(self.folder(uuid)).as_posix()
        self.total += stat.st_size - files.get(name, 0)
        files[name] = stat.st_size
        self.last_used[uuid] = max(self.last_used.get(uuid, 0.0), stat.st_mtime if found else time.time())
        if not found:
            self.shrink()

    def size(self, uuid: str) -> int:
        return sum(self.files.get(uuid, {}).values())

    def hold(self, uuid: str) -> Lease:
        """Keep `uuid`'s files from eviction until the lease is released (the response sent)."""
        self.users[uuid] = self.users.get(uuid, 0) + 1
        self.last_used[uuid] = time.time()
        return Lease(self, uuid)

    def _release(self, uuid: str) -> None:
        self.users[uuid] -= 1
        if not self.users[uuid]:
            del self.users[uuid]
        self.last_used[uuid] = time.time()
        self.shrink()

    def busy(self, uuid: str) -> bool:
        fill = self.fills.get(uuid)
        return uuid in self.users or (fill is not None and not fill.done())

    def shrink(self) -> None:
        """Evict least recently used tasks' files until the cache fits its limit (those in use stay)."""
        if not self.limit or self.total <= self.limit:
            return
        for uuid in sorted(self.files, key=lambda u: self.last_used.get(u, 0.0)):
            if self.total <= self.limit:
                break
            if self.busy(uuid):
                continue
            size = self.size(uuid)
            self.drop(uuid)
            log.info("cache evicted uuid=%s bytes=%d (cache at %d of %d bytes)", uuid, size, self.total, self.limit)

    def drop(self, uuid: str) -> None:
        """Forget `uuid`'s files: the folder is renamed at once (nothing serves from it after this) and
        deleted in a thread, since a folder of point-cloud tiles can take a while."""
        self.total -= self.size(uuid)
        self.files.pop(uuid, None)
        self.last_used.pop(uuid, None)
        folder = self.folder(uuid)
        trash = self.root / f".trash-{uuid}-{time.monotonic_ns()}"
        try:
            folder.rename(trash)
        except OSError:  # not there (nothing cached) or already going
            return
        try:
            asyncio.get_running_loop().run_in_executor(None, shutil.rmtree, trash, True)
        except RuntimeError:  # no event loop (tests, tools): at once
            shutil.rmtree(trash, ignore_errors=True)

    # --- filling ------------------------------------------------------------------------------------
    def whole_zip(self, uuid: str) -> Path | None:
        """The task's all.zip on this relay's disk, if it is whole: archived in a results folder, or cached."""
        local = self.results.local_zip(uuid) if self.results is not None else None
        if local is not None:
            return local
        path = self.zip_path(uuid)
        return path if path.exists() else None

    async def ensure(self, nodes: NodeRegistry, task: TaskRecord) -> Path:
        """The task's whole all.zip on this relay's disk: archived in a results folder, cached, or fetched once
        into the cache (from the results store when it holds it, else from the node)."""
        path = self.whole_zip(task.uuid)
        if path is not None:
            return path
        fill = self.fills.get(task.uuid)
        if fill is None or fill.done():
            fill = asyncio.ensure_future(self._fill(nodes, task))
            self.fills[task.uuid] = fill
            fill.add_done_callback(lambda done, uuid=task.uuid: self.fills.get(uuid) is done and self.fills.pop(uuid))
        return await asyncio.shield(fill)

    async def _fill(self, nodes: NodeRegistry, task: TaskRecord) -> Path:
        path = self.zip_path(task.uuid)
        if self.results is not None and archived(self.results, task):
            partial = path.with_suffix(".fill")
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                await self.results.fetch(task.uuid, partial)
                partial.replace(path)
            finally:
                partial.unlink(missing_ok=True)
            source = self.results.where
        else:
            await save_node_zip(nodes, task, path, path.with_suffix(".fill"))
            source = "its node"
        log.info("cached all.zip uuid=%s bytes=%d from %s", task.uuid, path.stat().st_size, source)
        self.record(task.uuid, path)
        return path


class Lease:
    """One request's hold on a task's cached files; released once, however often `release` is called."""

    def __init__(self, cache: DownloadCache, uuid: str):
        self.cache, self.uuid, self.held = cache, uuid, True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.cache._release(self.uuid)


class CachedFile(web.FileResponse):
    """A file of the cache, sent by aiohttp after the handler returns: its lease is let go once it is sent."""

    def __init__(self, path: Path, lease: Lease, **kwargs):
        super().__init__(path, **kwargs)
        self.lease = lease

    async def prepare(self, request: web.BaseRequest):
        try:
            return await super().prepare(request)
        finally:
            self.lease.release()


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


async def save_node_zip(nodes: NodeRegistry, task: TaskRecord, path: Path, partial: Path) -> None:
    """Stream the task's all.zip from its node into `partial`, renamed to `path` once whole, so that a file of
    that name is always complete; DownloadError if the node would not give all of it."""
    resp = await open_node_zip(nodes, task)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(partial, "wb") as out:
            async for chunk in resp.content.iter_chunked(CHUNK):
                out.write(chunk)
        if resp.content_length is not None and partial.stat().st_size != resp.content_length:
            raise DownloadError(f"the node sent {partial.stat().st_size} of {resp.content_length} bytes")
        partial.replace(path)
    finally:
        resp.release()
        partial.unlink(missing_ok=True)


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
            cache.record(task.uuid, path)
        else:
            partial.unlink(missing_ok=True)
    return out


async def stream_archive(request: web.Request, results: ResultsStore, task: TaskRecord) -> web.StreamResponse:
    """all.zip streamed from a results store that is not a local folder (S3), chunk by chunk with backpressure;
    one Range is asked of the store and answered 206, as the relay answers it from its cache."""
    size = await results.size(task.uuid)
    headers = {"Content-Type": "application/zip", "Content-Disposition": ZIP_DISPOSITION, "Accept-Ranges": "bytes"}
    start, stop, status = 0, size, 200
    if request.headers.get("Range"):
        try:
            asked = request.http_range
        except ValueError:
            asked = slice(size, None)  # unreadable: not satisfiable, as aiohttp's FileResponse answers it
        start = max(0, size + asked.start) if asked.start is not None and asked.start < 0 else (asked.start or 0)
        stop = min(size, asked.stop) if asked.stop is not None else size
        if start >= stop:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
        status, headers["Content-Range"] = 206, f"bytes {start}-{stop - 1}/{size}"
    out = web.StreamResponse(status=status, headers=headers)
    out.content_length = stop - start
    await out.prepare(request)
    try:
        async with contextlib.aclosing(results.read(task.uuid, start, stop)) as chunks:  # closed if the client goes
            async for chunk in chunks:
                await out.write(chunk)  # waits while the client is slow
        await out.write_eof()
    except ConnectionResetError:
        log.info("download closed by client uuid=%s", task.uuid)
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
    """all.zip or one product; the task's cached files are held from eviction until the answer is sent."""
    lease = cache.hold(task.uuid)
    try:
        response = await _serve(request, nodes, cache, task, name, lease)
    except BaseException:
        lease.release()
        raise
    if not isinstance(response, CachedFile):  # streamed in full already
        lease.release()
    return response


async def _serve(request: web.Request, nodes: NodeRegistry, cache: DownloadCache, task: TaskRecord,
                 name: str, lease: Lease) -> web.StreamResponse:
    if name == ALL_ZIP:
        whole = cache.whole_zip(task.uuid) is not None
        if not whole and cache.results is not None and archived(cache.results, task):
            return await stream_archive(request, cache.results, task)
        if whole or request.headers.get("Range"):
            return CachedFile(await cache.ensure(nodes, task), lease, headers={
                "Content-Type": "application/zip", "Content-Disposition": ZIP_DISPOSITION})
        return await stream_zip(request, nodes, cache, task)
    return CachedFile(await asset_file(nodes, cache, task, name), lease)


async def asset_file(nodes: NodeRegistry, cache: DownloadCache, task: TaskRecord, name: str) -> Path:
    """One product (or EPT tile) of the task as a whole file in the cache, cut out of all.zip the first time;
    the caller holds a lease on the task's files while it uses the path."""
    resolved = resolve(name)
    if resolved is None:
        raise DownloadError("Invalid asset")
    member, cache_name, folder = resolved
    zip_path = await cache.ensure(nodes, task)
    target = cache.folder(task.uuid) / "assets" / cache_name
    new = not target.exists()
    path = await asyncio.get_running_loop().run_in_executor(None, extract, zip_path, member, target, folder)
    if new:
        cache.record(task.uuid, path)
    return path


def present_assets(zip_path: Path) -> set[str]:
    """The names of the catalogue's single-file products that the task's all.zip holds (not empty: NodeODX's
    test mode writes empty placeholders for what it skipped)."""
    with zipfile.ZipFile(zip_path) as archive:
        sizes = {info.filename: info.file_size for info in archive.infolist()}
    return {asset.name for asset in ASSETS if not asset.is_folder and sizes.get(asset.path, 0) > 0}
