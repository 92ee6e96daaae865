"""What every benchmark is given: the mode (full or quick sizes), a scratch folder for this run's
servers, a cache folder for inputs made once and reused (sample photos, large random files), and the
kinds of node the relay is measured in front of (where a benchmark runs on more than one)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Context:
    mode: str      # "full" or "quick"
    cache: Path    # var/bench/: inputs kept between runs
    scratch: Path  # var/bench/run/: servers' data and logs, emptied at the start of each run
    nodes: tuple[str, ...] = ("devnode", "nodeodx")  # node kinds for the cycle and upload benchmarks
