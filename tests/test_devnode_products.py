"""The development node's products: real, georeferenced files where the sample photos were taken,
in NodeODX's all.zip layout, loadable by GDAL, laspy and QGIS 3.22 itself."""
import json
import time
import zipfile
from pathlib import Path

import laspy
import numpy as np
import piexif
import pytest
from osgeo import gdal, osr
from PIL import Image
from qgis.core import QgsMapRendererParallelJob, QgsMapSettings, QgsPointCloudLayer, QgsRasterLayer
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor

from devnode.geotag import FALLBACK_LOCATION, read_exif, read_geotag
from devnode.products import MAX_RASTER_SIDE, NODATA, POINT_BUDGET, build_outputs, transform_points, utm_epsg
from devnode.samples import SAMPLE_EPSG, SAMPLE_GROUND_ALTITUDE, SAMPLE_LATITUDE, SAMPLE_LONGITUDE, make_samples
from shared.assets import EPT_FOLDER, Product, asset_for, products_present, safe_member

SAMPLE_COUNT = 12
EXPECTED = [Product.ORTHOPHOTO, Product.DSM, Product.DTM, Product.POINT_CLOUD_LAZ, Product.POINT_CLOUD_EPT,
            Product.REPORT, Product.SHOTS, Product.CAMERAS, Product.IMAGES]


def path_of(product: Product) -> str:
    return asset_for(product).path


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> list[Path]:
    return make_samples(tmp_path_factory.mktemp("photos"), SAMPLE_COUNT)


def strip_gps(photo: Path, target: Path) -> Path:
    exif = piexif.load(str(photo))
    exif["GPS"] = {}
    Image.open(photo).save(target, "JPEG", exif=piexif.dump(exif))
    return target


