"""Is a GeoTIFF cloud-optimized? Read from its TIFF header alone, without GDAL.

QGIS streams a raster over HTTP (GDAL /vsicurl/, Range requests) quickly only when it is tiled and has
overviews: a map of the whole orthophoto then reads a few small tiles of an overview instead of every strip
of the full image. NodeODX writes COGs with its `cog` option (the default); with `--cog` off, or from an
older ODM, the orthophoto is a plain GeoTIFF and streaming it is slow. The relay says which (`describe`),
so that the plugin can tell the user, and logs it.

Classic TIFF and BigTIFF, either byte order: the image file directories (IFDs) are walked, the first
being the full image; reduced-resolution IFDs (NewSubfileType bit 0, not masks) are overviews.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

IMAGE_WIDTH, IMAGE_LENGTH, NEW_SUBFILE_TYPE, TILE_WIDTH, TILE_LENGTH = 256, 257, 254, 322, 323
REDUCED, MASK = 1, 4
MAX_IFDS = 64  # more is a damaged (or looping) file
#: Written first by GDAL's COG driver: the IFDs come before the image data (one request reads them all).
COG_GHOST = b"LAYOUT=IFDS_BEFORE_DATA"


class NotTiff(ValueError):
    """Not a TIFF file at all."""


def _ifds(f: BinaryIO) -> tuple[list[dict[int, int]], bytes]:
    head = f.read(16)
    if head[:2] not in (b"II", b"MM"):
        raise NotTiff("not a TIFF file")
    order = "<" if head[:2] == b"II" else ">"
    version = struct.unpack(order + "H", head[2:4])[0]
    if version == 42:
        offset, count_fmt, entry_size, next_fmt, ghost_at = struct.unpack(order + "I", head[4:8])[0], "H", 12, "I", 8
    elif version == 43:
        offset, count_fmt, entry_size, next_fmt, ghost_at = struct.unpack(order + "Q", head[8:16])[0], "Q", 20, "Q", 16
    else:
        raise NotTiff("not a TIFF file")
    f.seek(ghost_at)
    ghost = f.read(400)
    ifds: list[dict[int, int]] = []
    while offset and len(ifds) < MAX_IFDS:
        f.seek(offset)
        count_size = struct.calcsize(count_fmt)
        count = struct.unpack(order + count_fmt, f.read(count_size))[0]
        if count > 4096:
            raise NotTiff("damaged TIFF directory")
        raw = f.read(count * entry_size)
        tags: dict[int, int] = {}
        for i in range(count):
            entry = raw[i * entry_size:(i + 1) * entry_size]
            tag, kind = struct.unpack(order + "HH", entry[:4])
            value = entry[8:] if entry_size == 12 else entry[12:]  # left-aligned in the value field
            fmt = {3: "H", 4: "I", 16: "Q"}.get(kind)  # SHORT, LONG, LONG8: all the tags read here use
            if fmt is not None:
                tags[tag] = struct.unpack(order + fmt, value[:struct.calcsize(fmt)])[0]
        ifds.append(tags)
        offset = struct.unpack(order + next_fmt, f.read(struct.calcsize(next_fmt)))[0]
    return ifds, ghost


def describe(path: Path) -> dict[str, Any]:
    """`{"cog": bool, "tiled", "overviews", "width", "height", "block", "layout", "problem"}` for a GeoTIFF:
    `cog` is true when it streams well (tiled, with overviews unless it fits in one tile); `layout` is true
    when GDAL's COG driver wrote it (its directories first); `problem` says in words what is missing."""
    with open(path, "rb") as f:
        try:
            ifds, ghost = _ifds(f)
        except struct.error:  # cut short
            raise NotTiff("a damaged or truncated TIFF file") from None
    if not ifds:
        raise NotTiff("a TIFF file without images")
    full = ifds[0]
    width, height = full.get(IMAGE_WIDTH, 0), full.get(IMAGE_LENGTH, 0)
    tiled = TILE_WIDTH in full and TILE_LENGTH in full
    block = [full[TILE_WIDTH], full[TILE_LENGTH]] if tiled else None
    overviews = sum(1 for tags in ifds[1:]
                    if tags.get(NEW_SUBFILE_TYPE, 0) & REDUCED and not tags.get(NEW_SUBFILE_TYPE, 0) & MASK)
    fits_one_tile = tiled and width <= block[0] and height <= block[1]
    problems = []
    if not tiled:
        problems.append("it is not tiled (it is stored in strips)")
    if not overviews and not fits_one_tile:
        problems.append("it has no overviews")
    problem = ""
    if problems:
        problem = (f"not a Cloud-Optimized GeoTIFF: {' and '.join(problems)}, so QGIS reading it over HTTP reads "
                   "much more of it than it shows; process with the option cog=true (NodeODX's default), or "
                   "keep a local copy instead")
    return {"cog": not problems, "tiled": tiled, "overviews": overviews, "width": width, "height": height,
            "block": block, "layout": COG_GHOST in ghost, "problem": problem}
