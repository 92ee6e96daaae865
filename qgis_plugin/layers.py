"""Results on the map: layers made from a results folder, styled, and handed to Processing to load.

Layers are created in the algorithm's thread and put in the context's temporary layer store;
Processing moves them to the main thread and adds them to the project when the algorithm ends
(`addLayerToLoadOnCompletion`). A post-processor, which Processing runs on the main thread, then puts
each into the task's group in the planned order. Nothing here touches the project from a worker thread.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qgis.core import (
    QgsColorRampShader,
    QgsCoordinateTransform,
    QgsCsException,
    QgsGradientColorRamp,
    QgsGradientStop,
    QgsHillshadeRenderer,
    QgsLayerTreeGroup,
    QgsMapLayer,
    QgsPointCloudLayer,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProject,
    QgsProviderRegistry,
    QgsRasterLayer,
    QgsRectangle,
    QgsSingleBandPseudoColorRenderer,
    QgsVectorLayer,
)
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtGui import QColor, QPainter

from .core.products import (
    ELEVATION_STYLE,
    ElevationStyle,
    LayerKind,
    LayerSpec,
    Product,
    Results,
    choose_point_cloud,
    find_results,
    group_name,
    layer_plan,
)


@dataclass
class LoadedResults:
    """What a run returns: the product files (outputs) and how many layers will load."""

    orthophoto: str | None
    dsm: str | None
    dtm: str | None
    point_cloud: str | None
    report: str | None
    shots: str | None
    layers: int


def product_files(results: Results, providers: list[str]) -> dict[str, str | None]:
    """The algorithm outputs: each product's file or None. The point cloud is the one QGIS can show,
    else the best one there is (the user may open it elsewhere)."""
    def path(product) -> str | None:
        found = results.get(product)
        return str(found) if found else None

    choice = choose_point_cloud(results, providers)
    cloud = choice.path if choice is not None and choice.path is not None else (
        results.point_clouds[0][1] if results.point_clouds else None)
    return {"orthophoto": path(Product.ORTHOPHOTO), "dsm": path(Product.DSM), "dtm": path(Product.DTM),
            "point_cloud": str(cloud) if cloud else None, "report": path(Product.REPORT),
            "shots": path(Product.SHOTS)}


def available_providers() -> list[str]:
    return list(QgsProviderRegistry.instance().providerList())


def make_layer(spec: LayerSpec, style: ElevationStyle = ELEVATION_STYLE) -> QgsMapLayer:
    """A layer for `spec`, styled; check `isValid()` (and never call `.error()` on a point cloud layer:
    that crashes QGIS 3.22 when the layer is invalid)."""
    if spec.kind == LayerKind.POINT_CLOUD:
        return QgsPointCloudLayer(str(spec.path), spec.name, spec.provider)
    if spec.kind == LayerKind.POINTS:
        return QgsVectorLayer(str(spec.path), spec.name, spec.provider)
    layer = QgsRasterLayer(str(spec.path), spec.name, spec.provider)
    if layer.isValid():
        if spec.kind == LayerKind.ELEVATION:
            style_elevation(layer, style)
        elif spec.kind == LayerKind.HILLSHADE:
            style_hillshade(layer, style)
    return layer


def elevation_range(layer: QgsRasterLayer, style: ElevationStyle) -> tuple[float, float]:
    """The heights to stretch the colours over: the 2–98 % cut (a flat raster gets a 1 m range)."""
    low, high = layer.dataProvider().cumulativeCut(1, style.cut[0], style.cut[1], QgsRectangle(), style.sample_size)
    return (low, high) if low < high else (low, low + 1.0)


def elevation_ramp(style: ElevationStyle) -> QgsGradientColorRamp:
    (_, first), *middle, (_, last) = style.ramp
    stops = [QgsGradientStop(position, QColor(colour)) for position, colour in middle]
    return QgsGradientColorRamp(QColor(first), QColor(last), False, stops)


def style_elevation(layer: QgsRasterLayer, style: ElevationStyle = ELEVATION_STYLE) -> None:
    low, high = elevation_range(layer, style)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1)
    renderer.setClassificationMin(low)
    renderer.setClassificationMax(high)
    renderer.createShader(elevation_ramp(style), QgsColorRampShader.Type.Interpolated,
                          QgsColorRampShader.ClassificationMode.Continuous)
    layer.setRenderer(renderer)


def style_hillshade(layer: QgsRasterLayer, style: ElevationStyle = ELEVATION_STYLE) -> None:
    renderer = QgsHillshadeRenderer(layer.dataProvider(), 1, style.hillshade_azimuth, style.hillshade_altitude)
    renderer.setZFactor(style.hillshade_z_factor)
    renderer.setMultiDirectional(style.hillshade_multidirectional)
    layer.setRenderer(renderer)
    layer.setOpacity(style.hillshade_opacity)
    layer.setBlendMode(QPainter.CompositionMode.CompositionMode_Multiply)


#: The layer-tree group of a task carries its uuid here, so loading the task again finds it.
TASK_PROPERTY = "odx_relay/task"


def task_groups(node: QgsLayerTreeGroup, uuid: str) -> list[QgsLayerTreeGroup]:
    """The groups under `node` (at any depth) that hold task `uuid`'s layers."""
    found = []
    for child in node.children():
        if isinstance(child, QgsLayerTreeGroup):
            if child.customProperty(TASK_PROPERTY) == uuid:
                found.append(child)
            found += task_groups(child, uuid)
    return found