def write_extras(folder: Path, photo: Path) -> list[Path]:
    """What else a NodeODX task may carry: GCP and geo lists, an alignment GeoTIFF, a photo without
    GPS and one whose EXIF is garbage."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gcp_list.txt").write_text("EPSG:4326\n13.4 52.47 45 100 100 IMG_0001.JPG\n")
    (folder / "geo.txt").write_text("EPSG:4326\nIMG_0001.JPG 13.4 52.47 135\n")
    align = gdal.GetDriverByName("GTiff").Create(str(folder / "align.tif"), 8, 8, 1, gdal.GDT_Byte)
    align.SetGeoTransform((391000, 1, 0, 5815000, 0, -1))
    align.SetProjection(osr_for(SAMPLE_EPSG).ExportToWkt())
    align = None
    garbled = folder / "garbled.jpg"
    Image.open(photo).save(garbled, "JPEG", exif=b"Exif\x00\x00II*\x00\xff\xff\xff\x7fjunk")
    return [folder / "gcp_list.txt", folder / "geo.txt", folder / "align.tif",
            strip_gps(photo, folder / "no_gps.jpg"), garbled]


def osr_for(epsg: int) -> osr.SpatialReference:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    return srs


@pytest.fixture(scope="module")
def built(samples, tmp_path_factory) -> dict:
    """One build of the samples plus every kind of extra input, unzipped for inspection."""
    work = tmp_path_factory.mktemp("task")
    inputs = samples + write_extras(work / "extras", samples[0])
    started = time.perf_counter()
    archive = build_outputs(inputs, work / "task")
    seconds = time.perf_counter() - started
    with zipfile.ZipFile(archive) as zipped:
        members = zipped.namelist()
        zipped.extractall(work / "unzipped")
    return {"zip": archive, "dir": work / "unzipped", "members": members, "seconds": seconds,
            "assets": work / "task" / "assets"}


def sample_positions(samples: list[Path], epsg: int) -> list[tuple[float, float]]:
    tags = [read_geotag(p) for p in samples]
    return transform_points([(t.longitude, t.latitude) for t in tags], 4326, epsg)


def raster_extent(dataset) -> tuple[float, float, float, float]:
    left, size_x, _, top, _, size_y = dataset.GetGeoTransform()
    return left, top + size_y * dataset.RasterYSize, left + size_x * dataset.RasterXSize, top


def epsg_of(wkt: str) -> int:
    srs = osr.SpatialReference()
    srs.ImportFromWkt(wkt)
    srs.AutoIdentifyEPSG()
    return int(srs.GetAuthorityCode(None))


def test_samples_are_geotagged_photos_at_the_documented_site(samples):
    exif = read_exif(samples[0])
    assert (exif.make, exif.model) == ("ODX Relay", "Synthetic Survey Camera")
    assert exif.focal_length and exif.focal_length_35mm
    assert piexif.load(str(samples[0]))["Exif"][piexif.ExifIFD.DateTimeOriginal] == b"2024:05:04 10:00:00"
    tags = [read_geotag(p) for p in samples]
    assert abs(np.mean([t.latitude for t in tags]) - SAMPLE_LATITUDE) < 0.001
    assert abs(np.mean([t.longitude for t in tags]) - SAMPLE_LONGITUDE) < 0.001
    assert all(70 < t.altitude - SAMPLE_GROUND_ALTITUDE < 110 for t in tags)
    assert SAMPLE_EPSG == 32633 == utm_epsg(SAMPLE_LATITUDE, SAMPLE_LONGITUDE)
    assert all(5_000 < p.stat().st_size < 150_000 for p in samples)


def test_samples_are_deterministic_per_seed(tmp_path):
    first = make_samples(tmp_path / "a", 2, seed=3)
    again = make_samples(tmp_path / "b", 2, seed=3)
    other = make_samples(tmp_path / "c", 2, seed=4)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    assert first[0].read_bytes() != other[0].read_bytes()


def test_zip_holds_the_catalogue_paths(built):
    members = built["members"]
    assert all(safe_member(m) for m in members)
    assert set(products_present(members)) >= set(EXPECTED)
    assert {EPT_FOLDER + "ept-data/0-0-0-0.laz", EPT_FOLDER + "ept-hierarchy/0-0-0-0.json",
            "task_output.txt"} <= set(members)
    on_disk = {p.relative_to(built["assets"]).as_posix() for p in built["assets"].rglob("*") if p.is_file()}
    assert set(members) == on_disk


def test_build_is_fast(built):
    assert built["seconds"] < 10, f"build_outputs took {built['seconds']:.1f} s for {SAMPLE_COUNT} photos"


def test_orthophoto_is_a_georeferenced_cog_over_the_photos(built, samples):
    ortho = gdal.Open(str(built["dir"] / path_of(Product.ORTHOPHOTO)))
    assert ortho.GetMetadata("IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    assert epsg_of(ortho.GetProjection()) == SAMPLE_EPSG
    left, bottom, right, top = raster_extent(ortho)
    for x, y in sample_positions(samples, SAMPLE_EPSG):
        assert left < x < right and bottom < y < top
    assert max(ortho.RasterXSize, ortho.RasterYSize) <= MAX_RASTER_SIDE
    assert ortho.RasterCount == 4
    assert ortho.GetRasterBand(4).GetColorInterpretation() == gdal.GCI_AlphaBand
    pixels = ortho.ReadAsArray()
    inside = pixels[3] > 0
    assert 0.8 < inside.mean() < 1.0, "the footprint should cover most of the grid, not all of it"
    assert pixels[:3, inside].std() > 10, "orthophoto looks blank"


def test_elevation_models_share_the_grid_with_nodata(built):
    ortho = gdal.Open(str(built["dir"] / path_of(Product.ORTHOPHOTO)))
    models = {}
    for product in (Product.DSM, Product.DTM):
        dem = gdal.Open(str(built["dir"] / path_of(product)))
        band = dem.GetRasterBand(1)
        assert band.DataType == gdal.GDT_Float32
        assert band.GetNoDataValue() == NODATA
        assert dem.GetGeoTransform() == ortho.GetGeoTransform()
        assert epsg_of(dem.GetProjection()) == SAMPLE_EPSG
        models[product] = np.ma.masked_equal(band.ReadAsArray(), NODATA)
    dsm, dtm = models[Product.DSM], models[Product.DTM]
    assert np.array_equal(dsm.mask, ortho.GetRasterBand(4).ReadAsArray() == 0)
    assert abs(dtm.mean() - SAMPLE_GROUND_ALTITUDE) < 5
    assert (dsm >= dtm).all() and (dsm - dtm).max() > 2, "the DSM should have bumps above the ground"


def test_point_cloud_laz_carries_its_crs(built):
    cloud = laspy.read(built["dir"] / path_of(Product.POINT_CLOUD_LAZ))
    header = cloud.header
    assert 1_000 <= header.point_count <= POINT_BUDGET
    assert header.global_encoding.wkt
    wkt_vlrs = [v for v in header.vlrs if isinstance(v, laspy.vlrs.known.WktCoordinateSystemVlr)]
    assert epsg_of(wkt_vlrs[0].string) == SAMPLE_EPSG
    ortho = gdal.Open(str(built["dir"] / path_of(Product.ORTHOPHOTO)))
    left, bottom, right, top = raster_extent(ortho)
    assert left <= cloud.x.min() and cloud.x.max() <= right
    assert bottom <= cloud.y.min() and cloud.y.max() <= top
    assert cloud.red.max() > 255, "colours are 16-bit as LAS expects"


def test_ept_is_a_valid_single_node_tree(built):
    folder = built["dir"] / "entwine_pointcloud"
    ept = json.loads((folder / "ept.json").read_text())
    assert ept["dataType"] == "laszip" and ept["hierarchyType"] == "json"
    hierarchy = json.loads((folder / "ept-hierarchy" / "0-0-0-0.json").read_text())
    tile = laspy.read(folder / "ept-data" / "0-0-0-0.laz")
    assert ept["points"] == hierarchy["0-0-0-0"] == tile.header.point_count
    low, high = ept["bounds"][:3], ept["bounds"][3:]
    conforming_low, conforming_high = ept["boundsConforming"][:3], ept["boundsConforming"][3:]
    assert len({round(h - lo, 6) for lo, h in zip(low, high)}) == 1, "EPT bounds must be a cube"
    assert all(lo <= c for lo, c in zip(low, conforming_low))
    assert all(c <= h for c, h in zip(conforming_high, high))
    assert ept["srs"]["authority"] == "EPSG" and ept["srs"]["horizontal"] == str(SAMPLE_EPSG)
    assert epsg_of(ept["srs"]["wkt"]) == SAMPLE_EPSG
    schema = {d["name"]: d for d in ept["schema"]}
    assert {"X", "Y", "Z", "Red", "Green", "Blue", "Classification"} <= set(schema)
    assert [schema[a]["scale"] for a in "XYZ"] == list(tile.header.scales)
    assert [schema[a]["offset"] for a in "XYZ"] == list(tile.header.offsets)
    assert ept["span"] > 0


def test_camera_positions_and_metadata(built, samples):
    shots = json.loads((built["dir"] / path_of(Product.SHOTS)).read_text())
    assert sorted(f["properties"]["filename"] for f in shots["features"]) == sorted(p.name for p in samples)
    first = next(f for f in shots["features"] if f["properties"]["filename"] == samples[0].name)
    tag = read_geotag(samples[0])
    assert first["geometry"]["coordinates"] == pytest.approx([tag.longitude, tag.latitude, tag.altitude])
    images = json.loads((built["dir"] / path_of(Product.IMAGES)).read_text())
    by_name = {image["filename"]: image for image in images}
    assert set(by_name) == {p.name for p in samples} | {"no_gps.jpg", "garbled.jpg"}
    assert by_name["no_gps.jpg"]["latitude"] is None and by_name["garbled.jpg"]["camera_make"] == "unknown"
    cameras = json.loads((built["dir"] / path_of(Product.CAMERAS)).read_text())
    assert all(c["projection_type"] == "perspective" for c in cameras.values())
    report = (built["dir"] / path_of(Product.REPORT)).read_bytes()
    assert report.startswith(b"%PDF-") and report.rstrip().endswith(b"%%EOF")
    assert gdal.Open(str(built["dir"] / path_of(Product.REPORT))) is not None


def test_skip_post_processing_omits_ept(samples, tmp_path):
    archive = build_outputs(samples[:3], tmp_path / "task", skip_post_processing=True)
    members = zipfile.ZipFile(archive).namelist()
    assert not [m for m in members if m.startswith(EPT_FOLDER)]
    assert path_of(Product.ORTHOPHOTO) in members and path_of(Product.POINT_CLOUD_LAZ) in members


def test_photos_without_gps_go_to_the_fallback_location(samples, tmp_path):
    photos = [strip_gps(p, tmp_path / p.name) for p in samples[:4]]
    archive = build_outputs(photos, tmp_path / "task")
    with zipfile.ZipFile(archive) as zipped:
        zipped.extract(path_of(Product.ORTHOPHOTO), tmp_path / "out")
    ortho = gdal.Open(str(tmp_path / "out" / path_of(Product.ORTHOPHOTO)))
    epsg = utm_epsg(FALLBACK_LOCATION.latitude, FALLBACK_LOCATION.longitude)
    assert epsg_of(ortho.GetProjection()) == epsg == 32615
    left, bottom, right, top = raster_extent(ortho)
    (x, y), = transform_points([(FALLBACK_LOCATION.longitude, FALLBACK_LOCATION.latitude)], 4326, epsg)
    assert left < x < right and bottom < y < top


def test_orthophoto_resolution_option_sets_the_pixel_size(samples, tmp_path):
    build_outputs(samples[:2], tmp_path / "task", skip_post_processing=True,
                  options={"orthophoto-resolution": "50"})
    ortho = gdal.Open(str(tmp_path / "task" / "assets" / path_of(Product.ORTHOPHOTO)))
    assert ortho.GetGeoTransform()[1] == pytest.approx(0.5)


def test_far_apart_photos_keep_rasters_small(samples, tmp_path):
    far = tmp_path / "far.jpg"
    exif = piexif.load(str(samples[1]))
    exif["GPS"][piexif.GPSIFD.GPSLatitude] = ((52, 1), (30, 1), (0, 1))  # about 3 km north
    Image.open(samples[1]).save(far, "JPEG", exif=piexif.dump(exif))
    build_outputs([samples[0], far], tmp_path / "task", skip_post_processing=True)
    ortho = gdal.Open(str(tmp_path / "task" / "assets" / path_of(Product.ORTHOPHOTO)))
    assert max(ortho.RasterXSize, ortho.RasterYSize) <= MAX_RASTER_SIDE


def test_grey_and_16_bit_photos_are_painted(tmp_path):
    grey = tmp_path / "grey.jpg"
    Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (192, 1))).save(grey, "JPEG")
    deep = gdal.GetDriverByName("GTiff").Create(str(tmp_path / "deep.tif"), 256, 192, 1, gdal.GDT_UInt16)
    deep.GetRasterBand(1).WriteArray(np.tile(np.arange(0, 65536, 256, dtype=np.uint16), (192, 1)))
    deep = None
    build_outputs([grey, tmp_path / "deep.tif"], tmp_path / "task", skip_post_processing=True)
    pixels = gdal.Open(str(tmp_path / "task" / "assets" / path_of(Product.ORTHOPHOTO))).ReadAsArray()
    assert pixels[:3, pixels[3] > 0].std() > 10


def test_inputs_without_any_photo_are_refused(tmp_path):
    (tmp_path / "gcp_list.txt").write_text("EPSG:4326\n")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError):
        build_outputs([tmp_path / "gcp_list.txt", tmp_path / "broken.jpg"], tmp_path / "task")


def test_qgis_loads_the_rasters(built, qgis_app):
    for product in (Product.ORTHOPHOTO, Product.DSM):
        layer = QgsRasterLayer(str(built["dir"] / path_of(product)), product.value)
        assert layer.isValid(), product
        assert layer.crs().authid() == f"EPSG:{SAMPLE_EPSG}"


def test_qgis_loads_and_draws_the_ept(built, qgis_app):
    layer = QgsPointCloudLayer(str(built["dir"] / path_of(Product.POINT_CLOUD_EPT)), "pc", "ept")
    # Never call layer.error() on an invalid point cloud layer: it crashes QGIS 3.22.
    assert layer.isValid(), "QGIS could not open ept.json"
    assert layer.crs().authid() == f"EPSG:{SAMPLE_EPSG}"
    ept = json.loads((built["dir"] / path_of(Product.POINT_CLOUD_EPT)).read_text())
    assert layer.pointCount() == ept["points"]
    image = render(layer)
    colours = {image.pixelColor(x, y).name() for x in range(0, 200, 2) for y in range(0, 200, 2)}
    # Without colour statistics in ept.json QGIS assumes 8-bit RGB and draws every point white.
    assert len(colours - {"#000000", "#ffffff"}) > 20, "point cloud tiles did not decode into colours"


def render(layer):
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(layer.extent())
    settings.setOutputSize(QSize(200, 200))
    settings.setBackgroundColor(QColor(0, 0, 0))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    return job.renderedImage()
