"""Streaming a task's results into a viewer: which signed URLs its owner gets, and what the relay says about
each raster (a COG or not).

`GET /task/{uuid}/signed-urls` (with the owner's token) answers, for the orthophoto, DSM, DTM, EPT point
cloud and camera positions the task has (or the assets named in `assets=`), a signed URL of each (see
signed_urls.py) and, for a raster, whether it is a Cloud-Optimized GeoTIFF (see cog.py). The rasters are
cut out of all.zip into the download cache here, once, so that the viewer's first Range request is answered
from disk at once.
`GET /task/{uuid}/signed/{expires}/{signature}/{asset}` then serves a download without any token.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from .cog import NotTiff, describe
from .downloads import asset_file, present_assets, resolve, serve
from .errors import DownloadError, HTTPError
from .models import Stage, TaskRecord
from .signed_urls import EPT_SCOPE, expiry, signed_path
from .state import Relay

log = logging.getLogger("odx_relay.streaming")

#: What a viewer streams, when the owner names nothing: the rasters as COGs, the point cloud as EPT, and the
#: camera positions (small) to draw above them.
STREAMABLE = ("orthophoto.tif", "dsm.tif", "dtm.tif", "ept.json", "shots.geojson")
RASTERS = ("orthophoto.tif", "dsm.tif", "dtm.tif")


def wanted_assets(asked: str) -> list[str]:
    """The names in `assets=` (comma-separated), each a single product of the catalogue; [] for the default."""
    names = [name.strip() for name in asked.split(",") if name.strip()]
    for name in names:
        resolved = resolve(name)
        if resolved is None or resolved[2] or "/" in name:
            raise HTTPError(400, f"assets must name single products of a task (as orthophoto.tif, dsm.tif, dtm.tif, "
                             f"ept.json, report.pdf), not {name[:60]!r}")
    return names


async def signed_links(relay: Relay, task: TaskRecord, names: list[str], expires_in: str | None) -> dict[str, Any]:
    """`{"uuid", "expires", "assets": {name: {"path", "scope", "cog"?}}}` for the task's streamable products."""
    if task.stage != Stage.ON_NODE:
        raise DownloadError("Asset not ready")
    try:
        expires = expiry(expires_in)
    except ValueError as exc:
        raise HTTPError(400, str(exc)) from None
    lease = relay.cache.hold(task.uuid)
    try:
        zip_path = await relay.cache.ensure(relay.registry, task)
        present = await asyncio.get_running_loop().run_in_executor(None, present_assets, zip_path)
        missing = [name for name in names if name not in present]
        if missing:
            raise DownloadError(f"this task has no {', '.join(missing)} in its results")
        assets: dict[str, Any] = {}
        for name in names or [name for name in STREAMABLE if name in present]:
            path = signed_path(relay.secret, task.uuid, task.owner, name, expires)
            entry: dict[str, Any] = {"path": path, "scope": EPT_SCOPE if name == "ept.json" else name}
            if name in RASTERS:
                entry["cog"] = await raster_report(relay, task, name)
            assets[name] = entry
    finally:
        lease.release()
    return {"uuid": task.uuid, "expires": expires, "assets": assets}


async def raster_report(relay: Relay, task: TaskRecord, name: str) -> dict[str, Any]:
    """Whether the raster streams well (cog.describe), logged when it does not."""
    path = await asset_file(relay.registry, relay.cache, task, name)
    try:
        report = await asyncio.get_running_loop().run_in_executor(None, describe, path)
    except (NotTiff, OSError) as exc:
        report = {"cog": False, "problem": f"not a GeoTIFF the relay can read ({exc})"}
    if not report["cog"] and (task.uuid, name) not in _warned:
        if len(_warned) >= 10_000:  # bounded: said again after a while, never a slow leak
            _warned.clear()
        _warned.add((task.uuid, name))
        log.warning("not a COG uuid=%s asset=%s: %s", task.uuid, name, report["problem"])
    return report


_warned: set[tuple[str, str]] = set()  # (uuid, asset) already logged as not a COG by this process


async def signed_download(request: web.Request, relay: Relay, task: TaskRecord, asset: str) -> web.StreamResponse:
    """Serve one download of a signed URL (the signature checked by the caller). Errors are real HTTP statuses
    here, not NodeODX's 200 with a JSON error: GDAL probes for side files (`orthophoto.tif.aux.xml`) and must
    be told plainly that they are not there."""
    if task.stage != Stage.ON_NODE:
        raise HTTPError(404, "This task has no results yet")
    try:
        return await serve(request, relay.registry, relay.cache, task, asset)
    except DownloadError as exc:
        raise HTTPError(404, str(exc)) from None
