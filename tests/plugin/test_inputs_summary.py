"""Issue 11, "Better inputs": what will be sent, told before the run, and the photos' EXIF positions read
through GDAL — the parts that need no server."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from devnode.geotag import read_geotag
from qgis_plugin.core import inputs
from qgis_plugin.core.input_summary import short_summary, summary_lines
from qgis_plugin.core.photo_positions import position_from_metadata, read_metadata, survey


def _touch(path: Path, size: int = 10) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


def test_summary_counts_photos_size_subfolders_and_names_skipped_files(tmp_path):
    folder = tmp_path / "card"
    for i in range(3):
        _touch(folder / "DCIM" / "100MEDIA" / f"DJI_{i}.JPG", 1024 * 1024)
    _touch(folder / "DCIM" / "101MEDIA" / "DJI_0.JPG", 1024 * 1024)
    _touch(folder / "geo.txt")
    _touch(folder / "DCIM" / "geo.txt")
    _touch(folder / "flight.log")
    _touch(folder / ".hidden.jpg")
    plan = inputs.plan_upload(folder=folder)
    assert [p.relative_to(folder).as_posix() for p in plan.folders_searched] == [
        ".", "DCIM", "DCIM/100MEDIA", "DCIM/101MEDIA"]
    assert {(s.path.name, s.reason.split(" ")[0]) for s in plan.skipped} == {("flight.log", "neither"),
                                                                              ("geo.txt", "a")}
    assert short_summary(plan) == "4 photos, 4.0 MB (5 files in all; 3 sub-folders searched; 2 files skipped)"
    text = "\n".join(summary_lines(plan, folder))
    assert "To send: 4 photos, 4.0 MB" in text
    assert "3 sub-folder(s): DCIM, DCIM/100MEDIA, DCIM/101MEDIA" in text
    assert "flight.log (" in text and "neither a photo nor a NodeODX side file" in text
    assert "side file in a sub-folder" in text
    assert "sent under their folder's name" in text  # the rename note is kept
    assert "stay behind" not in text  # the skipped files are named instead


def test_summary_without_subfolders_and_a_side_file_picked_in_the_dialog(tmp_path):
    folder = tmp_path / "photos"
    for i in range(2):
        _touch(folder / f"a{i}.jpg")
    _touch(folder / "sub" / "b.jpg")
    _touch(folder / "geo.txt")
    chosen = _touch(tmp_path / "better geo.txt")
    plan = inputs.plan_upload(folder=folder, geo=chosen, recursive=False)
    assert plan.folders_searched == [folder]
    lines = summary_lines(plan, folder)
    assert lines[0] == "To send: 2 photos, 0.0 MB (3 files in all; 1 file skipped)."
    assert f"Searched {folder} (no sub-folders)." in lines
    assert "Side files: better geo.txt as geo.txt." in lines
    assert any("is sent as geo.txt instead" in line for line in lines)


@pytest.mark.parametrize("metadata, expected", [
    ({"EXIF_GPSLatitude": "(52) (28) (25.2)", "EXIF_GPSLatitudeRef": "N", "EXIF_GPSLongitude": "(13) (24) (10.8)",
      "EXIF_GPSLongitudeRef": "E", "EXIF_GPSAltitude": "(135.23)", "EXIF_GPSAltitudeRef": "0x00",
      "EXIF_DateTimeOriginal": "2024:05:04 10:00:00"}, (52 + 28 / 60 + 25.2 / 3600, 13 + 24 / 60 + 10.8 / 3600,
                                                        135.23, "2024:05:04 10:00:00")),
    ({"EXIF_GPSLatitude": "(33.5)", "EXIF_GPSLatitudeRef": "S", "EXIF_GPSLongitude": "(70) (30) (0)",
      "EXIF_GPSLongitudeRef": "W", "EXIF_GPSAltitude": "(12)", "EXIF_GPSAltitudeRef": "0x01"},
     (-33.5, -70.5, -12.0, "")),
    ({"EXIF_GPSLatitude": "(0) (0) (0)", "EXIF_GPSLongitude": "(0) (0) (0)"}, None),  # no fix
    ({"EXIF_GPSLatitude": "(nan)", "EXIF_GPSLongitude": "(13)"}, None),
    ({"EXIF_Make": "DJI"}, None),
    ({}, None),
])
def test_gps_from_gdal_metadata(metadata, expected):
    position = position_from_metadata(Path("p.jpg"), metadata)
    if expected is None:
        assert position is None
        return
    latitude, longitude, altitude, taken = expected
    assert position.latitude == pytest.approx(latitude) and position.longitude == pytest.approx(longitude)
    assert position.altitude == pytest.approx(altitude) and position.taken == taken


def test_survey_reads_the_sample_photos_and_names_those_without_gps(sample_images, tmp_path):
    plain = tmp_path / "no_gps.jpg"
    Image.open(sample_images[0]).save(plain, "JPEG")  # the same picture without its EXIF
    garbage = _touch(tmp_path / "broken.jpg", 100)
    result = survey([*sample_images, plain, garbage])
    assert [p.path for p in result.positions] == sample_images
    for position in result.positions:
        tag = read_geotag(position.path)
        assert position.latitude == pytest.approx(tag.latitude, abs=1e-7)
        assert position.longitude == pytest.approx(tag.longitude, abs=1e-7)
        assert position.altitude == pytest.approx(tag.altitude)
        assert position.taken.startswith("2024:05:04 10:")
    assert result.without_gps == [plain, garbage]
    assert result.log_lines() == [f"{len(sample_images)} photo(s) have a GPS position in their EXIF.",
                                  "2 photo(s) have no GPS position: no_gps.jpg, broken.jpg."]
    assert read_metadata(tmp_path / "missing.jpg") == {}
