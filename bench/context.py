"""What every benchmark is given: the mode (full or quick sizes), a scratch folder for this run's
servers, and a cache folder for inputs made once and reused (sample photos, large random files)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Context:
    mode: str      # "full" or "quick"
    cache: Path    # var/bench/: inputs kept between runs
    scratch: Path  # var/bench/run/: servers' data and logs, emptied at the start of each run
