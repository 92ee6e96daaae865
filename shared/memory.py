"""The memory model: how much RAM a task needs, from its image count and options.

ClusterODX and WebODM ignore memory; a 1500-image task then lands on a 16 GB node and dies hours later.
The starting point is WebODM's published hardware table ("RAM or RAM + swap"), interpolated linearly
between its rows and extrapolated from the last slope beyond it. Quality options scale the estimate up,
`split` (submodels) scales it down to the size of one submodel. One place, used by the relay's
placement and by the development node's reported `availableMemory`; the table can be replaced.
"""
from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from typing import Any

MB_PER_GB = 1024

#: (images, GB) rows of WebODM's hardware recommendations.
DEFAULT_TABLE: tuple[tuple[int, float], ...] = (
    (0, 2.0), (40, 4.0), (250, 16.0), (500, 32.0), (1500, 64.0), (2500, 128.0), (3500, 192.0), (5000, 256.0),
)

#: Multipliers for quality options; "medium"/"high" are NodeODX's defaults and cost nothing extra.
QUALITY_FACTORS: dict[str, dict[str, float]] = {
    "pc-quality": {"ultra": 2.0, "high": 1.4, "medium": 1.0, "low": 0.8, "lowest": 0.7},
    "feature-quality": {"ultra": 1.5, "high": 1.0, "medium": 0.9, "low": 0.8, "lowest": 0.7},
}


def _interpolate(table: Sequence[tuple[int, float]], images: int) -> float:
    xs = [row[0] for row in table]
    i = bisect_left(xs, images)
    if i < len(table) and xs[i] == images:
        return table[i][1]
    if i == 0:
        return table[0][1]
    if i >= len(table):
        (x0, y0), (x1, y1) = table[-2], table[-1]
    else:
        (x0, y0), (x1, y1) = table[i - 1], table[i]
    return y0 + (y1 - y0) * (images - x0) / (x1 - x0)


def estimate_memory_mb(image_count: int, options: Mapping[str, Any] | None = None,
                       table: Sequence[tuple[int, float]] = DEFAULT_TABLE) -> int:
    """Estimated peak memory, in MB (NodeODX reports memory in bytes; divide by 1024**2 to compare)."""
    options = options or {}
    images = max(0, int(image_count))
    split = options.get("split")
    try:
        split_size = int(float(split)) if split not in (None, "") else 0
    except (TypeError, ValueError):
        split_size = 0
    if 0 < split_size < images:
        images = split_size
    gb = _interpolate(table, images)
    for name, factors in QUALITY_FACTORS.items():
        gb *= factors.get(str(options.get(name, "")).lower(), 1.0)
    return int(round(gb * MB_PER_GB))


def parse_table(text: str) -> tuple[tuple[int, float], ...]:
    """Read a table given as "images:GB,images:GB,..." (the relay's --memory-table flag)."""
    rows = []
    for part in text.split(","):
        images, _, gb = part.strip().partition(":")
        rows.append((int(images), float(gb)))
    rows.sort()
    if len(rows) < 2:
        raise ValueError("a memory table needs at least two images:GB rows")
    return tuple(rows)
