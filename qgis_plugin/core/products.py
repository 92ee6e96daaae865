"""Which downloaded file is which product, and how each becomes a layer: name, order, style, provider.

The paths come from the shared asset catalogue (the real NodeODX `all.zip` layout), never from
guesses: older plugins looked for DEMs at paths NodeODX does not use. Empty files do not count: a
test-mode NodeODX writes zero-byte placeholders for products it skipped.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from ..deps import shared

Product = shared.assets.Product

#: Which QGIS data providers can open each point-cloud product, best first.
POINT_CLOUD_PROVIDERS: dict[Product, tuple[str, ...]] = {
    Product.POINT_CLOUD_EPT: ("ept",),
    Product.POINT_CLOUD_COPC: ("copc", "pdal"),
    Product.POINT_CLOUD_LAZ: ("pdal",),
    Product.POINT_CLOUD_LAS: ("pdal",),
}


@dataclass(frozen=True)
class Results:
    """The products found in a results folder (an extracted `all.zip`)."""

    folder: Path
    files: dict = field(default_factory=dict)  # Product -> Path

    def get(self, product: Product) -> Path | None:
        return self.files.get(product)

    @property
    def point_clouds(self) -> list[tuple[Product, Path]]:
        return [(p, self.files[p]) for p in shared.assets.POINT_CLOUD_PREFERENCE if p in self.files]


def find_results(folder: str | Path) -> Results:
    """Map each single-file product of the catalogue to its file in `folder`, skipping empty files."""
    folder = Path(folder)
    present = [a.path for a in shared.assets.ASSETS
               if not a.is_folder and (folder / a.path).is_file() and (folder / a.path).stat().st_size > 0]
    found = shared.assets.products_present(present)
    return Results(folder, {product: folder / path for product, path in found.items()})


@dataclass(frozen=True)
class PointCloudChoice:
    """The point cloud to load and its provider, or `problem` saying in words why none can be."""

    path: Path | None = None
    provider: str | None = None
    problem: str | None = None


def choose_point_cloud(results: Results, providers: Iterable[str]) -> PointCloudChoice | None:
    """The best point cloud this QGIS can open (EPT, then COPC, then LAZ/LAS); None if there is none."""
    available = set(providers)
    candidates = results.point_clouds
    if not candidates:
        return None
    for product, path in candidates:
        usable = [p for p in POINT_CLOUD_PROVIDERS[product] if p in available]
        if usable:
            return PointCloudChoice(path, usable[0])
    names = ", ".join(str(path.relative_to(results.folder)) for _, path in candidates)
    needed = sorted({p for product, _ in candidates for p in POINT_CLOUD_PROVIDERS[product]})
    return PointCloudChoice(problem=(
        f"The point cloud {names} was downloaded but this QGIS cannot show it: opening it needs the "
        f"{' or '.join(repr(n) for n in needed)} data provider, which this QGIS build does not have "
        f"(Debian's QGIS 3.22 has no PDAL). The file stays at {candidates[0][1]}; open it in a QGIS "
        "built with PDAL, or process with the option pc-ept=true to get an EPT point cloud QGIS can read."))


class LayerKind(str, Enum):
    ORTHOPHOTO = "orthophoto"
    ELEVATION = "elevation"
    HILLSHADE = "hillshade"
    POINT_CLOUD = "point_cloud"
    POINTS = "points"


@dataclass(frozen=True)
class LayerSpec:
    """One layer to add: `key` is unique within a task, the list order is top to bottom."""

    key: str
    name: str
    path: Path
    kind: LayerKind
    visible: bool = True
    provider: str = "gdal"


@dataclass(frozen=True)
class LayerPlan:
    layers: list
    problems: list


def group_name(task_name: str | None, uuid: str) -> str:
    """The layer-tree group for a task: its name, or a short form of its uuid when it has none."""
    name = " ".join((task_name or "").split())
    return name or f"ODX task {uuid[:8]}"


def layer_plan(results: Results, providers: Iterable[str]) -> LayerPlan:
    """What to load from `results`, top to bottom.

    The camera positions (`shots.geojson`) are points, drawn above everything; the orthophoto is the
    picture people look for, so it sits on top of the rasters; the DSM with its hillshade
    shows below it; the DTM pair and the point cloud are added switched off, since in 2D they
    would only hide the layers above."""
    layers: list[LayerSpec] = []
    problems: list[str] = []
    shots = results.get(Product.SHOTS)
    if shots:  # where each photo was taken: small points, above every raster
        layers.append(LayerSpec("shots", "Camera positions", shots, LayerKind.POINTS, provider="ogr"))
    choice = choose_point_cloud(results, providers)
    if choice is not None and choice.path is not None:
        layers.append(LayerSpec("point_cloud", "Point cloud", choice.path, LayerKind.POINT_CLOUD,
                                visible=False, provider=choice.provider))
    elif choice is not None:
        problems.append(choice.problem)
    ortho = results.get(Product.ORTHOPHOTO)
    if ortho:
        layers.append(LayerSpec("orthophoto", "Orthophoto", ortho, LayerKind.ORTHOPHOTO))
    for product, label, visible in ((Product.DSM, "DSM (surface)", True), (Product.DTM, "DTM (terrain)", False)):
        path = results.get(product)
        if path:
            key = product.value
            layers.append(LayerSpec(f"{key}_hillshade", f"{label} hillshade", path, LayerKind.HILLSHADE, visible))
            layers.append(LayerSpec(key, label, path, LayerKind.ELEVATION, visible))
    return LayerPlan(layers, problems)


@dataclass(frozen=True)
class ElevationStyle:
    """How a DEM is drawn: a colour ramp stretched over the 2–98 % cut of its heights, with a
    hillshade layer multiplied over it so relief reads at any zoom."""

    ramp: tuple = ((0.0, "#2b83ba"), (0.25, "#abdda4"), (0.5, "#ffffbf"), (0.75, "#fdae61"), (1.0, "#d7191c"))
    cut: tuple = (0.02, 0.98)
    sample_size: int = 250_000
    hillshade_azimuth: float = 315.0
    hillshade_altitude: float = 45.0
    hillshade_z_factor: float = 1.0
    hillshade_multidirectional: bool = True
    hillshade_opacity: float = 0.5


ELEVATION_STYLE = ElevationStyle()
