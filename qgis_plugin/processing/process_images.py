"""odxrelay:processimages — send drone photos to a relay or node, follow the task, load the results."""
from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProviderRegistry,
    QgsRasterLayer,
)

from ..core.input_summary import summary_lines
from ..core.inputs import InputError, UploadPlan, default_task_name, plan_upload
from ..core.photo_positions import survey
from ..core.presets import build_options, preset_by_index, preset_labels
from ..core.whole_cluster import cluster_split
from .base import PLUGIN_PACKAGE, OdxAlgorithm
from .photo_layer import LAYER_NAME
from .results import add_result_outputs, result_outputs

FILE_TYPES = "Text files (*.txt *.TXT)"
WIDGETS = f"{PLUGIN_PACKAGE}.gui.inputs_widgets"


def layer_file(layer: QgsRasterLayer | None, what: str) -> str | None:
    """The local file behind a raster layer, sent as it is; a layer that is not a file is refused."""
    if layer is None:
        return None
    path = QgsProviderRegistry.instance().decodeUri(layer.providerType(), layer.source()).get("path") or ""
    if layer.providerType() != "gdal" or not Path(path).is_file():
        raise InputError(f"The {what} “{layer.name()}” is not a local raster file ({layer.source()}); "
                         "save it as a GeoTIFF first")
    return path


