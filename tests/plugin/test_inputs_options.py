"""Issue 11, "Better inputs": the task's options chosen from the server's own `/options` with a widget fitting
each (check box, drop-down, spin box within the domain's bounds, the help as tooltip), written into the free
Options field, which scripts keep using as before."""
from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from qgis.core import QgsApplication
from qgis.PyQt.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox

from qgis_plugin.core.option_form import NodeOption, merge_text, spec, specs, typed, value_text
from qgis_plugin.core.presets import parse_option_text

REPO = Path(__file__).resolve().parents[2]
OPTIONS = [NodeOption.from_json(o) for o in json.loads((REPO / "shared" / "data" / "nodeodx-options.json").read_text())]
BY_NAME = {o.name: o for o in OPTIONS}


def test_each_option_gets_a_widget_kind_bounds_and_help():
    assert spec(BY_NAME["dsm"]).kind == "bool" and spec(BY_NAME["dsm"]).default is False
    quality = spec(BY_NAME["pc-quality"])
    assert quality.kind == "enum" and quality.default == "medium" and quality.choices[0] == "ultra"
    assert "Default: medium" in quality.help and "%(" not in quality.help
    assert "ultra, high, medium, low, lowest" in quality.help
    depth = spec(BY_NAME["mesh-octree-depth"])
    assert (depth.kind, depth.minimum, depth.maximum, depth.default) == ("int", 1, 14, 11)
    crop = spec(BY_NAME["crop"])
    assert (crop.kind, crop.minimum, crop.default) == ("float", 0, 3.0)
    assert spec(BY_NAME["orthophoto-resolution"]).minimum > 0
    assert spec(BY_NAME["boundary"]).kind == "text"
    assert [s.name for s in specs(OPTIONS)] == sorted(BY_NAME)
    assert all("%(" not in s.help for s in specs(OPTIONS))


def test_values_from_the_text_fit_the_widgets_and_go_back_as_text():
    assert typed(spec(BY_NAME["dsm"]), "yes") is True
    assert typed(spec(BY_NAME["mesh-octree-depth"]), "99") == 14  # held within the domain
    assert typed(spec(BY_NAME["crop"]), "not a number") == 3.0
    assert value_text(True) == "true" and value_text(2.0) == "2" and value_text(2.5) == "2.5"
    text = "dsm=true\n# my note\nmade-up=1\npc-quality=low; cog"
    merged = merge_text(text, {"dsm": False, "pc-quality": "high"}, BY_NAME)
    assert merged == "# my note\nmade-up=1\ndsm=false\npc-quality=high"  # unknown names and comments kept
    assert parse_option_text(merged) == {"made-up": "1", "dsm": False, "pc-quality": "high"}


def test_the_dialog_has_typed_widgets_with_tooltips_and_a_filter(qgis_app):
    from qgis_plugin.gui.options_dialog import OptionsDialog

    dialog = OptionsDialog(OPTIONS, {"dsm": True, "mesh-octree-depth": "12"})
    assert isinstance(dialog.editor("dsm"), QCheckBox) and dialog.editor("dsm").isChecked()
    assert isinstance(dialog.editor("pc-quality"), QComboBox)
    assert dialog.editor("pc-quality").currentText() == "medium"
    depth = dialog.editor("mesh-octree-depth")
    assert isinstance(depth, QSpinBox) and (depth.minimum(), depth.maximum(), depth.value()) == (1, 14, 12)
    assert isinstance(dialog.editor("crop"), QDoubleSpinBox) and isinstance(dialog.editor("boundary"), QLineEdit)
    assert "Digital Surface Model" in dialog.editor("dsm").toolTip()
    assert dialog.chosen() == {"dsm": True, "mesh-octree-depth": 12}  # nothing else moved from its default
    dialog.editor("pc-quality").setCurrentText("high")
    dialog.editor("crop").setValue(0)
    assert dialog.chosen() == {"crop": 0.0, "dsm": True, "mesh-octree-depth": 12, "pc-quality": "high"}
    dialog.apply_filter("quality")
    assert dialog.editor("pc-quality").isVisibleTo(dialog) and not dialog.editor("dsm").isVisibleTo(dialog)
    dialog.deleteLater()


@pytest.mark.slow
def test_the_options_field_reads_the_server_and_writes_lines(odx_provider, devnode, qgis_iface, monkeypatch):
    from processing.gui.AlgorithmDialog import AlgorithmDialog
    from qgis.gui import QgsBrowserGuiModel

    browser = QgsBrowserGuiModel()
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: browser, raising=False)
    algorithm = QgsApplication.processingRegistry().algorithmById("odxrelay:processimages")
    dialog = AlgorithmDialog(algorithm.create(), parent=qgis_iface.mainWindow())
    wrappers = dialog.mainWidget().wrappers
    wrappers["SERVER"].setValue(devnode.url)
    field = wrappers["OPTIONS"]
    field.setValue("dsm=true\nmy-own=1")
    shown: list = []  # what the worker thread brought back to the dialog (the chooser itself is opened below)
    field.open_dialog = lambda options: shown.append(options) or SimpleNamespace(exec=lambda: 0,
                                                                                 deleteLater=lambda: None)
    assert field.choose() and not field.button.isEnabled()  # asked in a worker thread
    deadline = time.monotonic() + 30
    while not shown and time.monotonic() < deadline:
        QgsApplication.processEvents()
        time.sleep(0.01)
    assert shown and field.button.isEnabled()
    del field.open_dialog
    options = shown[0]
    assert {"dsm", "pc-quality", "orthophoto-resolution"} <= {o.name for o in options}
    chooser = field.open_dialog(options)
    assert chooser.editor("dsm").isChecked()
    chooser.editor("dtm").setChecked(True)
    chooser.editor("orthophoto-resolution").setValue(2.5)
    field.apply(chooser)
    assert parse_option_text(field.value()) == {"my-own": "1", "dsm": True, "dtm": True,
                                                "orthophoto-resolution": "2.5"}
    parameters = dialog.mainWidget().createProcessingParameters()
    assert parameters["OPTIONS"] == field.value() and parameters["PRESET"] == 0  # the preset stays
    chooser.deleteLater()
    dialog.deleteLater()
