"""The merge stage of split-merge: the submodels' outputs made into one task's outputs.

As ODM's merge stage does (`stages/splitmerge.py`), the parent mosaics the submodels' orthophotos, DSMs
and DTMs into one georeferenced raster each (GDAL's warper: one grid over the union of the submodels, in
the flight's UTM zone, every submodel painted where it has data), joins their point clouds (laspy), their
camera positions and camera models, and writes them in the layout of an ordinary task's `all.zip`
(`devnode.products`), so a client cannot tell a merged task from a whole one but by its extent.

Where submodels overlap, the later one wins on the orthophoto and DEMs; ODM blends along cutlines
instead, which the simulated photos do not need.
"""
from __future__ import annotations

import json
import logging
import math
import shutil
import statistics
import uuid as uuidlib
from pathlib import Path

import laspy
import numpy as np
from osgeo import gdal, osr

from devnode.opensfm import open_photos
from devnode.products import (
    MAX_RASTER_SIDE,
    NODATA,
    Grid,
    _asset,
    _image_entry,
    _pdf,
    _write_ept,
    _write_json,
    _write_laz,
    _zip,
    transform_points,
    utm_epsg,
)
from shared.assets import ALL_ZIP, EPT_FOLDER, Product, asset_for

gdal.UseExceptions()
log = logging.getLogger(__name__)

_COG_OPTIONS = ["COMPRESS=DEFLATE", "PREDICTOR=YES", "BLOCKSIZE=256"]


def merge_outputs(submodel_dirs: list[Path], images: list[Path], task_dir: Path, *,
                  skip_post_processing: bool = False) -> Path:
    """Write the merged products under `task_dir/assets` and zip them to `task_dir/all.zip`; the zip.

    Raises ValueError when no submodel has an orthophoto (nothing to merge)."""
    orthophotos = _existing(submodel_dirs, Product.ORTHOPHOTO)
    if not orthophotos:
        raise ValueError("no submodel has an orthophoto to merge")
    photos = open_photos(images)
    epsg = _flight_epsg(photos) or _raster_epsg(orthophotos[0])
    grid = _union_grid(orthophotos, epsg)

    assets = task_dir / "assets"
    shutil.rmtree(assets, ignore_errors=True)
    _mosaic(orthophotos, _asset(assets, Product.ORTHOPHOTO), grid, nodata=None)
    for product in (Product.DSM, Product.DTM):
        sources = _existing(submodel_dirs, product)
        if sources:
            _mosaic(sources, _asset(assets, product), grid, nodata=NODATA)
    points = _merged_points(_existing(submodel_dirs, Product.POINT_CLOUD_LAZ), epsg)
    if points is not None:
        _write_laz(_asset(assets, Product.POINT_CLOUD_LAZ), points, grid, ept_tile=False)
        if not skip_post_processing:
            _write_ept(assets / EPT_FOLDER, points, grid)
    _write_json(_asset(assets, Product.SHOTS), _merged_shots(_existing(submodel_dirs, Product.SHOTS)))
    _write_json(_asset(assets, Product.IMAGES), [_image_entry(photo) for photo in photos])
    _write_json(_asset(assets, Product.CAMERAS), _merged_cameras(_existing(submodel_dirs, Product.CAMERAS)))
    summary = _summary(len(submodel_dirs), len(photos), grid, 0 if points is None else len(points["x"]))
    _asset(assets, Product.REPORT).write_bytes(_pdf(summary))
    (assets / "task_output.txt").write_text("\n".join(summary) + "\n")
    return _zip(assets, task_dir / ALL_ZIP)


def _existing(submodel_dirs: list[Path], product: Product) -> list[Path]:
    path = asset_for(product).path
    return [folder / path for folder in submodel_dirs if (folder / path).is_file()]


def _flight_epsg(photos: list) -> int | None:
    """The UTM zone of the whole flight (each submodel chose its own; they agree unless it straddles one)."""
    tags = [p.exif.geotag for p in photos if p.exif.geotag is not None]
    if not tags:
        return None
    return utm_epsg(statistics.fmean(t.latitude for t in tags), statistics.fmean(t.longitude for t in tags))


def _raster_epsg(path: Path) -> int:
    srs = osr.SpatialReference(wkt=gdal.Open(str(path)).GetProjection())
    srs.AutoIdentifyEPSG()
    return int(srs.GetAuthorityCode(None))


def _bounds(path: Path, epsg: int) -> tuple[float, float, float, float, float]:
    """(left, bottom, right, top, pixel size) of a raster, in `epsg`."""
    dataset = gdal.Open(str(path))
    left, gsd, _, top, _, negative = dataset.GetGeoTransform()
    right, bottom = left + gsd * dataset.RasterXSize, top + negative * dataset.RasterYSize
    source = _raster_epsg(path)
    if source != epsg:
        corners = transform_points([(left, bottom), (left, top), (right, bottom), (right, top)], source, epsg)
        xs, ys = [c[0] for c in corners], [c[1] for c in corners]
        left, right, bottom, top = min(xs), max(xs), min(ys), max(ys)
    return left, bottom, right, top, gsd