class ProcessImages(OdxAlgorithm):
    NAME = "processimages"
    DISPLAY = "Process drone images"
    GROUP_ID, GROUP = "photogrammetry", "Photogrammetry"
    IMAGES, IMAGE_FOLDER, RASTERS, SUBFOLDERS = "IMAGES", "IMAGE_FOLDER", "RASTERS", "SUBFOLDERS"
    ALIGN, GCP, GEO, IMAGE_GROUPS = "ALIGN", "GCP", "GEO", "IMAGE_GROUPS"
    PRESET, OPTIONS, TASK_NAME, WHOLE_CLUSTER = "PRESET", "OPTIONS", "TASK_NAME", "WHOLE_CLUSTER"
    HELP = (
        "<p>Sends drone photos to an ODX Relay or a NodeODX node, follows the task while QGIS stays usable, and "
        "loads the orthophoto, the elevation models (styled with colours and hillshade) and the point cloud "
        "into a group named after the task.</p>"
        "<p><b>Images</b> and <b>Folder of images</b> can be combined. <b>Raster layers</b> from the project are "
        "sent as they are (for example GeoTIFF photos). The alignment raster travels as <code>align.tif</code>; "
        "ground control points as <code>gcp_list.txt</code>.</p>"
        "<p><b>Options</b>: one <code>name=value</code> a line (or separated by ';'), applied over the preset, "
        "for example <code>dsm=true</code> or <code>pc-quality=high</code>. Options and the number of images "
        "are checked with the server before anything is uploaded. <b>Choose…</b> beside the field lists the "
        "server's own options (check boxes, lists, numbers within their bounds, each option's help as its "
        "tooltip) and writes the ones set away from the server's default into the field.</p>"
        "<p><b>Use the whole cluster</b> splits the task into submodels processed on every node of the relay at "
        "once, then merged (ODM's split-merge): <code>split</code> is set from the number of photos and the "
        "nodes online (one submodel per node, at least 10 photos each) and <code>split-overlap</code> from the "
        "photos' spacing, unless the Options set them. The log says what was chosen.</p>"
        "<p><b>Folder of images</b> is searched with its sub-folders (DCIM/100MEDIA, DCIM/101MEDIA, ...) unless "
        "<b>Search sub-folders</b> is off; photos of the same name in two sub-folders are both sent, one under "
        "its folder's name.</p>"
        "<p>Before anything is sent, the log says what will be: the photos found, the sub-folders searched, "
        "the total size, the files left behind and why, and the photos without a GPS position in their EXIF. "
        "In this dialog, the folder field counts its photos as soon as a folder is chosen, and <b>Show the "
        f"photos' positions on the map</b> (ticked) adds a point layer “{LAYER_NAME}” at once: one point per "
        "photo at its EXIF GPS position (EPSG:4326, with file name, altitude and capture time), so the flight "
        "can be seen before it is sent.</p>"
        "<p>The task's uuid appears in the log at once. <b>Cancel</b> (this dialog's button, or the task's in "
        "QGIS's status bar) stops the task on the server too. <b>Closing QGIS</b> never does: QGIS stops "
        "following the task, which keeps running, and “Load results” fetches it later. Results stay in a "
        "local folder per task, so loading them again does not download them again; loading a task again "
        "replaces the layers of its group, and the map zooms to them. The camera positions "
        "(<code>shots.geojson</code>) load as points; the processing report (<code>report.pdf</code>) is an "
        "output of the algorithm, named in the log.</p>")

    def initParameters(self) -> None:
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.IMAGES, self.tr("Images"), QgsProcessing.SourceType.TypeFile, optional=True))
        folder = QgsProcessingParameterFile(
            self.IMAGE_FOLDER, self.tr("Folder of images"), behavior=QgsProcessingParameterFile.Behavior.Folder,
            optional=True)
        folder.setMetadata({"widget_wrapper": {"class": f"{WIDGETS}.PhotoFolderWidgetWrapper"}})
        self.addParameter(folder)
        self.addParameter(QgsProcessingParameterBoolean(
            self.SUBFOLDERS, self.tr("Search sub-folders of the folder of images"), defaultValue=True))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.RASTERS, self.tr("Raster layers sent as inputs"), QgsProcessing.SourceType.TypeRaster,
            optional=True))
        self.addParameter(QgsProcessingParameterEnum(self.PRESET, self.tr("Preset"), options=preset_labels(),
                                                     defaultValue=0))
        options = QgsProcessingParameterString(self.OPTIONS, self.tr("Options (name=value, one a line)"),
                                               multiLine=True, optional=True)
        options.setMetadata({"widget_wrapper": {"class": f"{PLUGIN_PACKAGE}.gui.options_dialog.OptionsWidgetWrapper"}})
        self.addParameter(options)
        self.addParameter(QgsProcessingParameterString(self.TASK_NAME, self.tr("Task name"), optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            self.WHOLE_CLUSTER, self.tr("Use the whole cluster (split into submodels, one per node online)"),
            defaultValue=False))
        advanced = [
            QgsProcessingParameterRasterLayer(self.ALIGN, self.tr("Alignment raster (sent as align.tif)"),
                                              optional=True),
            QgsProcessingParameterFile(self.GCP, self.tr("Ground control points (sent as gcp_list.txt)"),
                                       optional=True, fileFilter=FILE_TYPES),
            QgsProcessingParameterFile(self.GEO, self.tr("Image geolocation file (sent as geo.txt)"),
                                       optional=True, fileFilter=FILE_TYPES),
            QgsProcessingParameterFile(self.IMAGE_GROUPS, self.tr("Image groups (sent as image_groups.txt)"),
                                       optional=True, fileFilter=FILE_TYPES),
        ]
        for parameter in advanced:
            parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.Flag.FlagAdvanced)
            self.addParameter(parameter)
        self.addResultsFolderParameter()
        add_result_outputs(self)

    def plan(self, parameters, context) -> UploadPlan:
        rasters = [layer_file(layer, "raster layer")
                   for layer in self.parameterAsLayerList(parameters, self.RASTERS, context)]
        return plan_upload(
            images=[f for f in self.parameterAsFileList(parameters, self.IMAGES, context) if f],
            folder=self.parameterAsFile(parameters, self.IMAGE_FOLDER, context) or None,
            rasters=rasters,
            align=layer_file(self.parameterAsRasterLayer(parameters, self.ALIGN, context), "alignment raster"),
            gcp=self.parameterAsFile(parameters, self.GCP, context) or None,
            geo=self.parameterAsFile(parameters, self.GEO, context) or None,
            image_groups=self.parameterAsFile(parameters, self.IMAGE_GROUPS, context) or None,
            recursive=self.parameterAsBoolean(parameters, self.SUBFOLDERS, context))

    def perform(self, parameters, context, reporter):
        plan = self.plan(parameters, context)
        lines = summary_lines(plan, self.parameterAsFile(parameters, self.IMAGE_FOLDER, context) or None)
        photos = survey(u.source for u in plan.photos())
        lines += photos.log_lines()
        # a block of its own in the log (command info: monospaced in the dialog), ahead of the run's messages
        reporter.feedback.pushCommandInfo("\n".join(lines))
        plan.notes = []  # told above, with the rest of the summary
        options = build_options(preset_by_index(self.parameterAsEnum(parameters, self.PRESET, context)),
                                self.parameterAsString(parameters, self.OPTIONS, context))
        if self.parameterAsBoolean(parameters, self.WHOLE_CLUSTER, context):
            options = self.whole_cluster(plan, options, [(p.latitude, p.longitude) for p in photos.positions],
                                         reporter)
        name = self.parameterAsString(parameters, self.TASK_NAME, context).strip() or default_task_name(plan)
        outcome = self.runner(parameters, context, reporter).process(plan, options, name)
        return result_outputs(outcome, context, reporter)

    def whole_cluster(self, plan: UploadPlan, options: dict, positions: list[tuple[float, float]],
                      reporter) -> dict:
        """`options` with split and split-overlap for the nodes online; what the user set in Options stays."""
        chosen = cluster_split(plan.image_count, self.node().info().extra, positions)
        reporter.info(chosen.note)
        kept = [name for name in chosen.options if name in options]
        if kept:
            reporter.info(f"Options set {', '.join(kept)} already: kept as given.")
        return {**chosen.options, **options}