class GroupPlacement:
    """Puts one task's layers into the task's group, in the planned order: a new group at the top of the layer
    tree, or, when the task was loaded before, its group where the user left it, emptied of the old layers
    (which leave the project). Once the last layer is in, the map zooms to them all."""

    def __init__(self, name: str, uuid: str, specs: list[LayerSpec]):
        self.name = name
        self.uuid = uuid
        self.order = [s.key for s in specs]
        self.visible = {s.key: s.visible for s in specs}
        self.placed: list[str] = []
        self.layers: list[QgsMapLayer] = []
        self.expected = len(specs)  # how many will come: set to the number queued
        self.group: QgsLayerTreeGroup | None = None

    def task_group(self, project: QgsProject, keep: set[str]) -> QgsLayerTreeGroup:
        root = project.layerTreeRoot()
        groups = task_groups(root, self.uuid)
        if not groups:
            group = root.insertGroup(0, self.name)
            group.setCustomProperty(TASK_PROPERTY, self.uuid)
            return group
        group, *extra = groups
        old = [i for g in groups for i in g.findLayerIds() if i not in keep]
        for duplicate in extra:
            duplicate.parent().removeChildNode(duplicate)
        group.removeAllChildren()
        retire_layers(project, old)
        group.setName(self.name)
        return group

    def place(self, layer: QgsMapLayer, key: str, project: QgsProject) -> None:
        root = project.layerTreeRoot()
        node = root.findLayer(layer.id())
        if node is None:
            return
        if self.group is None or sip.isdeleted(self.group):
            self.group = self.task_group(project, {layer.id()})
            self.placed, self.layers = [], []
        rank = self.order.index(key)
        index = sum(1 for k in self.placed if self.order.index(k) < rank)
        clone = node.clone()
        clone.setItemVisibilityChecked(self.visible[key])
        self.group.insertChildNode(index, clone)
        node.parent().removeChildNode(node)
        self.placed.append(key)
        self.layers.append(layer)
        if len(self.placed) == self.expected:
            zoom_to_layers(self.layers, project)


#: Layers taken out of the project, kept alive until the map has stopped drawing them (see retire_layers).
_RETIRED: list[list[QgsMapLayer]] = []


def retire_layers(project: QgsProject, ids: list[str]) -> None:
    """Take layers out of the project without deleting them at once: a map render still under way in another
    thread may be drawing them (QGIS 3.22 crashes when a point cloud layer is deleted mid-render), so they
    are let go a little later, once the map is not drawing."""
    layers = [project.takeMapLayer(layer) for layer in (project.mapLayer(i) for i in ids) if layer is not None]
    if not layers:
        return
    for layer in layers:
        sip.transferto(layer, None)  # Qt deletes them (deleteLater), never Python's garbage collector
    _RETIRED.append(layers)

    def release() -> None:
        canvas = _canvas()
        if canvas is not None and canvas.isDrawing():
            QTimer.singleShot(1000, release)
        elif layers in _RETIRED:
            _RETIRED.remove(layers)
            for layer in layers:
                layer.deleteLater()

    QTimer.singleShot(3000, release)


