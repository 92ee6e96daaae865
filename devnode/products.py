"""Turn uploaded photos into NodeODX's `all.zip` products, placed by GPS instead of photogrammetry.

The development node must hand clients real, georeferenced files in the real layout (the plugin loads
them into QGIS; the relay serves single assets out of the zip), but tests cannot wait for structure from
motion. So each photo is assumed to look straight down with its top towards grid north, from
`FLIGHT_HEIGHT_M` above the ground, and is painted onto that ground footprint around its GPS position;
the elevation models and point cloud are plausible shapes derived from the same grid. Everything is in
the WGS84 / UTM zone of the photos, as ODM writes it.

Photos without GPS: when some photos have a position, the others are left out of the map (as ODM would
not place them either); when none has one, all are laid out on a flight grid around
`devnode.geotag.FALLBACK_LOCATION`.
"""
from __future__ import annotations

import json
import logging
import math
import shutil
import statistics
import zipfile
from dataclasses import dataclass
from pathlib import Path

import laspy
import numpy as np
from osgeo import gdal, osr

from devnode.geotag import FALLBACK_LOCATION, PhotoExif, read_exif
from shared.assets import ALL_ZIP, EPT_FOLDER, Product, asset_for
from shared.inputs import is_photo

gdal.UseExceptions()
log = logging.getLogger(__name__)

#: Height above ground the photos are assumed to be taken from (a typical mapping flight).
FLIGHT_HEIGHT_M = 90.0
#: 35 mm-equivalent focal length assumed when EXIF does not say (a typical survey drone's wide lens).
DEFAULT_FOCAL_35MM = 24.0
#: Ground sample distance of the rasters unless the task asks for `orthophoto-resolution` (cm/px).
DEFAULT_GSD_M = 0.25
#: Rasters never grow beyond this many pixels a side; larger flights get a coarser grid instead.
MAX_RASTER_SIDE = 2000
NODATA = -9999.0
#: How many points the point cloud samples from the surface model.
POINT_BUDGET = 20_000

#: Photo formats this node reads and places; fewer than ODM takes (no PNG, no raw), which tests do not need.
_READABLE_SUFFIXES = {".jpg", ".jpeg", ".tif", ".tiff"}
_FILM_DIAGONAL_MM = math.hypot(36.0, 24.0)
_LAS_SCALE = 0.001
_EPT_SPAN = 128
#: A nadir camera with its image top towards north, as an OpenSfM world-to-camera rotation vector.
_NADIR_ROTATION = [math.pi, 0.0, 0.0]


@dataclass(frozen=True)
class Photo:
    path: Path
    width: int
    height: int
    exif: PhotoExif


@dataclass(frozen=True)
class Placement:
    """A photo's camera position in the map CRS and the ground rectangle it is painted on."""

    photo: Photo
    easting: float
    northing: float
    altitude: float
    ground_width: float
    ground_height: float


@dataclass(frozen=True)
class Grid:
    """The one raster grid every product shares (north-up, square pixels)."""

    epsg: int
    left: float
    top: float
    gsd: float
    cols: int
    rows: int

    @property
    def geotransform(self) -> tuple[float, ...]:
        return (self.left, self.gsd, 0.0, self.top, 0.0, -self.gsd)

    @property
    def wkt(self) -> str:
        return _srs(self.epsg).ExportToWkt()


