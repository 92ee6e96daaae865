"""“Use the whole cluster”: the split-merge options for a task, from its photos and the relay's nodes online.

ODM's split-merge cuts a dataset into submodels of about `split` images, processes them on the nodes at
once (through the relay, which sets `sm-cluster`) and merges them. One submodel per node online spreads the
work over every machine (slots of one machine share its CPU and memory, so nodes, not slots, are counted).
`split-overlap` is the radius, in metres, within which photos of a neighbouring submodel are added to a
submodel so that they align: a few photo spacings (the median distance from each photo to its nearest
neighbour), within ODM's sensible bounds. A plain NodeODX node, a relay with one node online, or too few
photos for two submodels of MIN_SUBMODEL_IMAGES: no split, and the log says why.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from statistics import median
from typing import Any

MIN_SUBMODEL_IMAGES = 10   # fewer photos than this per submodel align poorly and gain nothing
OVERLAP_SPACINGS = 3       # split-overlap, in photo spacings
OVERLAP_BOUNDS_M = (20, 150)  # ODM's default is 150 m, its largest sensible value for a drone flight
EARTH_RADIUS_M = 6_371_000.0


@dataclass
class ClusterSplit:
    options: dict[str, Any] = field(default_factory=dict)  # split, split-overlap; empty when not splitting
    note: str = ""


def nodes_online(info_extra: Mapping[str, Any]) -> int:
    """Nodes online behind a relay (its `/info` says, under `relay`); 1 for a plain NodeODX node."""
    relay = info_extra.get("relay")
    if isinstance(relay, Mapping) and isinstance(relay.get("online"), int):
        return max(relay["online"], 0)
    return 1


def photo_spacing_m(positions: Iterable[tuple[float, float]]) -> float | None:
    """The median distance, in metres, from each photo to its nearest neighbour (None below two photos)."""
    points = [(math.radians(lat), math.radians(lon)) for lat, lon in positions]
    if len(points) < 2:
        return None
    nearest = []
    for i, (lat1, lon1) in enumerate(points):
        best = math.inf
        for j, (lat2, lon2) in enumerate(points):
            if i != j:
                x = (lon2 - lon1) * math.cos((lat1 + lat2) / 2)
                best = min(best, math.hypot(x, lat2 - lat1) * EARTH_RADIUS_M)
        nearest.append(best)
    return median(nearest)


def cluster_split(image_count: int, info_extra: Mapping[str, Any],
                  positions: Iterable[tuple[float, float]] = ()) -> ClusterSplit:
    """The options that spread one task over the nodes online, and a line for the log saying what was chosen."""
    nodes = nodes_online(info_extra)
    if "relay" not in info_extra:
        return ClusterSplit(note="Use the whole cluster: the server is a single node, not a relay; the task is "
                                 "not split.")
    if nodes < 2:
        return ClusterSplit(note=f"Use the whole cluster: {nodes} node online at the relay; the task is not split.")
    submodels = min(nodes, image_count // MIN_SUBMODEL_IMAGES)
    if submodels < 2:
        return ClusterSplit(note=f"Use the whole cluster: {image_count} photos are too few to split (at least "
                                 f"{2 * MIN_SUBMODEL_IMAGES} are needed, {MIN_SUBMODEL_IMAGES} per submodel).")
    options: dict[str, Any] = {"split": math.ceil(image_count / submodels)}
    spacing = photo_spacing_m(positions)
    overlap = ""
    if spacing is not None:
        low, high = OVERLAP_BOUNDS_M
        options["split-overlap"] = int(min(max(round(OVERLAP_SPACINGS * spacing), low), high))
        overlap = f", an overlap of {options['split-overlap']} m ({OVERLAP_SPACINGS} photo spacings of " \
                  f"{spacing:.0f} m)"
    return ClusterSplit(options, f"Use the whole cluster: {nodes} nodes online, so {submodels} submodels of about "
                                 f"{options['split']} photos{overlap}.")
