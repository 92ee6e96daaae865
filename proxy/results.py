"""The results store: each completed task's `all.zip` (and its console output), copied from its node once, so
that its outputs outlive the node (dead, recycled, or its copy removed after archiving), and the thumbnail of its
orthophoto (`result_facts.py` makes it when it reads the zip).

One interface, two backends: a folder on disk (`--results-dir`, DATA_DIR/results by default; this module) or
S3-compatible object storage (`--results-s3`, `results_s3.py`). Both keep, per task, `<uuid>/all.zip`,
`<uuid>/output.json` and `<uuid>/thumbnail.png` (the relay's state store keeps facts of a few KB only: a
thumbnail per task there would be a hundred GB of Redis memory at a million tasks), and `pending/<uuid>`: a
marker written before an archive starts, refreshed while it runs and removed when every step is done, so that an
archive cut short (a relay killed mid-copy) is found and finished by the housekeeping sweep (`archiving.py`).
Replicas behind one balancer share the store.

The copy from the node is always streamed to a local partial file first (`downloads.save_node_zip`), then
handed to the backend with `put_zip`: the disk backend renames it into place (a file named all.zip is always
complete), the S3 backend uploads it in parts and removes it.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from shared.assets import ALL_ZIP

from .errors import DownloadError
from .models import TaskRecord

OUTPUT = "output.json"
THUMBNAIL = "thumbnail.png"
PENDING = "pending"


class ResultsError(DownloadError):
    """The results store could not do what was asked; the message names the file or bucket and key, never a
    secret."""


class ResultsStore(Protocol):
    """What the relay asks of a results store, whichever its backend."""

    where: str  # for log lines and errors: a folder, or s3://bucket/prefix
    local: bool  # a folder on this machine (all.zip is served from it as a file)
    busy: set[str]  # uuids this process is archiving right now
    expired_at: float  # when this process last looked for results past --keep-results (time.monotonic)

    async def check(self) -> None: ...
    def spool(self, uuid: str) -> Path: ...
    def local_zip(self, uuid: str) -> Path | None: ...
    async def put_zip(self, uuid: str, local: Path) -> None: ...
    async def size(self, uuid: str) -> int: ...
    def read(self, uuid: str, start: int, end: int) -> AsyncIterator[bytes]: ...
    async def fetch(self, uuid: str, target: Path) -> None: ...
    async def put_output(self, uuid: str, lines: list[str]) -> None: ...
    async def output(self, uuid: str) -> list[str]: ...
    async def put_thumbnail(self, uuid: str, png: bytes) -> None: ...
    async def thumbnail(self, uuid: str) -> bytes | None: ...
    async def remove(self, uuid: str) -> None: ...
    async def mark_pending(self, uuid: str) -> None: ...
    async def clear_pending(self, uuid: str) -> None: ...
    async def pending(self) -> dict[str, float]: ...
    async def uuids(self) -> list[str]: ...


def archived(results: ResultsStore, task: TaskRecord) -> bool:
    """Whether the store holds this run's all.zip, without a request to it: on disk, the file is there (a replica
    whose results folder is not shared sees its own copies only, and asks the node for the others); in a
    bucket, the task's record says so (set once the copy is whole)."""
    return results.local_zip(task.uuid) is not None if results.local else task.archived_run == task.runs


class DiskResults:
    """`<root>/<uuid>/all.zip`, `<root>/<uuid>/output.json`, `<root>/<uuid>/thumbnail.png`, `<root>/pending/<uuid>`."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.where = str(self.root)
        self.local = True
        self.busy: set[str] = set()
        self.expired_at = float("-inf")

    async def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def folder(self, uuid: str) -> Path:
        return self.root / uuid

    def zip_path(self, uuid: str) -> Path:
        return self.folder(uuid) / ALL_ZIP

    def spool(self, uuid: str) -> Path:
        """Where the copy from the node is written (whole, before `put_zip`): beside its final place, so that
        it is renamed, not copied."""
        return self.folder(uuid) / f".{ALL_ZIP}.{time.monotonic_ns()}"

    def local_zip(self, uuid: str) -> Path | None:
        path = self.zip_path(uuid)
        return path if path.is_file() else None

    async def put_zip(self, uuid: str, local: Path) -> None:
        local.replace(self.zip_path(uuid))
        for left in self.folder(uuid).glob(f".{ALL_ZIP}.*"):  # copies a killed relay left behind
            left.unlink(missing_ok=True)

    async def size(self, uuid: str) -> int:
        try:
            return self.zip_path(uuid).stat().st_size
        except OSError as exc:
            raise ResultsError(f"results of {uuid} not found in {self.where}: {exc.strerror}") from None

    async def read(self, uuid: str, start: int, end: int) -> AsyncIterator[bytes]:
        with open(self.zip_path(uuid), "rb") as src:
            src.seek(start)
            while start < end:
                chunk = src.read(min(1024 * 1024, end - start))
                if not chunk:
                    return
                start += len(chunk)
                yield chunk

    async def fetch(self, uuid: str, target: Path) -> None:
        await asyncio.to_thread(shutil.copyfile, self.zip_path(uuid), target)

    def _write(self, uuid: str, name: str, data: bytes) -> None:
        """A file of the task's folder, written whole under another name first: one that is there is complete."""
        path = self.folder(uuid) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{name}.part")
        partial.write_bytes(data)
        partial.replace(path)

    async def put_output(self, uuid: str, lines: list[str]) -> None:
        self._write(uuid, OUTPUT, json.dumps(lines).encode())

    async def output(self, uuid: str) -> list[str]:
        try:
            return json.loads((self.folder(uuid) / OUTPUT).read_text())
        except (OSError, ValueError):
            return []

    async def put_thumbnail(self, uuid: str, png: bytes) -> None:
        self._write(uuid, THUMBNAIL, png)

    async def thumbnail(self, uuid: str) -> bytes | None:
        try:
            return (self.folder(uuid) / THUMBNAIL).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ResultsError(f"thumbnail of {uuid} not readable in {self.where}: {exc.strerror}") from None

    async def remove(self, uuid: str) -> None:
        """The task was removed or restarted (its old outputs are no longer its results), or expired."""
        with contextlib.suppress(OSError):
            shutil.rmtree(self.folder(uuid))
        await self.clear_pending(uuid)

    async def mark_pending(self, uuid: str) -> None:
        path = self.root / PENDING / uuid
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()

    async def clear_pending(self, uuid: str) -> None:
        (self.root / PENDING / uuid).unlink(missing_ok=True)

    async def pending(self) -> dict[str, float]:
        """Archives begun and not finished, with the seconds since their marker was last refreshed."""
        now, found = time.time(), {}
        with contextlib.suppress(OSError):
            for path in (self.root / PENDING).iterdir():
                with contextlib.suppress(OSError):
                    found[path.name] = now - path.stat().st_mtime
        return found

    async def uuids(self) -> list[str]:
        """Every task the store holds results of."""
        with contextlib.suppress(OSError):
            return [p.name for p in self.root.iterdir() if p.is_dir() and p.name != PENDING]
        return []
