"""Helpers of the split-merge tests: what a merged orthophoto covers."""
from __future__ import annotations

from pathlib import Path

from osgeo import gdal

from devnode.geotag import read_geotag
from devnode.products import transform_points


def covered(orthophoto: Path, photo: Path) -> bool:
    """The orthophoto has data (alpha 255) at the photo's GPS position."""
    dataset = gdal.Open(str(orthophoto))
    tag = read_geotag(photo)
    assert tag is not None
    srs = dataset.GetSpatialRef()
    srs.AutoIdentifyEPSG()
    (x, y), = transform_points([(tag.longitude, tag.latitude)], 4326, int(srs.GetAuthorityCode(None)))
    left, gsd, _, top, _, negative = dataset.GetGeoTransform()
    col, row = int((x - left) / gsd), int((y - top) / negative)
    if not (0 <= col < dataset.RasterXSize and 0 <= row < dataset.RasterYSize):
        return False
    return int(dataset.GetRasterBand(4).ReadAsArray(col, row, 1, 1)[0, 0]) == 255