def _canvas():
    from qgis.utils import iface

    return iface.mapCanvas() if iface is not None else None


def zoom_to_layers(layers: list[QgsMapLayer], project: QgsProject) -> None:
    """Show `layers` on the map: their joint extent in the map's (the project's) CRS. Without a map window
    (qgis_process, scripts), nothing to do."""
    canvas = _canvas()
    if canvas is None:
        return
    target = canvas.mapSettings().destinationCrs()
    if not target.isValid():
        target = project.crs()
    extent = QgsRectangle()
    extent.setMinimal()
    for layer in layers:
        if sip.isdeleted(layer) or not layer.isValid() or layer.extent().isEmpty():
            continue
        try:
            rect = QgsCoordinateTransform(layer.crs(), target, project).transformBoundingBox(layer.extent())
        except QgsCsException:
            continue
        extent.combineExtentWith(rect)
    if extent.isEmpty() or extent.isNull():
        return
    canvas.setExtent(extent.buffered(max(extent.width(), extent.height()) * 0.02))
    canvas.refresh()


class _PlaceInGroup(QgsProcessingLayerPostProcessorInterface):
    def __init__(self, placement: GroupPlacement, key: str):
        super().__init__()
        self.placement, self.key = placement, key

    def postProcessLayer(self, layer, context, feedback):
        self.placement.place(layer, self.key, context.project() or QgsProject.instance())


#: Processing holds post-processors by raw pointer; Python must keep them alive until they have run.
_POST_PROCESSORS: list[_PlaceInGroup] = []


def queue_results(folder: Path, task_name: str, uuid: str, context: QgsProcessingContext,
                  feedback: QgsProcessingFeedback) -> LoadedResults:
    """Make the layers of a results folder and queue them to load into a group named after the task."""
    return queue_layers(find_results(folder), task_name, uuid, context, feedback)


def queue_layers(results: Results, task_name: str, uuid: str, context: QgsProcessingContext,
                 feedback: QgsProcessingFeedback) -> LoadedResults:
    """Queue the layers of `results` (files in a folder, or URLs read over HTTP when streamed) to load into a
    group named after the task."""
    providers = available_providers()
    plan = layer_plan(results, providers)
    for problem in plan.problems:
        feedback.pushWarning(problem)
    placement = GroupPlacement(group_name(task_name, uuid), uuid, plan.layers)
    project = context.project() or QgsProject.instance()
    loaded = 0
    for spec in plan.layers:
        layer = make_layer(spec)
        if not layer.isValid():
            where = "it was not loaded" if isinstance(spec.path, str) else "it stays on disk"  # a URL: streamed
            feedback.pushWarning(f"{spec.path} could not be opened as {spec.name.lower()} "
                                 f"(QGIS provider {spec.provider!r}); {where}.")
            continue
        context.temporaryLayerStore().addMapLayer(layer)
        details = QgsProcessingContext.LayerDetails(spec.name, project, spec.key)
        details.forceName = True
        processor = _PlaceInGroup(placement, spec.key)
        _POST_PROCESSORS.append(processor)
        details.setPostProcessor(processor)
        context.addLayerToLoadOnCompletion(layer.id(), details)
        loaded += 1
    placement.expected = loaded
    files = product_files(results, providers)
    feedback.pushInfo(f"{loaded} layer(s) will load into the group “{placement.name}” (the task's group, "
                      "its old layers replaced, if it was loaded before), and the map will zoom to them.")
    if files["report"]:
        feedback.pushInfo(f"The processing report (PDF) is at {files['report']}.")
    return LoadedResults(files["orthophoto"], files["dsm"], files["dtm"], files["point_cloud"], files["report"],
                         files["shots"], loaded)
