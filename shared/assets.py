"""The asset catalogue: which path inside a NodeODX `all.zip` holds which product.

One table, in the real NodeODX layout (see the fixture `all.zip`), so that the plugin, the relay's
single-asset downloads and the development node agree on names. Asset names are what a client asks
for (`/task/{uuid}/download/{name}` on the relay); paths are never taken from a request.
"""
from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum


class Product(str, Enum):
    ORTHOPHOTO = "orthophoto"
    DSM = "dsm"
    DTM = "dtm"
    POINT_CLOUD_LAZ = "laz"
    POINT_CLOUD_LAS = "las"
    POINT_CLOUD_COPC = "copc"
    POINT_CLOUD_EPT = "ept"
    TEXTURED_MODEL = "textured_model"
    REPORT = "report"
    SHOTS = "shots"
    ORTHOPHOTO_TILES = "orthophoto_tiles"
    DSM_TILES = "dsm_tiles"
    DTM_TILES = "dtm_tiles"
    CAMERAS = "cameras"
    IMAGES = "images"


@dataclass(frozen=True)
class Asset:
    """A product inside `all.zip`. A folder asset (`path` ends with "/") is served as a zip of it."""

    name: str
    product: Product
    path: str
    media_type: str
    description: str

    @property
    def is_folder(self) -> bool:
        return self.path.endswith("/")


ALL_ZIP = "all.zip"

ASSETS: tuple[Asset, ...] = (
    Asset("orthophoto.tif", Product.ORTHOPHOTO, "odm_orthophoto/odm_orthophoto.tif", "image/tiff",
          "Orthophoto, Cloud-Optimized GeoTIFF"),
    Asset("dsm.tif", Product.DSM, "odm_dem/dsm.tif", "image/tiff", "Digital surface model, GeoTIFF"),
    Asset("dtm.tif", Product.DTM, "odm_dem/dtm.tif", "image/tiff", "Digital terrain model, GeoTIFF"),
    Asset("georeferenced_model.laz", Product.POINT_CLOUD_LAZ,
          "odm_georeferencing/odm_georeferenced_model.laz", "application/vnd.laszip", "Point cloud, LAZ"),
    Asset("georeferenced_model.las", Product.POINT_CLOUD_LAS,
          "odm_georeferencing/odm_georeferenced_model.las", "application/vnd.las", "Point cloud, LAS"),
    Asset("georeferenced_model.copc.laz", Product.POINT_CLOUD_COPC,
          "odm_georeferencing/odm_georeferenced_model.copc.laz", "application/vnd.laszip+copc",
          "Point cloud, COPC"),
    Asset("ept.json", Product.POINT_CLOUD_EPT, "entwine_pointcloud/ept.json", "application/json",
          "Point cloud, Entwine Point Tiles (index; tiles beside it)"),
    Asset("entwine_pointcloud.zip", Product.POINT_CLOUD_EPT, "entwine_pointcloud/", "application/zip",
          "Point cloud, Entwine Point Tiles (index and every tile)"),
    Asset("textured_model.zip", Product.TEXTURED_MODEL, "odm_texturing/", "application/zip",
          "Textured 3D model"),
    Asset("report.pdf", Product.REPORT, "odm_report/report.pdf", "application/pdf", "Processing report"),
    Asset("shots.geojson", Product.SHOTS, "odm_report/shots.geojson", "application/geo+json",
          "Camera positions, one point per photo"),
    Asset("orthophoto_tiles.zip", Product.ORTHOPHOTO_TILES, "orthophoto_tiles/", "application/zip",
          "Orthophoto XYZ tiles"),
    Asset("dsm_tiles.zip", Product.DSM_TILES, "dsm_tiles/", "application/zip", "DSM XYZ tiles"),
    Asset("dtm_tiles.zip", Product.DTM_TILES, "dtm_tiles/", "application/zip", "DTM XYZ tiles"),
    Asset("cameras.json", Product.CAMERAS, "cameras.json", "application/json", "Camera models"),
    Asset("images.json", Product.IMAGES, "images.json", "application/json", "Image metadata"),
)

_BY_NAME = {asset.name: asset for asset in ASSETS}

#: Point-cloud products in the order a viewer should prefer them.
POINT_CLOUD_PREFERENCE = (Product.POINT_CLOUD_EPT, Product.POINT_CLOUD_COPC,
                          Product.POINT_CLOUD_LAZ, Product.POINT_CLOUD_LAS)

#: EPT tiles live below this folder; a tile is addressed as `ept/<relative path>` on the relay.
EPT_FOLDER = "entwine_pointcloud/"


def asset_by_name(name: str) -> Asset | None:
    """The catalogue entry for a download name, or None: the only way a name becomes a path."""
    return _BY_NAME.get(name)


def asset_for(product: Product) -> Asset:
    """The single-file asset of a product (the first in the table)."""
    return next(a for a in ASSETS if a.product == product)


def safe_member(path: str) -> bool:
    """True when a zip member name cannot escape the folder it is extracted into."""
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        return False
    normal = posixpath.normpath(path)
    return not (normal == ".." or normal.startswith("../") or posixpath.isabs(normal))


def products_present(members: Iterable[str]) -> dict[Product, str]:
    """Which single-file products a list of zip member names contains (folder assets excluded).

    Empty placeholder files count too; callers check sizes where they care."""
    names = set(members)
    found: dict[Product, str] = {}
    for asset in ASSETS:
        if not asset.is_folder and asset.path in names and asset.product not in found:
            found[asset.product] = asset.path
    return found
