"""The real NodeODX all.zip loads: orthophoto, DSM and DTM as valid, styled layers in a group named after
the task; its LAZ, which this QGIS cannot open, is named in a clear message. No server involved."""
from __future__ import annotations

from pathlib import Path

from qgis.core import QgsLayerTreeGroup, QgsProject, QgsProviderRegistry

from scripts.demo_qgis import painted_share, render_png
from tests.plugin.plugin_helpers import layers_to_load, run_algorithm

LAZ = "odm_georeferencing/odm_georeferenced_model.laz"


def test_fixture_zip_loads_offline(odx_provider, fixture_task):
    uuid, root = fixture_task
    results, context, feedback = run_algorithm("odxrelay:loadresults", {"TASK": uuid, "RESULTS_FOLDER": str(root)})
    folder = root / uuid
    assert results["ORTHOPHOTO"] == str(folder / "odm_orthophoto/odm_orthophoto.tif")
    assert results["DSM"] == str(folder / "odm_dem/dsm.tif") and results["DTM"] == str(folder / "odm_dem/dtm.tif")
    assert results["POINT_CLOUD"] == str(folder / LAZ)  # the file is there even if QGIS cannot show it
    assert results["TASK_UUID"] == uuid and results["RESULTS"] == str(folder)
    assert "not downloading them again" in feedback.text()

    layers = layers_to_load(context)
    assert set(layers) == {"Camera positions", "Orthophoto", "DSM (surface)", "DSM (surface) hillshade",
                           "DTM (terrain)", "DTM (terrain) hillshade"}
    for name, layer in layers.items():
        assert layer.isValid(), name
        expected = "EPSG:4979" if name == "Camera positions" else "EPSG:32615"  # GeoJSON: WGS 84 with heights
        assert layer.crs().authid() == expected, name
        assert Path(layer.source().split("|")[0]).is_relative_to(folder)  # layers point at files that stay on disk
    assert results["CAMERA_POSITIONS"] == str(folder / "odm_report/shots.geojson")
    assert results["REPORT"] is None  # NodeODX's test mode writes an empty report.pdf
    assert layers["DSM (surface)"].renderer().type() == "singlebandpseudocolor"
    assert layers["DSM (surface) hillshade"].renderer().type() == "hillshade"
    assert layers["Orthophoto"].renderer().type() == "multibandcolor"

    assert "pdal" not in QgsProviderRegistry.instance().providerList()
    [warning] = [w for w in feedback.warnings if "point cloud" in w]
    assert LAZ in warning and "cannot show it" in warning and "Traceback" not in warning


def test_fixture_results_go_into_a_group_and_render(odx_provider, fixture_task, clean_project, tmp_path):
    uuid, root = fixture_task
    run_algorithm("odxrelay:loadresults", {"TASK": uuid, "RESULTS_FOLDER": str(root)}, load=True)
    project = QgsProject.instance()
    groups = [n for n in project.layerTreeRoot().children() if isinstance(n, QgsLayerTreeGroup)]
    assert [g.name() for g in groups] == ["NodeODX fixture"]
    children = groups[0].children()
    assert [c.name() for c in children] == ["Camera positions", "Orthophoto", "DSM (surface) hillshade",
                                            "DSM (surface)", "DTM (terrain) hillshade", "DTM (terrain)"]
    assert [c.isVisible() for c in children] == [True, True, True, True, False, False]
    assert project.layerTreeRoot().findLayers() == groups[0].findLayers()  # nothing left at the top

    share, colours = painted_share(render_png(project, tmp_path / "fixture.png", 400, 300))
    assert share > 0.2 and colours > 20, (share, colours)
