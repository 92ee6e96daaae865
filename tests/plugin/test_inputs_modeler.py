"""Issue 11, "Better inputs": the dialog's custom folder and Options widgets stay out of the model designer,
where QGIS's own widgets can take a model input."""
from __future__ import annotations

from qgis.core import QgsApplication, QgsProcessingModelAlgorithm
from qgis.gui import QgsProcessingModelerParameterWidget


def test_the_model_designer_gets_qgis_widgets(odx_provider, qgis_iface):
    from processing.gui.wrappers import WidgetWrapperFactory
    from processing.modeler.ModelerParametersDialog import ModelerParametersDialog

    algorithm = QgsApplication.processingRegistry().algorithmById("odxrelay:processimages")
    model = QgsProcessingModelAlgorithm("m", "g")
    dialog = ModelerParametersDialog(algorithm, model)
    for name in ("IMAGE_FOLDER", "OPTIONS"):
        wrapper = WidgetWrapperFactory.create_wrapper(algorithm.parameterDefinition(name), dialog)
        assert isinstance(wrapper, QgsProcessingModelerParameterWidget), name
    dialog.deleteLater()
