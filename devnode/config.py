"""What one development node is told at start: its limits, its timing and the faults it should show.

Each setting is declared once, as a field below: its name gives the flag (`max_images` is `--max-images`)
and the environment variable (`ODX_DEVNODE_MAX_IMAGES`), its type and default are the field's, and its
help is beside it (`shared.flags` builds the parser from them, as for the relay). Kept apart from the
command line so tests and the demo can build an application directly, and so the task manager and the
routes read one frozen object instead of loose globals.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from shared.flags import setting

#: NodeODX API version this node speaks (NodeODM 2.2.1's API; `engine: "odx"` is what NodeODX adds).
API_VERSION = "2.2.1"
#: What `/info` reports as `engine`.
ENGINE = "odx"
#: Exit status of a node that `--die-after` brought down, so a test can tell it from a clean stop.
DIE_EXIT_CODE = 3
#: Prefix of the environment variables that stand for the flags.
ENV_PREFIX = "ODX_DEVNODE_"


def rate(text: str) -> float:
    """A share between 0 and 1, refused on the command line rather than when the node starts."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("a rate is a number between 0 and 1")
    return value


@dataclass(frozen=True)
class Config:
    """Settings of one development node; defaults are NodeODX's where NodeODX has one."""

    host: str = setting("127.0.0.1", "address to listen on")
    port: int = setting(3000, "port to listen on")
    slots: int = setting(1, "tasks processed at once, reported as maxParallelTasks")
    max_images: int = setting(0, "most images a task may have, reported as maxImages", shown="0: no limit")
    memory_gb: float = setting(16.0, "memory the node reports as totalMemory, in GB")
    seconds_per_image: float = setting(0.05, "simulated processing time per image")
    token: str = setting("", "require ?token=TOKEN on every API call but /auth/*")
    #: None only on the command line: `python -m devnode` then makes a temporary folder, removed at exit;
    #: `create_app` refuses a Config without one.
    data_dir: Path | None = setting(None, "where tasks, uploads and outputs live", parse=Path,
                                    shown="a temporary folder")
    options_file: Path | None = setting(None, "JSON file to answer /options with", parse=Path,
                                        shown="the real NodeODX list")
    fail_tasks: bool = setting(False, "make every task fail half way through processing")
    drop_uploads: float = setting(0.0, "share of /task/new/upload calls answered with HTTP 500, from 0 to 1",
                                  parse=rate)
    range: bool = setting(False, "answer Range requests on downloads with 206, which NodeODX does not")
    die_after: int = setting(0, f"exit with status {DIE_EXIT_CODE} half way through the Nth task started, to "
                                "simulate a crash", shown="0: never")
    sm_retry_seconds: float = setting(10.0, "split-merge: seconds before a submodel that failed on the sm-cluster is "
                                            "sent again, times its retry number (ODM's 10)")
    log_level: str = setting("INFO", "DEBUG shows each request (path only), INFO each task event")

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
        if self.sm_retry_seconds < 0:
            raise ValueError("sm-retry-seconds must be 0 or more")
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
