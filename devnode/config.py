"""What one development node is told at start: its limits, its timing and the faults it should show.

Kept apart from the command line so tests and the demo can build an application directly, and so the
task manager and the routes read one frozen object instead of loose globals.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: NodeODX API version this node speaks (NodeODM 2.2.1's API; `engine: "odx"` is what NodeODX adds).
API_VERSION = "2.2.1"
#: What `/info` reports as `engine`.
ENGINE = "odx"


@dataclass(frozen=True)
class Config:
    """Settings of one development node; defaults are NodeODX's where NodeODX has one."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 3000
    slots: int = 1
    max_images: int = 0
    memory_gb: float = 16.0
    seconds_per_image: float = 0.05
    token: str = ""
    fail_tasks: bool = False
    drop_uploads: float = 0.0
    range: bool = False
    die_after: int = 0
    options_file: Path | None = None

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ValueError("slots must be at least 1")
        if self.max_images < 0:
            raise ValueError("max-images must be 0 (no limit) or more")
        if self.memory_gb <= 0:
            raise ValueError("memory-gb must be more than 0")
        if self.seconds_per_image < 0:
            raise ValueError("seconds-per-image must be 0 or more")
        if not 0.0 <= self.drop_uploads <= 1.0:
            raise ValueError("drop-uploads is a rate between 0 and 1")
        if self.die_after < 0:
            raise ValueError("die-after must be 0 (never) or more")

    @property
    def total_memory(self) -> int:
        """Bytes, as NodeODX reports `totalMemory`."""
        return int(self.memory_gb * 1024 ** 3)

    @property
    def max_images_reported(self) -> int | None:
        """NodeODX reports `maxImages: null` when there is no limit."""
        return self.max_images or None