def build_outputs(images: list[Path], task_dir: Path, *, skip_post_processing: bool = False,
                  options: dict | None = None) -> Path:
    """Write the products under `task_dir/assets` and zip them to `task_dir/all.zip`; return the zip.

    Raises ValueError when no file is a readable photo (NodeODX fails such tasks too)."""
    photos = [photo for photo in map(_open_photo, images) if photo is not None]
    if not photos:
        raise ValueError("no readable JPEG or TIFF photo among the inputs")
    epsg, ground, placements = _place(photos)
    grid = _grid(placements, epsg, _requested_gsd(options or {}))
    rgba = _paint(grid, placements)
    dtm, dsm = _terrain(grid, ground, rgba[..., 3] > 0)

    assets = task_dir / "assets"
    shutil.rmtree(assets, ignore_errors=True)
    cog = str((options or {}).get("cog", True)).lower() != "false"  # NodeODX adds cog=true unless told otherwise
    _write_cog(_asset(assets, Product.ORTHOPHOTO), np.moveaxis(rgba, -1, 0), grid, None, cog)
    _write_cog(_asset(assets, Product.DSM), dsm[None], grid, NODATA, cog)
    _write_cog(_asset(assets, Product.DTM), dtm[None], grid, NODATA, cog)
    points = _sample_points(grid, rgba, dtm, dsm)
    _write_laz(_asset(assets, Product.POINT_CLOUD_LAZ), points, grid, ept_tile=False)
    if not skip_post_processing:
        _write_ept(assets / EPT_FOLDER, points, grid)
    _write_json(_asset(assets, Product.SHOTS), _shots(placements, epsg))
    _write_json(_asset(assets, Product.IMAGES), [_image_entry(photo) for photo in photos])
    _write_json(_asset(assets, Product.CAMERAS), _cameras(photos))
    summary = _summary(photos, placements, grid, len(points["x"]))
    _asset(assets, Product.REPORT).write_bytes(_pdf(summary))
    (assets / "task_output.txt").write_text("\n".join(summary) + "\n")
    return _zip(assets, task_dir / ALL_ZIP)


def footprint_size(height_above_ground: float, focal_35mm: float, width_px: int,
                   height_px: int) -> tuple[float, float]:
    """Ground width and height (m) a nadir photo covers; the 35 mm equivalent is a diagonal ratio."""
    diagonal = height_above_ground * _FILM_DIAGONAL_MM / focal_35mm
    pixels = math.hypot(width_px, height_px)
    return diagonal * width_px / pixels, diagonal * height_px / pixels


def flight_grid(count: int, across_m: float, along_m: float) -> list[tuple[float, float]]:
    """(east, north) offsets of a lawnmower flight centred on 0, 0: north-south lines, serpentine."""
    lines = max(1, round(math.sqrt(count / 1.5)))
    per_line = math.ceil(count / lines)
    offsets = []
    for index in range(count):
        line, step = divmod(index, per_line)
        if line % 2:
            step = per_line - 1 - step
        offsets.append(((line - (lines - 1) / 2) * across_m, (step - (per_line - 1) / 2) * along_m))
    return offsets


