"""Facts about a completed task's results, read once from its all.zip and kept in the store: what the STAC
catalogue (`stac.py`) and its search answer from, without opening a zip per request.

Read from the zip (through GDAL's /vsizip/, no member extracted): the orthophoto's footprint in WGS 84 (the
DSM's, then the DTM's, then the camera positions' when there is no orthophoto), its projection (EPSG, shape,
transform), each elevation model's nodata and type, which assets exist (an empty placeholder does not count:
NodeODX's test mode writes some), whether the orthophoto is a real Cloud-Optimized GeoTIFF, and a small PNG
thumbnail. Capture times come from what ODM writes (`shots.geojson` `capture_time`, `images.json` `utc_time`),
else from the staged photos' EXIF (DateTimeOriginal, with OffsetTimeOriginal when given, UTC otherwise: what the
development node's photos and most drones carry). Whatever cannot be read is said in `missing`, in words a
person can act on; nothing here raises for a poor zip.

The facts (a few KB) are kept in the state store; the thumbnail (a palette PNG of some 25 KB) in the results store
beside the task's all.zip (`results.py`), where every replica finds it, also once the zip has left the download
cache or the node is gone, and which deletes it with the task's results. A thumbnail the results store lacks
(a store upgraded from when thumbnails were kept beside the facts, a write that failed) is made again from the
zip when it is first asked for (`thumbnail_of`).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import math
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.assets import ASSETS, EPT_FOLDER, Asset, Product, asset_for

from .errors import DownloadError
from .models import Stage, TaskRecord
from .results import ResultsError
from .store import COMPLETED, list_fields

if TYPE_CHECKING:
    from .state import Relay

log = logging.getLogger("odx_relay.result_facts")

FACTS_VERSION = 1
THUMBNAIL_SIDE = 256          # px, the longer side
THUMBNAIL_COLOURS = 255       # of the palette; one more entry, the last, is transparent (no data)
MAX_JSON_MEMBER = 64 * 2**20  # shots.geojson / images.json read whole only below this
#: The rasters whose footprint stands for the task's, in order of preference.
FOOTPRINT_FROM = (Product.ORTHOPHOTO, Product.DSM, Product.DTM)
ELEVATION = (Product.DSM, Product.DTM)
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
GEOTIFF_MEDIA_TYPE = "image/tiff; application=geotiff"


@dataclass
class ReadFacts:
    facts: dict[str, Any]
    thumbnail: bytes | None


def read_facts(zip_path: Path, photos: list[Path], run: int, created_ms: int) -> ReadFacts:
    """Everything the STAC item needs, from the task's whole all.zip and (for capture times, when ODM's outputs
    do not carry them) its staged photos. Without capture times the task's creation time (`created_ms`) stands
    in, so that every item has a time to be searched by. Blocking (GDAL, zip): call it in a thread."""
    missing: list[str] = []
    facts: dict[str, Any] = {"version": FACTS_VERSION, "run": run, "read_ms": int(time.time() * 1000),
                             "assets": {}, "missing": missing}
    try:
        with zipfile.ZipFile(zip_path) as archive:
            sizes = {info.filename: info.file_size for info in archive.infolist()}
            shots = _json_member(archive, sizes, asset_for(Product.SHOTS).path, missing)
            images = _json_member(archive, sizes, asset_for(Product.IMAGES).path, None)
    except (OSError, zipfile.BadZipFile) as exc:
        missing.append(f"all.zip could not be read ({exc}): nothing is known of this task's results")
        return ReadFacts(_with_times(facts, [], "", created_ms), None)
    gdal = _gdal(missing)
    for asset in ASSETS:
        entry = _asset_entry(asset, sizes, missing)
        if entry is None:
            continue
        if gdal is not None and asset.product in (Product.ORTHOPHOTO, *ELEVATION):
            entry.update(_raster_facts(gdal, f"/vsizip/{zip_path}/{asset.path}", asset, missing))
        facts["assets"][asset.name] = entry
    for product in FOOTPRINT_FROM:
        raster = facts["assets"].get(asset_for(product).name, {})
        if raster.get("footprint"):
            facts["geometry"], facts["bbox"] = raster["footprint"], raster["bbox"]
            facts["footprint_of"] = asset_for(product).name
            facts["proj"] = raster["proj"]
            break
    for entry in facts["assets"].values():  # the task's footprint is enough; each raster keeps its projection
        entry.pop("footprint", None)
        entry.pop("bbox", None)
    positions = _shot_positions(shots)
    if "geometry" not in facts:
        if positions:
            facts["geometry"], facts["bbox"] = _points_footprint(positions)
            facts["footprint_of"] = "shots.geojson"
            missing.append("no georeferenced orthophoto, DSM or DTM: the footprint is the camera positions' extent")
        else:
            missing.append("no georeferenced orthophoto, DSM, DTM or camera positions: the item has no geometry")
    thumbnail = None
    ortho = asset_for(Product.ORTHOPHOTO)
    if ortho.name not in facts["assets"]:
        missing.append("no orthophoto: no thumbnail")
    elif gdal is not None:
        thumbnail = _thumbnail(gdal, f"/vsizip/{zip_path}/{ortho.path}", missing)
    facts["thumbnail"] = thumbnail is not None
    times, source = _capture_times(shots, images, photos, gdal)
    return ReadFacts(_with_times(facts, times, source, created_ms), thumbnail)


def _with_times(facts: dict[str, Any], times: list[float], source: str, created_ms: int) -> dict[str, Any]:
    if times:
        facts["start_ms"], facts["end_ms"] = int(min(times) * 1000), int(max(times) * 1000)
        facts["times_from"] = source
    else:
        facts["start_ms"] = facts["end_ms"] = created_ms
        facts["times_from"] = "task creation"
        facts["missing"].append("no capture times (shots.geojson, images.json or the photos' EXIF): the item's "
                                "datetime is the task's creation time")
    return facts


def _gdal(missing: list[str]):
    try:
        from osgeo import gdal
    except ImportError:
        missing.append("GDAL's Python bindings are not installed on the relay (Debian: python3-gdal): no "
                       "footprint, projection or thumbnail")
        return None
    gdal.UseExceptions()
    return gdal


def _asset_entry(asset: Asset, sizes: dict[str, int], missing: list[str]) -> dict[str, Any] | None:
    """{"size": bytes} for an asset the zip holds with content; None (said in `missing` when it is there but
    empty) otherwise. A folder asset counts by its index (EPT: ept.json), the others by their one member."""
    if asset.is_folder:
        if asset.path != EPT_FOLDER:
            return None
        member = asset_for(Product.POINT_CLOUD_EPT).path
        return {"size": sum(s for n, s in sizes.items() if n.startswith(EPT_FOLDER))} if sizes.get(member) else None
    size = sizes.get(asset.path)
    if size is None:
        return None
    if size == 0:
        missing.append(f"{asset.name} is an empty file in all.zip")
        return None
    return {"size": size}


def _json_member(archive: zipfile.ZipFile, sizes: dict[str, int], member: str, missing: list[str] | None) -> Any:
    size = sizes.get(member)
    if not size or size > MAX_JSON_MEMBER:
        return None
    try:
        return json.loads(archive.read(member))
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        if missing is not None:
            missing.append(f"{member} is not readable JSON ({type(exc).__name__})")
        return None


def _raster_facts(gdal, path: str, asset: Asset, missing: list[str]) -> dict[str, Any]:
    """Projection, footprint, bands and COG layout of one GeoTIFF in the zip."""
    try:
        dataset = gdal.Open(path)
    except RuntimeError as exc:
        missing.append(f"{asset.name} is not a readable raster ({str(exc)[:120]})")
        return {}
    out: dict[str, Any] = {"bands": [_band(dataset.GetRasterBand(i)) for i in range(1, dataset.RasterCount + 1)]}
    band = dataset.GetRasterBand(1) if dataset.RasterCount else None
    layout = (dataset.GetMetadata("IMAGE_STRUCTURE") or {}).get("LAYOUT", "")
    tiled = band is not None and band.GetBlockSize()[0] < dataset.RasterXSize
    out["cog"] = layout.upper() == "COG" or (tiled and band.GetOverviewCount() > 0)
    if asset.product == Product.ORTHOPHOTO and not out["cog"]:
        missing.append("orthophoto.tif is not a Cloud-Optimized GeoTIFF (no tiles with overviews): streaming it "
                       "reads the whole file")
    srs, transform = dataset.GetSpatialRef(), dataset.GetGeoTransform(can_return_null=True)
    if srs is None or transform is None or transform == (0.0, 1.0, 0.0, 0.0, 0.0, 1.0):
        missing.append(f"{asset.name} is not georeferenced")
        return out
    width, height = dataset.RasterXSize, dataset.RasterYSize
    corners = [_apply(transform, x, y) for x, y in ((0, 0), (width, 0), (width, height), (0, height))]
    native = [min(c[0] for c in corners), min(c[1] for c in corners),
              max(c[0] for c in corners), max(c[1] for c in corners)]
    out["proj"] = {"code": _epsg_code(srs), "shape": [height, width], "transform": list(transform[1:3])
                   + [transform[0]] + list(transform[4:6]) + [transform[3]], "bbox": native}
    try:
        ring = _to_wgs84(gdal, srs, _densified(corners))
    except RuntimeError as exc:
        missing.append(f"{asset.name}'s footprint could not be brought to WGS 84 ({str(exc)[:120]})")
        return out
    ring.append(ring[0])
    out["footprint"] = {"type": "Polygon", "coordinates": [ring]}
    out["bbox"] = [min(p[0] for p in ring), min(p[1] for p in ring), max(p[0] for p in ring), max(p[1] for p in ring)]
    return out


def _band(band) -> dict[str, Any]:
    from osgeo import gdal
    entry: dict[str, Any] = {"data_type": gdal.GetDataTypeName(band.DataType).lower()}
    nodata = band.GetNoDataValue()
    if nodata is not None:
        entry["nodata"] = "nan" if math.isnan(nodata) else nodata
    return entry


def _apply(transform: tuple[float, ...], x: float, y: float) -> tuple[float, float]:
    return transform[0] + x * transform[1] + y * transform[2], transform[3] + x * transform[4] + y * transform[5]


def _densified(corners: list[tuple[float, float]], steps: int = 8) -> list[tuple[float, float]]:
    """The corners with points along each edge, so that the WGS 84 polygon follows a curved edge closely."""
    out = []
    for (x0, y0), (x1, y1) in zip(corners, corners[1:] + corners[:1]):
        out += [(x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps) for i in range(steps)]
    return out


def _to_wgs84(gdal, srs, points: list[tuple[float, float]]) -> list[list[float]]:
    from osgeo import osr
    wgs84 = osr.SpatialReference()
    wgs84.ImportFromEPSG(4326)
    wgs84.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    srs = srs.Clone()
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    transform = osr.CoordinateTransformation(srs, wgs84)
    return [[round(x, 9), round(y, 9)] for x, y, *_ in transform.TransformPoints(points)]


def _epsg_code(srs) -> str | None:
    srs = srs.Clone()
    if srs.GetAuthorityName(None) != "EPSG":
        srs.AutoIdentifyEPSG()
    code = srs.GetAuthorityCode(None)
    return f"EPSG:{code}" if srs.GetAuthorityName(None) == "EPSG" and code else None


def thumbnail_png(zip_path: Path) -> bytes | None:
    """The thumbnail of the orthophoto in the task's all.zip, made as `read_facts` makes it; None if there is none.
    Blocking (GDAL): call it in a thread."""
    gdal = _gdal([])
    if gdal is None:
        return None
    return _thumbnail(gdal, f"/vsizip/{zip_path}/{asset_for(Product.ORTHOPHOTO).path}", [])


def _thumbnail(gdal, path: str, missing: list[str]) -> bytes | None:
    """A palette PNG of at most THUMBNAIL_SIDE px a side (never larger than the orthophoto), transparent where the
    orthophoto has no data (read from the overviews of a COG, so a large orthophoto costs little).

    Why a palette: an orthophoto's texture and its sensor noise make each pixel differ from its neighbours, which
    lossless compression cannot squeeze: the development node's 256 px thumbnail came to 90-100 KB as 8-bit RGBA
    (PNG's ZLEVEL 9 saves under 1 %, dropping alpha 11 %). 255 colours chosen by median cut, each pixel given the
    nearest one without dithering (dithering is noise again), come to about 25 KB and look the same at that size.
    (JPEG would be smaller still, ~12 KB, but has no transparency, and most orthophotos have no-data edges.)"""
    target = f"/vsimem/thumbnail-{time.monotonic_ns()}.png"
    try:
        import numpy as np
        source = gdal.Open(path)
        if source.GetRasterBand(1).DataType != gdal.GDT_Byte:
            missing.append("no thumbnail: the orthophoto's bands are not 8-bit colours")
            return None
        scale = min(1.0, THUMBNAIL_SIDE / max(source.RasterXSize, source.RasterYSize, 1))  # never larger
        width, height = max(1, round(source.RasterXSize * scale)), max(1, round(source.RasterYSize * scale))

        def read(band) -> np.ndarray:
            return band.ReadAsArray(buf_xsize=width, buf_ysize=height, resample_alg=gdal.GRIORA_Average)
        colours = [read(source.GetRasterBand(b)) for b in ((1, 2, 3) if source.RasterCount >= 3 else (1, 1, 1))]
        alpha = read(source.GetRasterBand(1).GetMaskBand())  # the alpha band, or where there is no nodata value
        rgb = gdal.GetDriverByName("MEM").Create("", width, height, 3, gdal.GDT_Byte)
        for i, values in enumerate(colours, 1):
            rgb.GetRasterBand(i).WriteArray(values)
        table = gdal.ColorTable()
        gdal.ComputeMedianCutPCT(*(rgb.GetRasterBand(i) for i in (1, 2, 3)), THUMBNAIL_COLOURS, table)
        palette = np.array([table.GetColorEntry(i)[:3] for i in range(table.GetCount())], np.float32)
        pixels = np.stack(colours, axis=-1).reshape(-1, 3).astype(np.float32)
        # the nearest colour: |p - c|² = |p|² - 2 p·c + |c|², and |p|² is the same for every c
        index = ((palette * palette).sum(axis=1) - 2 * pixels @ palette.T).argmin(axis=1).astype(np.uint8)
        index = index.reshape(height, width)
        index[alpha < 128] = THUMBNAIL_COLOURS
        table.SetColorEntry(THUMBNAIL_COLOURS, (0, 0, 0, 0))
        indexed = gdal.GetDriverByName("MEM").Create("", width, height, 1, gdal.GDT_Byte)
        indexed.GetRasterBand(1).WriteArray(index)
        indexed.GetRasterBand(1).SetColorTable(table)
        gdal.Translate(target, indexed, format="PNG", creationOptions=["ZLEVEL=9"])
        handle = gdal.VSIFOpenL(target, "rb")
        try:
            gdal.VSIFSeekL(handle, 0, 2)
            size = gdal.VSIFTellL(handle)
            gdal.VSIFSeekL(handle, 0, 0)
            return bytes(gdal.VSIFReadL(1, size, handle))
        finally:
            gdal.VSIFCloseL(handle)
    except (RuntimeError, ImportError) as exc:
        missing.append(f"no thumbnail: the orthophoto could not be rendered ({str(exc)[:120]})")
        return None
    finally:
        gdal.Unlink(target)


def _shot_positions(shots: Any) -> list[tuple[float, float]]:
    positions = []
    for feature in _features(shots):
        coords = (feature.get("geometry") or {}).get("coordinates")
        if isinstance(coords, list) and len(coords) >= 2 and all(_number(c) for c in coords[:2]):
            positions.append((float(coords[0]), float(coords[1])))
    return positions


def _points_footprint(points: list[tuple[float, float]]) -> tuple[dict[str, Any], list[float]]:
    west, south = min(p[0] for p in points), min(p[1] for p in points)
    east, north = max(p[0] for p in points), max(p[1] for p in points)
    if west == east and south == north:
        return {"type": "Point", "coordinates": [west, south]}, [west, south, east, north]
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}, [west, south, east, north]


def _features(collection: Any) -> list[dict[str, Any]]:
    features = collection.get("features") if isinstance(collection, dict) else None
    return [f for f in features if isinstance(f, dict)] if isinstance(features, list) else []


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _capture_times(shots: Any, images: Any, photos: list[Path], gdal) -> tuple[list[float], str]:
    """Capture times in seconds since 1970 and where they came from: ODM's outputs first, then the photos."""
    times = [float(f["properties"]["capture_time"]) for f in _features(shots)
             if isinstance(f.get("properties"), dict) and _number(f["properties"].get("capture_time"))]
    if times:
        return times, "shots.geojson"
    entries = images if isinstance(images, list) else []
    times = [e["utc_time"] / 1000 for e in entries if isinstance(e, dict) and _number(e.get("utc_time"))]
    if times:
        return times, "images.json"
    if gdal is not None:
        times = [t for t in (_exif_time(gdal, photo) for photo in photos) if t is not None]
        if times:
            return times, "photos' EXIF"
    return [], ""


def _exif_time(gdal, photo: Path) -> float | None:
    """DateTimeOriginal (with its sub-seconds and offset when given; UTC when no offset is) of one photo."""
    try:
        metadata = gdal.Open(str(photo)).GetMetadata() or {}
    except RuntimeError:
        return None
    text = (metadata.get("EXIF_DateTimeOriginal") or metadata.get("EXIF_DateTime") or "").strip()
    try:
        taken = dt.datetime.strptime(text, "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    offset = (metadata.get("EXIF_OffsetTimeOriginal") or "").strip()
    zone = dt.UTC
    if len(offset) == 6 and offset[0] in "+-" and offset[3] == ":":
        try:
            sign = 1 if offset[0] == "+" else -1
            zone = dt.timezone(sign * dt.timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
        except ValueError:
            pass
    subsec = (metadata.get("EXIF_SubSecTimeOriginal") or "").strip()
    fraction = float(f"0.{subsec}") if subsec.isdigit() else 0.0
    return taken.replace(tzinfo=zone).timestamp() + fraction


# --- recording them ---------------------------------------------------------------------------------------
DESCRIBE_LEASE = 600.0   # s one replica has to read a task's facts before another may try
RETRY_AFTER = 60.0       # s before a task whose zip could not be had is tried again, doubled each time
MAX_TRIES = 6            # then it is given up (said in the log); a later completion marks it due again


async def describe(relay: Relay, task: TaskRecord) -> bool:
    """Read the facts of a completed task's results and record them; True once they are recorded.

    One replica at a time (a lease in the store), one call per task in this process; the zip comes from the
    results store or the node through the download cache (`ensure`), whichever has it. A zip that cannot be had
    now (node away, archive not there yet) is tried again later by the backfill, up to MAX_TRIES times. A task
    removed or restarted meanwhile is left alone (its new end will mark it due again)."""
    return await relay.in_flight.run(("facts", task.uuid), lambda: _describe(relay, task))


async def _describe(relay: Relay, task: TaskRecord) -> bool:
    if not await relay.store.lease(f"facts:{task.uuid}", relay.replica_id, DESCRIBE_LEASE):
        return False
    started = time.monotonic()
    try:
        zip_path = await relay.cache.ensure(relay.registry, task)
    except (DownloadError, OSError) as exc:
        tries = await relay.store.retry_facts(task.uuid, time.time(), RETRY_AFTER)
        if tries >= MAX_TRIES:
            await relay.store.drop_facts_due(task.uuid)
            log.warning("facts given up uuid=%s after %d tries: %s", task.uuid, tries, exc)
        else:
            log.info("facts not read yet uuid=%s (try %d): %s", task.uuid, tries, exc)
        return False
    loop = asyncio.get_running_loop()
    read = await loop.run_in_executor(None, read_facts, zip_path, relay.staging.files(task.uuid), task.runs,
                                      task.created_ms)
    current = await relay.store.get_task(task.uuid)
    if current is None or current.runs != task.runs:
        return False
    if read.thumbnail is not None:  # first: facts that say there is a thumbnail find it there (or make it again)
        await keep_thumbnail(relay, task.uuid, read.thumbnail)
    await relay.store.put_facts(task.uuid, task.owner, read.facts)
    log.info("facts recorded uuid=%s seconds=%.2f missing=%d", task.uuid, time.monotonic() - started,
             len(read.facts["missing"]))
    return True


async def keep_thumbnail(relay: Relay, uuid: str, png: bytes) -> None:
    """Into the results store; a task removed while it was written loses it again (the removal, which deletes the
    task's record before its results, may have come between the caller's look at the record and this write)."""
    try:
        await relay.results.put_thumbnail(uuid, png)
        if await relay.store.get_task(uuid) is None:
            await relay.results.remove(uuid)
    except (OSError, ResultsError) as exc:  # made again from the zip when it is asked for
        log.warning("thumbnail of %s not kept in the results store: %s", uuid, exc)


async def thumbnail_of(relay: Relay, task: TaskRecord) -> bytes | None:
    """The completed task's thumbnail from the results store; None if its facts say it has none or are not read
    yet. One the store lacks is made again from the task's all.zip (from the results store, the download cache or
    the node: `ensure`), once however many ask, and kept; DownloadError if the zip cannot be had now."""
    facts = await relay.store.get_facts(task.uuid)
    if not facts or not facts.get("thumbnail") or facts.get("run", task.runs) != task.runs:
        return None
    try:
        png = await relay.results.thumbnail(task.uuid)
    except ResultsError as exc:
        log.warning("thumbnail of %s not read from the results store: %s (made again from the zip)", task.uuid, exc)
        png = None
    if png is not None:
        return png
    return await relay.in_flight.run(("thumbnail", task.uuid), lambda: _remake_thumbnail(relay, task))


async def _remake_thumbnail(relay: Relay, task: TaskRecord) -> bytes | None:
    zip_path = await relay.cache.ensure(relay.registry, task)
    png = await asyncio.get_running_loop().run_in_executor(None, thumbnail_png, zip_path)
    current = await relay.store.get_task(task.uuid)
    if png is not None and current is not None and current.runs == task.runs:
        await keep_thumbnail(relay, task.uuid, png)
        log.info("thumbnail made again uuid=%s bytes=%d", task.uuid, len(png))
    return png


async def backfill_facts(relay: Relay, batch: int = 20) -> int:
    """Describe completed tasks whose facts are due and not being read: those completed before facts existed
    (marked due when the store was upgraded), or whose reading was cut short (a kill mid-step) or failed.
    Called by the health lease's holder each round, `batch` tasks at most; the number recorded."""
    done = 0
    for uuid in await relay.store.due_facts(time.time(), batch):
        task = await relay.store.get_task(uuid)
        if task is None or task.stage != Stage.ON_NODE or list_fields(task)[0] != COMPLETED:
            await relay.store.drop_facts_due(uuid)  # removed, or restarted: its next completion marks it again
            continue
        done += await describe(relay, task)
    return done
