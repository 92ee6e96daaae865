"""The relay's two small pure parts of streaming: reading whether a GeoTIFF is cloud-optimized from its header
(against files GDAL writes every way a node may write them, and damaged ones), and signing download URLs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from proxy import signed_urls
from proxy.cog import NotTiff, describe

gdal.UseExceptions()
SECRET = b"k" * 32


def raster(path: Path, size: int = 1500, driver: str = "GTiff", options: tuple[str, ...] = (),
           overviews: tuple[int, ...] = ()) -> Path:
    memory = gdal.GetDriverByName("MEM").Create("", size, size, 3, gdal.GDT_Byte)
    memory.GetRasterBand(1).WriteArray(np.arange(size * size, dtype=np.uint32).reshape(size, size).astype(np.uint8))
    gdal.Translate(str(path), memory, format=driver, creationOptions=list(options))
    if overviews:
        dataset = gdal.Open(str(path), gdal.GA_Update)
        dataset.BuildOverviews("NEAREST", list(overviews))
        dataset = None
    return path


@pytest.mark.parametrize("name,driver,options,overviews,cog,layout", [
    ("cog", "COG", ("BLOCKSIZE=256",), (), True, True),
    ("cog-bigtiff", "COG", ("BLOCKSIZE=256", "BIGTIFF=YES"), (), True, True),
    ("strips", "GTiff", (), (), False, False),                       # ODM with --cog off, older builds
    ("tiled", "GTiff", ("TILED=YES",), (), False, False),            # ODM's default GeoTIFF: tiled, no overviews
    ("tiled-overviews", "GTiff", ("TILED=YES",), (2, 4, 8), True, False),  # --build-overviews: streams well
    ("big-endian", "GTiff", ("TILED=YES", "ENDIANNESS=BIG"), (2, 4), True, False),
])
def test_describe_reads_the_layout_gdal_wrote(tmp_path: Path, name, driver, options, overviews, cog, layout) -> None:
    path = raster(tmp_path / f"{name}.tif", driver=driver, options=options, overviews=overviews)
    report = describe(path)
    dataset = gdal.Open(str(path))
    band = dataset.GetRasterBand(1)
    assert report["cog"] is cog and report["layout"] is layout, report
    assert report["overviews"] == band.GetOverviewCount()
    assert report["tiled"] is (band.GetBlockSize()[1] < dataset.RasterYSize and band.GetBlockSize()[1] > 1)
    assert (report["width"], report["height"]) == (1500, 1500)
    assert (report["problem"] == "") is cog and ("cog=true" in report["problem"] or cog)


def test_a_raster_that_fits_in_one_tile_needs_no_overviews(tmp_path: Path) -> None:
    assert describe(raster(tmp_path / "small.tif", size=200, driver="COG"))["cog"] is True


@pytest.mark.parametrize("content", [b"", b"not a tiff at all", b"II*\x00\xff\xff\xff\x7f",
                                     b"MM\x00*\x00\x00\x00\x08\x00"])
def test_damaged_files_are_not_tiffs(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.tif"
    path.write_bytes(content)
    with pytest.raises(NotTiff):
        describe(path)


def test_a_signature_opens_its_file_or_ept_folder_until_it_expires() -> None:
    path = signed_urls.signed_path(SECRET, "u" * 36, "token:abc", "orthophoto.tif", 2_000_000_000)
    _, _, uuid, _, expires, sig, asset = path.split("/")
    assert signed_urls.check(SECRET, uuid, "token:abc", asset, expires, sig, now=1_999_999_999) == ""
    assert "expired" in signed_urls.check(SECRET, uuid, "token:abc", asset, expires, sig, now=2_000_000_001)
    assert "Invalid signature" in signed_urls.check(SECRET, uuid, "user:eve", asset, expires, sig, now=0)
    assert "Invalid signature" in signed_urls.check(SECRET, uuid, "token:abc", "dsm.tif", expires, sig, now=0)
    assert "Invalid signature" in signed_urls.check(b"x" * 32, uuid, "token:abc", asset, expires, sig, now=0)
    assert "malformed" in signed_urls.check(SECRET, uuid, "token:abc", asset, "-1", sig, now=0)
    ept = signed_urls.signed_path(SECRET, uuid, "token:abc", "ept.json", 2_000_000_000).split("/")[5]
    for tile in ("ept.json", "ept-data/0-0-0-0.laz", "ept-hierarchy/0-0-0-0.json"):
        assert signed_urls.check(SECRET, uuid, "token:abc", tile, expires, ept, now=0) == ""
    assert "Invalid signature" in signed_urls.check(SECRET, uuid, "token:abc", "orthophoto.tif", expires, ept, now=0)
    assert signed_urls.expiry(None, now=100) == 100 + signed_urls.DEFAULT_SECONDS
    assert signed_urls.expiry("10", now=100) == 110
    assert signed_urls.expiry("99999999", now=100) == 100 + signed_urls.MAX_SECONDS
    for bad in ("0", "-5", "1.5", "soon", "9" * 12):
        with pytest.raises(ValueError):
            signed_urls.expiry(bad)


def test_webhook_urls_keep_their_signature() -> None:
    """Nodes hold webhook URLs signed before the signing helper moved: the same words, the same signature."""
    import hashlib
    import hmac
    old = hmac.new(SECRET, b"uuid-1:node-2", hashlib.sha256).hexdigest()[:32]
    assert signed_urls.signature(SECRET, "uuid-1", "node-2") == old
