"""One progress bar for a task's whole life: upload, processing on the server, download.

Each phase gets a share of the bar, so a user sees steady movement instead of three bars that each
restart at zero. Shares are weights, not measurements; processing usually dominates. The bar never
goes backwards: a retried upload subtracts bytes it had counted, and a node that restarts a task
reports lower progress, but what the user saw stays.
"""
from __future__ import annotations

from collections.abc import Mapping

UPLOAD, PROCESSING, DOWNLOAD = "upload", "processing", "download"

#: Shares of the bar for a task sent from QGIS.
SUBMIT_WEIGHTS: Mapping[str, float] = {UPLOAD: 20, PROCESSING: 70, DOWNLOAD: 10}
#: Shares for loading a task that already exists: nothing to upload.
LOAD_WEIGHTS: Mapping[str, float] = {PROCESSING: 80, DOWNLOAD: 20}


class ProgressMap:
    """Maps (phase, percent of that phase) to a percent of the whole bar."""

    def __init__(self, weights: Mapping[str, float]):
        total = float(sum(weights.values()))
        if total <= 0:
            raise ValueError("progress weights must add up to more than zero")
        self.spans: dict[str, tuple[float, float]] = {}
        start = 0.0
        for phase, weight in weights.items():
            width = 100.0 * weight / total
            self.spans[phase] = (start, width)
            start += width
        self.shown = 0.0

    def overall(self, phase: str, percent: float) -> float:
        """The bar's position for `percent` (0–100) of `phase`; never lower than what was shown."""
        start, width = self.spans[phase]
        percent = min(max(float(percent), 0.0), 100.0)
        self.shown = max(self.shown, start + width * percent / 100.0)
        return round(self.shown, 2)