def _union_grid(rasters: list[Path], epsg: int) -> Grid:
    """One north-up grid over every submodel's orthophoto, at the finest submodel's pixel size unless
    that would exceed MAX_RASTER_SIDE (as for a whole task)."""
    boxes = [_bounds(path, epsg) for path in rasters]
    left, bottom = min(b[0] for b in boxes), min(b[1] for b in boxes)
    right, top = max(b[2] for b in boxes), max(b[3] for b in boxes)
    gsd = max(min(b[4] for b in boxes), (right - left) / MAX_RASTER_SIDE, (top - bottom) / MAX_RASTER_SIDE)
    left, top = math.floor(left / gsd) * gsd, math.ceil(top / gsd) * gsd
    cols = min(MAX_RASTER_SIDE, math.ceil((right - left) / gsd))
    rows = min(MAX_RASTER_SIDE, math.ceil((top - bottom) / gsd))
    return Grid(epsg, left, top, gsd, cols, rows)


def _mosaic(sources: list[Path], target: Path, grid: Grid, nodata: float | None) -> None:
    """Warp every source onto `grid` (alpha or nodata marks where each has data), then write a COG."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = f"/vsimem/devnode-merge-{uuidlib.uuid4().hex}.tif"
    bounds = (grid.left, grid.top - grid.rows * grid.gsd, grid.left + grid.cols * grid.gsd, grid.top)
    extra = {"srcNodata": nodata, "dstNodata": nodata} if nodata is not None else {"srcAlpha": True, "dstAlpha": True}
    try:
        warped = gdal.Warp(scratch, [str(s) for s in sources], format="GTiff", dstSRS=grid.wkt,
                           outputBounds=bounds, width=grid.cols, height=grid.rows, resampleAlg="near",
                           **extra)
        warped.FlushCache()
        warped = None
        gdal.Translate(str(target), scratch, format="COG", creationOptions=_COG_OPTIONS)
    finally:
        gdal.Unlink(scratch)


def _merged_points(clouds: list[Path], epsg: int) -> dict | None:
    """Every submodel's points in one set of arrays, in `epsg`."""
    parts = []
    for path in clouds:
        cloud = laspy.read(str(path))
        x, y = np.asarray(cloud.x, np.float64), np.asarray(cloud.y, np.float64)
        source = _las_epsg(cloud) or epsg
        if source != epsg and len(x):
            moved = np.array(transform_points(list(zip(x.tolist(), y.tolist())), source, epsg))
            x, y = moved[:, 0], moved[:, 1]
        parts.append({"x": x, "y": y, "z": np.asarray(cloud.z, np.float64),
                      "red": np.asarray(cloud.red), "green": np.asarray(cloud.green),
                      "blue": np.asarray(cloud.blue), "classification": np.asarray(cloud.classification, np.uint8)})
    parts = [p for p in parts if len(p["x"])]
    if not parts:
        return None
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def _las_epsg(cloud: laspy.LasData) -> int | None:
    for vlr in cloud.header.vlrs:
        if isinstance(vlr, laspy.vlrs.known.WktCoordinateSystemVlr):
            srs = osr.SpatialReference(wkt=vlr.string)
            srs.AutoIdentifyEPSG()
            code = srs.GetAuthorityCode(None)
            return int(code) if code else None
    return None


def _merged_shots(files: list[Path]) -> dict:
    """ODM's merge_geojson_shots: one FeatureCollection; a photo shared by two submodels appears once."""
    features, seen = [], set()
    for path in files:
        for feature in json.loads(path.read_text()).get("features", []):
            name = feature.get("properties", {}).get("filename")
            if name not in seen:
                seen.add(name)
                features.append(feature)
    return {"type": "FeatureCollection", "features": features}


def _merged_cameras(files: list[Path]) -> dict:
    """ODM's merge_cameras: the union of the submodels' camera models."""
    cameras: dict = {}
    for path in files:
        cameras.update(json.loads(path.read_text()))
    return cameras


def _summary(submodels: int, photos: int, grid: Grid, points: int) -> list[str]:
    area_ha = grid.cols * grid.rows * grid.gsd ** 2 / 10_000
    return [
        "ODX Relay development node: simulated processing, split-merge",
        f"Photos: {photos}, in {submodels} submodels, merged",
        f"CRS: EPSG:{grid.epsg}",
        f"Grid: {grid.cols} x {grid.rows} px at {grid.gsd:.3f} m/px, {area_ha:.2f} ha",
        f"Point cloud: {points} points",
    ]
