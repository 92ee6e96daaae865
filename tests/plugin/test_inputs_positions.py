"""Issue 11, "Better inputs", in real headless QGIS: `processimages` says what it will send before it sends
it, and puts the photos' EXIF positions on the map first; the dialog's folder field counts the photos."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from PIL import Image
from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingException, QgsProject, QgsWkbTypes

from devnode.geotag import read_geotag
from testkit.servers import free_port
from tests.plugin.plugin_helpers import RecordingFeedback, layers_to_load, run_algorithm

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("odx_provider", "fast_polls")]
LAYER = "Photos (before upload)"


class Feedback(RecordingFeedback):
    """Also keeps the command-info block, where processimages puts its summary."""

    def __init__(self) -> None:
        super().__init__()
        self.commands: list[str] = []

    def pushCommandInfo(self, info: str) -> None:  # noqa: N802 - QGIS's name
        self.commands.append(info)


@pytest.fixture
def card(sample_images, tmp_path) -> Path:
    """A camera card: the sample photos in DCIM/100MEDIA, one photo without EXIF, and a flight log."""
    media = tmp_path / "card" / "DCIM" / "100MEDIA"
    media.mkdir(parents=True)
    for photo in sample_images:
        shutil.copy(photo, media / photo.name)
    Image.open(sample_images[0]).save(media / "NO_GPS.JPG", "JPEG")
    (tmp_path / "card" / "flight.log").write_text("log")
    return tmp_path / "card"


def photo_layers(project: QgsProject) -> list:
    return project.mapLayersByName(LAYER)


def assert_positions(layer, sample_images) -> None:
    """One point per photo with GPS, where its EXIF says, with name, altitude and capture time."""
    assert layer.isValid() and layer.crs().authid() == "EPSG:4326"
    assert layer.geometryType() == QgsWkbTypes.GeometryType.PointGeometry
    assert [f.name() for f in layer.fields()] == ["name", "altitude", "taken", "path"]
    features = {f["name"]: f for f in layer.getFeatures()}
    assert sorted(features) == sorted(p.name for p in sample_images)
    for photo in sample_images:
        feature, tag = features[photo.name], read_geotag(photo)
        point = feature.geometry().asPoint()
        assert point.x() == pytest.approx(tag.longitude, abs=1e-7)
        assert point.y() == pytest.approx(tag.latitude, abs=1e-7)
        assert feature["altitude"] == pytest.approx(tag.altitude)
        assert feature["taken"].toString("yyyy-MM-dd") == "2024-05-04"


def test_the_log_says_what_is_sent_before_the_upload(devnode, card, sample_images, tmp_path):
    feedback = Feedback()
    results, context, _ = run_algorithm("odxrelay:processimages", {
        "IMAGE_FOLDER": str(card), "SERVER": devnode.url, "RESULTS_FOLDER": str(tmp_path / "results")}, feedback)
    [summary] = feedback.commands
    size = sum(p.stat().st_size for p in card.rglob("*.JPG")) / 1024 / 1024
    assert f"To send: 7 photos, {size:.1f} MB (2 sub-folders searched; 1 file skipped)." in summary
    assert "DCIM, DCIM/100MEDIA" in summary
    assert "flight.log" in summary and "neither a photo nor a NodeODX side file" in summary
    assert f"{len(sample_images)} photo(s) have a GPS position" in summary
    assert "1 photo(s) have no GPS position: NO_GPS.JPG." in summary
    # the run's own messages as before (the uuid told before the upload), the notes not told twice
    assert results["TASK_UUID"] in feedback.infos[1] and "uploading 7 files" in feedback.infos[1]
    assert not any("stay behind" in line for line in feedback.infos)
    assert LAYER not in layers_to_load(context)  # scripts get the same layers as before


def test_the_summary_comes_before_the_server_is_asked(card):
    """Even when the server cannot be reached, the user has been told what would have been sent."""
    feedback = Feedback()
    with pytest.raises(QgsProcessingException, match="Cannot reach"):
        run_algorithm("odxrelay:processimages", {"IMAGE_FOLDER": str(card),
                                                 "SERVER": f"http://127.0.0.1:{free_port()}"}, feedback)
    assert feedback.commands[0].startswith("To send: 7 photos, ")


@pytest.fixture
def dialog(odx_provider, qgis_iface, monkeypatch):
    from processing.gui.AlgorithmDialog import AlgorithmDialog
    from qgis.gui import QgsBrowserGuiModel

    browser = QgsBrowserGuiModel()  # the dialog asks the interface for one; pytest-qgis's stub has none
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: browser, raising=False)
    algorithm = QgsApplication.processingRegistry().algorithmById("odxrelay:processimages")
    dialog = AlgorithmDialog(algorithm.create(), parent=qgis_iface.mainWindow())
    yield dialog
    dialog.deleteLater()


def test_dialog_counts_the_folder_and_shows_the_flight(dialog, card, sample_images, clean_project):
    wrappers = dialog.mainWidget().wrappers
    folder = wrappers["IMAGE_FOLDER"]
    assert folder.show_box.isChecked() and folder.summary.text() == "" and photo_layers(clean_project) == []
    folder.setValue(str(card))
    assert folder.value() == str(card)
    assert folder.summary.text().startswith("7 photos, ")
    assert "(2 sub-folders searched; 1 file skipped); 6 with a GPS position, on the map, 1 without" in (
        folder.summary.text())
    [layer] = photo_layers(clean_project)
    assert_positions(layer, sample_images)
    assert clean_project.layerTreeRoot().children()[0].name() == LAYER

    folder.setValue(str(card))  # the same folder again: still one layer
    assert len(photo_layers(clean_project)) == 1
    wrappers["SUBFOLDERS"].setParameterValue(False, QgsProcessingContext())
    assert "No images to process" in folder.summary.text()  # the photos are all in sub-folders
    assert photo_layers(clean_project) == []
    wrappers["SUBFOLDERS"].setParameterValue(True, QgsProcessingContext())
    assert len(photo_layers(clean_project)) == 1
    folder.show_box.setChecked(False)
    assert photo_layers(clean_project) == []
    assert folder.summary.text().endswith("1 file skipped); 6 with a GPS position, 1 without")
    folder.show_box.setChecked(True)
    for photo in (card / "DCIM" / "100MEDIA").glob("IMG_*.JPG"):
        photo.unlink()  # only the photo without GPS is left: nothing to show
    (card / "DCIM" / "100MEDIA" / "NO_GPS_2.JPG").write_bytes((card / "DCIM" / "100MEDIA" / "NO_GPS.JPG").read_bytes())
    folder.setValue(str(card))
    assert folder.summary.text().endswith("; 0 with a GPS position, 2 without") and photo_layers(clean_project) == []
    folder.setValue(None)
    assert folder.value() is None and folder.summary.text() == ""
    assert dialog.mainWidget().createProcessingParameters()["IMAGE_FOLDER"] is None


def test_a_typed_path_is_read_once_typing_pauses(dialog, card, clean_project):
    from qgis.PyQt.QtCore import QCoreApplication

    folder = dialog.mainWidget().wrappers["IMAGE_FOLDER"]
    folder.picker.lineEdit().setText(str(card))
    assert folder.summary.text() == "" and folder.timer.isActive()
    deadline = time.monotonic() + 5
    while folder.timer.isActive() and time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.02)
    assert folder.summary.text().startswith("7 photos, ") and len(photo_layers(clean_project)) == 1
    assert dialog.mainWidget().createProcessingParameters()["IMAGE_FOLDER"] == str(card)