def utm_epsg(latitude: float, longitude: float) -> int:
    """EPSG code of the WGS84 / UTM zone holding a point (the plain 6-degree zones)."""
    zone = min(60, max(1, int((longitude + 180) // 6) + 1))
    return (32600 if latitude >= 0 else 32700) + zone


def transform_points(points: list[tuple[float, float]], src_epsg: int,
                     dst_epsg: int) -> list[tuple[float, float]]:
    """(x, y) pairs from one CRS to another; geographic CRSs take (longitude, latitude)."""
    transform = osr.CoordinateTransformation(_srs(src_epsg), _srs(dst_epsg))
    return [(x, y) for x, y, *_ in transform.TransformPoints([list(p) for p in points])]


def _srs(epsg: int) -> osr.SpatialReference:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def _open_photo(path: Path) -> Photo | None:
    """A photo to place, or None for a side file (NodeODX's rule: `shared.inputs`) or what is no photo."""
    if not is_photo(path.name) or path.suffix.lower() not in _READABLE_SUFFIXES:
        return None
    try:
        dataset = gdal.Open(str(path))
    except RuntimeError as exc:
        log.info("skipping %s: not readable as an image (%s)", path.name, exc)
        return None
    band = dataset.GetRasterBand(1)
    georeferenced = bool(dataset.GetProjection())
    if georeferenced or band.DataType not in (gdal.GDT_Byte, gdal.GDT_UInt16):
        log.info("skipping %s: a map or a non-photo raster", path.name)
        return None
    return Photo(path, dataset.RasterXSize, dataset.RasterYSize, read_exif(path))


def _place(photos: list[Photo]) -> tuple[int, float, list[Placement]]:
    """The map CRS, the ground altitude and where each placeable photo goes."""
    tagged = [p for p in photos if p.exif.geotag is not None]
    if tagged:
        positions = [(p.exif.geotag.longitude, p.exif.geotag.latitude) for p in tagged]
        altitudes = [p.exif.geotag.altitude for p in tagged]
    else:
        tagged = photos
        positions, altitudes = _fallback_positions(len(photos))
    skipped = len(photos) - len(tagged)
    if skipped:
        log.info("%d photos without GPS left out of the map", skipped)
    longitude, latitude = (statistics.fmean(axis) for axis in zip(*positions))
    epsg = utm_epsg(latitude, longitude)
    projected = transform_points(positions, 4326, epsg)
    known = [a for a in altitudes if a is not None]
    typical = statistics.median(known) if known else FLIGHT_HEIGHT_M
    ground = typical - FLIGHT_HEIGHT_M
    placements = []
    for photo, (easting, northing), altitude in zip(tagged, projected, altitudes):
        altitude = typical if altitude is None else altitude
        focal = photo.exif.focal_length_35mm or DEFAULT_FOCAL_35MM
        width, height = footprint_size(max(10.0, altitude - ground), focal, photo.width, photo.height)
        placements.append(Placement(photo, easting, northing, altitude, width, height))
    return epsg, ground, placements


def _fallback_positions(count: int) -> tuple[list[tuple[float, float]], list[float | None]]:
    """Longitude/latitude of a flight grid around the fallback location, for photos with no GPS."""
    centre = FALLBACK_LOCATION
    epsg = utm_epsg(centre.latitude, centre.longitude)
    (x, y), = transform_points([(centre.longitude, centre.latitude)], 4326, epsg)
    grid = [(x + east, y + north) for east, north in flight_grid(count, 50.0, 35.0)]
    return transform_points(grid, epsg, 4326), [centre.altitude] * count


def _requested_gsd(options: dict) -> float:
    try:
        gsd = float(options.get("orthophoto-resolution")) / 100
    except (TypeError, ValueError):
        return DEFAULT_GSD_M
    return gsd if math.isfinite(gsd) and gsd > 0 else DEFAULT_GSD_M


def _grid(placements: list[Placement], epsg: int, gsd: float) -> Grid:
    left = min(p.easting - p.ground_width / 2 for p in placements)
    right = max(p.easting + p.ground_width / 2 for p in placements)
    bottom = min(p.northing - p.ground_height / 2 for p in placements)
    top = max(p.northing + p.ground_height / 2 for p in placements)
    gsd = max(gsd, (right - left) / MAX_RASTER_SIDE, (top - bottom) / MAX_RASTER_SIDE)
    left, top = math.floor(left / gsd) * gsd, math.ceil(top / gsd) * gsd
    cols = min(MAX_RASTER_SIDE, math.ceil((right - left) / gsd))
    rows = min(MAX_RASTER_SIDE, math.ceil((top - bottom) / gsd))
    return Grid(epsg, left, top, gsd, cols, rows)


def _paint(grid: Grid, placements: list[Placement]) -> np.ndarray:
    """RGBA mosaic: each ground pixel shows the photo whose centre is nearest, as orthophotos favour
    the most nadir view; alpha is 0 where no photo reaches."""
    rgba = np.zeros((grid.rows, grid.cols, 4), np.uint8)
    nearest = np.full((grid.rows, grid.cols), np.inf, np.float32)
    for placement in placements:
        width = max(1, round(placement.ground_width / grid.gsd))
        height = max(1, round(placement.ground_height / grid.gsd))
        col0 = round((placement.easting - grid.left) / grid.gsd - width / 2)
        row0 = round((grid.top - placement.northing) / grid.gsd - height / 2)
        rows = slice(max(0, row0), min(grid.rows, row0 + height))
        cols = slice(max(0, col0), min(grid.cols, col0 + width))
        if rows.start >= rows.stop or cols.start >= cols.stop:
            continue
        pixels = _read_rgb(placement.photo.path, width, height)
        if pixels is None:
            continue
        pixels = pixels[rows.start - row0:rows.stop - row0, cols.start - col0:cols.stop - col0]
        r, c = np.ogrid[rows, cols]
        distance = (r - (row0 + height / 2)) ** 2 + (c - (col0 + width / 2)) ** 2
        wins = distance < nearest[rows, cols]
        nearest[rows, cols][wins] = distance[wins]
        rgba[rows, cols, :3][wins] = pixels[wins]
        rgba[rows, cols, 3][wins] = 255
    return rgba


def _read_rgb(path: Path, width: int, height: int) -> np.ndarray | None:
    """The photo scaled to width x height as 8-bit RGB; JPEGs decode at reduced size, so it is cheap."""
    try:
        dataset = gdal.Open(str(path))
        bands = list(range(1, min(3, dataset.RasterCount) + 1))
        data = dataset.ReadAsArray(buf_xsize=width, buf_ysize=height, band_list=bands,
                                   resample_alg=gdal.GRIORA_Average)
    except RuntimeError as exc:
        log.info("cannot decode %s: %s", path.name, exc)
        return None
    data = data.reshape(len(bands), height, width)
    if data.dtype != np.uint8:
        data = (data.astype(np.float32) * (255 / max(1, int(data.max())))).astype(np.uint8)
    if len(bands) < 3:
        data = np.repeat(data[:1], 3, axis=0)
    return np.moveaxis(data, 0, -1)


def _terrain(grid: Grid, ground: float, covered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DTM: gentle rolling ground at `ground` metres; DSM: the DTM plus box-shaped buildings and
    hedges on a coarse random lattice (seeded by the grid, so the same inputs give the same files)."""
    y, x = np.ogrid[:grid.rows, :grid.cols]
    east, north = x * grid.gsd, y * grid.gsd
    dtm = (ground + 1.5 * np.sin(2 * np.pi * east / 180) + np.cos(2 * np.pi * north / 140)
           + 0.004 * (east - grid.cols * grid.gsd / 2)).astype(np.float32)
    cell = 8.0
    rng = np.random.default_rng(grid.cols * 7919 + grid.rows)
    lattice_shape = (int(grid.rows * grid.gsd // cell) + 1, int(grid.cols * grid.gsd // cell) + 1)
    lattice = np.where(rng.random(lattice_shape) < 0.08, rng.uniform(3, 12, lattice_shape), 0)
    rows = (np.arange(grid.rows) * grid.gsd // cell).astype(int)
    cols = (np.arange(grid.cols) * grid.gsd // cell).astype(int)
    dsm = dtm + lattice[rows[:, None], cols[None, :]].astype(np.float32)
    return np.where(covered, dtm, NODATA), np.where(covered, dsm, NODATA)


def _write_cog(path: Path, bands: np.ndarray, grid: Grid, nodata: float | None, cog: bool = True) -> None:
    """A Cloud-Optimized GeoTIFF (what NodeODX's `cog` option makes); a 4-band byte image is RGBA. With `cog`
    false, what ODM writes with --cog off: a tiled GeoTIFF without overviews."""
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = gdal.GDT_Byte if bands.dtype == np.uint8 else gdal.GDT_Float32
    memory = gdal.GetDriverByName("MEM").Create("", grid.cols, grid.rows, len(bands), kind)
    memory.SetGeoTransform(grid.geotransform)
    memory.SetProjection(grid.wkt)
    for index, data in enumerate(bands, start=1):
        band = memory.GetRasterBand(index)
        band.WriteArray(data)
        if nodata is not None:
            band.SetNoDataValue(nodata)
    if len(bands) == 4:
        for index, colour in enumerate((gdal.GCI_RedBand, gdal.GCI_GreenBand, gdal.GCI_BlueBand,
                                        gdal.GCI_AlphaBand), start=1):
            memory.GetRasterBand(index).SetColorInterpretation(colour)
    if not cog:
        gdal.Translate(str(path), memory, format="GTiff", creationOptions=[
            "COMPRESS=DEFLATE", "TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256"])
        return
    gdal.Translate(str(path), memory, format="COG",
                   creationOptions=["COMPRESS=DEFLATE", "PREDICTOR=YES", "BLOCKSIZE=256"])


def _sample_points(grid: Grid, rgba: np.ndarray, dtm: np.ndarray, dsm: np.ndarray) -> dict:
    """Points on the DSM at random spots inside the footprint, coloured from the orthophoto."""
    rng = np.random.default_rng(grid.cols * 31 + grid.rows)
    valid = np.flatnonzero((rgba[..., 3] > 0) & (dsm != NODATA))
    chosen = np.sort(rng.choice(valid, min(POINT_BUDGET, len(valid)), replace=False))
    rows, cols = np.divmod(chosen, grid.cols)
    colour = rgba[rows, cols, :3].astype(np.uint16) * 257
    above_ground = dsm[rows, cols] - dtm[rows, cols]
    return {
        "x": grid.left + (cols + rng.random(len(chosen))) * grid.gsd,
        "y": grid.top - (rows + rng.random(len(chosen))) * grid.gsd,
        "z": dsm[rows, cols].astype(np.float64),
        "red": colour[:, 0], "green": colour[:, 1], "blue": colour[:, 2],
        # ASPRS classes: 2 ground, 6 building.
        "classification": np.where(above_ground > 0.5, 6, 2).astype(np.uint8),
    }


def _write_laz(path: Path, points: dict, grid: Grid, *, ept_tile: bool) -> None:
    """LAS 1.4 / format 7 with a WKT CRS for the georeferenced model; EPT tiles keep the common
    LAS 1.2 / format 3 and leave the CRS to ept.json, as Entwine does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = laspy.LasHeader(point_format=3, version="1.2") if ept_tile else laspy.LasHeader(
        point_format=7, version="1.4")
    header.offsets = _las_offsets(points)
    header.scales = [_LAS_SCALE] * 3
    if not ept_tile:
        header.vlrs.append(laspy.vlrs.known.WktCoordinateSystemVlr(grid.wkt))
        header.global_encoding.wkt = True
    cloud = laspy.LasData(header)
    for name, values in points.items():
        setattr(cloud, name, values)
    cloud.write(str(path), do_compress=True)


def _las_offsets(points: dict) -> list[float]:
    return [math.floor(float(points[axis].min())) for axis in "xyz"]


def _write_ept(folder: Path, points: dict, grid: Grid) -> None:
    """A one-node Entwine Point Tile set; QGIS reads the CRS only from `srs.wkt`."""
    _write_laz(folder / "ept-data" / "0-0-0-0.laz", points, grid, ept_tile=True)
    _write_json(folder / "ept-hierarchy" / "0-0-0-0.json", {"0-0-0-0": len(points["x"])})
    _write_json(folder / "ept.json", _ept_metadata(points, grid))


#: EPT dimensions of an LAS point format 3 tile, as Entwine names them, with the sampled ones' keys.
_EPT_DIMENSIONS = (
    ("X", "signed", 4, "x"), ("Y", "signed", 4, "y"), ("Z", "signed", 4, "z"),
    ("Intensity", "unsigned", 2, None), ("ReturnNumber", "unsigned", 1, None),
    ("NumberOfReturns", "unsigned", 1, None), ("ScanDirectionFlag", "unsigned", 1, None),
    ("EdgeOfFlightLine", "unsigned", 1, None), ("Classification", "unsigned", 1, "classification"),
    ("ScanAngleRank", "float", 4, None), ("UserData", "unsigned", 1, None),
    ("PointSourceId", "unsigned", 2, None), ("GpsTime", "float", 8, None),
    ("Red", "unsigned", 2, "red"), ("Green", "unsigned", 2, "green"), ("Blue", "unsigned", 2, "blue"),
)


def _ept_metadata(points: dict, grid: Grid) -> dict:
    low = [float(points[axis].min()) for axis in "xyz"]
    high = [float(points[axis].max()) for axis in "xyz"]
    half = max(h - lo for lo, h in zip(low, high)) / 2 + 1
    centre = [(lo + h) / 2 for lo, h in zip(low, high)]
    return {
        "version": "1.0.0",
        "dataType": "laszip",
        "hierarchyType": "json",
        "points": len(points["x"]),
        "span": _EPT_SPAN,
        "bounds": [c - half for c in centre] + [c + half for c in centre],
        "boundsConforming": low + high,
        "schema": _ept_schema(points),
        "srs": {"authority": "EPSG", "horizontal": str(grid.epsg), "wkt": grid.wkt},
    }


def _ept_schema(points: dict) -> list[dict]:
    """Dimensions with Entwine's statistics: QGIS picks the RGB range (8 or 16 bit) and the
    classification legend from them, and renders 16-bit colours white without them."""
    offsets = dict(zip("xyz", _las_offsets(points)))
    schema = []
    for name, kind, size, key in _EPT_DIMENSIONS:
        values = points[key] if key else np.zeros(1)
        entry = {"name": name, "type": kind, "size": size, "minimum": float(values.min()),
                 "maximum": float(values.max()), "mean": float(values.mean()),
                 "stddev": float(values.std()), "variance": float(values.var())}
        if key in offsets:
            entry.update(scale=_LAS_SCALE, offset=offsets[key])
        if name == "Classification":
            classes, counts = np.unique(values, return_counts=True)
            entry["counts"] = [{"value": int(c), "count": int(n)} for c, n in zip(classes, counts)]
        schema.append(entry)
    return schema


def _shots(placements: list[Placement], epsg: int) -> dict:
    """Camera positions as ODM's shots.geojson has them: WGS84 points with OpenSfM camera facts."""
    lonlat = transform_points([(p.easting, p.northing) for p in placements], epsg, 4326)
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature",
         "geometry": {"type": "Point", "coordinates": [lon, lat, p.altitude]},
         "properties": {"filename": p.photo.path.name, "width": p.photo.width,
                        "height": p.photo.height, "focal": _focal_ratio(p.photo),
                        "rotation": _NADIR_ROTATION}}
        for p, (lon, lat) in zip(placements, lonlat)]}


def _focal_ratio(photo: Photo) -> float:
    """OpenSfM's focal: focal length over the sensor's longer side, here from the 35 mm equivalent."""
    return (photo.exif.focal_length_35mm or DEFAULT_FOCAL_35MM) / 36.0


def _image_entry(photo: Photo) -> dict:
    """One photo as ODM's images.json lists it; position fields stay null without GPS."""
    exif, geotag = photo.exif, photo.exif.geotag
    ccd_width = None
    if exif.focal_length and exif.focal_length_35mm:
        ccd_width = 36.0 * exif.focal_length / exif.focal_length_35mm
    return {
        "filename": photo.path.name, "width": photo.width, "height": photo.height,
        "camera_make": exif.make or "unknown", "camera_model": exif.model or "unknown",
        "make_model": _make_model(photo), "focal_length": exif.focal_length,
        "ccd_width": ccd_width, "focal_length_px": _focal_ratio(photo) * max(photo.width, photo.height),
        "latitude": geotag.latitude if geotag else None,
        "longitude": geotag.longitude if geotag else None,
        "altitude": geotag.altitude if geotag else None,
        "path_file": str(photo.path),
    }


def _make_model(photo: Photo) -> str:
    return f"{photo.exif.make or 'unknown'} {photo.exif.model or 'unknown'}".lower()


def _cameras(photos: list[Photo]) -> dict:
    """One OpenSfM camera model per distinct camera, keyed as ODM keys cameras.json."""
    cameras = {}
    for photo in photos:
        focal = _focal_ratio(photo)
        key = f"{_make_model(photo)} {photo.width} {photo.height} perspective {focal:.4f}"
        cameras[key] = {"projection_type": "perspective", "width": photo.width,
                        "height": photo.height, "focal": focal, "k1": 0.0, "k2": 0.0}
    return cameras


def _summary(photos: list[Photo], placements: list[Placement], grid: Grid, points: int) -> list[str]:
    """What the task did, in the words the report and task_output.txt both use."""
    area_ha = grid.cols * grid.rows * grid.gsd ** 2 / 10_000
    return [
        "ODX Relay development node: simulated processing",
        "Photos placed by GPS EXIF, no photogrammetry.",
        f"Photos: {len(photos)}, placed: {len(placements)}",
        f"CRS: EPSG:{grid.epsg}",
        f"Grid: {grid.cols} x {grid.rows} px at {grid.gsd:.3f} m/px, {area_ha:.2f} ha",
        f"Point cloud: {points} points",
    ]


def _pdf(lines: list[str]) -> bytes:
    """A one-page PDF of text lines: enough for clients that only check the report is there."""
    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    text = "".join(f"({escape(line)}) Tj T* " for line in lines)
    stream = f"BT /F1 12 Tf 16 TL 56 780 Td {text}ET".encode("latin-1", "replace")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _asset(assets: Path, product: Product) -> Path:
    path = assets / asset_for(product).path
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _write_json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2))


def _zip(assets: Path, target: Path) -> Path:
    """all.zip with paths relative to the assets folder; rasters and LAZ are stored, not recompressed."""
    partial = target.with_suffix(".zip.part")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in assets.rglob("*") if p.is_file()):
            stored = path.suffix in (".tif", ".laz")
            archive.write(path, path.relative_to(assets).as_posix(),
                          zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
    partial.replace(target)
    return target
