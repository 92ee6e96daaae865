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
)
from qgis.PyQt import sip
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
            "point_cloud": str(cloud) if cloud else None}


def available_providers() -> list[str]:
    return list(QgsProviderRegistry.instance().providerList())


def make_layer(spec: LayerSpec, style: ElevationStyle = ELEVATION_STYLE) -> QgsMapLayer:
    """A layer for `spec`, styled; check `isValid()` (and never call `.error()` on a point cloud layer:
    that crashes QGIS 3.22 when the layer is invalid)."""
    if spec.kind == LayerKind.POINT_CLOUD:
        return QgsPointCloudLayer(str(spec.path), spec.name, spec.provider)
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


class GroupPlacement:
    """Puts one task's layers into one new group at the top of the layer tree, in the planned order."""

    def __init__(self, name: str, specs: list[LayerSpec]):
        self.name = name
        self.order = [s.key for s in specs]
        self.visible = {s.key: s.visible for s in specs}
        self.placed: list[str] = []
        self.group: QgsLayerTreeGroup | None = None

    def place(self, layer: QgsMapLayer, key: str, project: QgsProject) -> None:
        root = project.layerTreeRoot()
        node = root.findLayer(layer.id())
        if node is None:
            return
        if self.group is None or sip.isdeleted(self.group):
            self.group = root.insertGroup(0, self.name)
            self.placed = []
        rank = self.order.index(key)
        index = sum(1 for k in self.placed if self.order.index(k) < rank)
        clone = node.clone()
        clone.setItemVisibilityChecked(self.visible[key])
        self.group.insertChildNode(index, clone)
        node.parent().removeChildNode(node)
        self.placed.append(key)


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
    results = find_results(folder)
    providers = available_providers()
    plan = layer_plan(results, providers)
    for problem in plan.problems:
        feedback.pushWarning(problem)
    placement = GroupPlacement(group_name(task_name, uuid), plan.layers)
    project = context.project() or QgsProject.instance()
    loaded = 0
    for spec in plan.layers:
        layer = make_layer(spec)
        if not layer.isValid():
            feedback.pushWarning(f"{spec.path} could not be opened as {spec.name.lower()} "
                                 f"(QGIS provider {spec.provider!r}); it stays on disk.")
            continue
        context.temporaryLayerStore().addMapLayer(layer)
        details = QgsProcessingContext.LayerDetails(spec.name, project, spec.key)
        details.forceName = True
        processor = _PlaceInGroup(placement, spec.key)
        _POST_PROCESSORS.append(processor)
        details.setPostProcessor(processor)
        context.addLayerToLoadOnCompletion(layer.id(), details)
        loaded += 1
    files = product_files(results, providers)
    feedback.pushInfo(f"{loaded} layer(s) will load into the group “{placement.name}”.")
    return LoadedResults(files["orthophoto"], files["dsm"], files["dtm"], files["point_cloud"], loaded)
