"""Staged uploads: what `/task/new/init`, `/task/new/upload` and `/task/new` leave on disk before a task exists.

Like NodeODX, a staged upload is a folder `tmp/<uuid>/` holding `body.json` (the init form) and the files
received so far; `commit` turns it into a task. Files are streamed to disk in chunks, never held whole in
memory, and named as NodeODX names them: no path parts, `body.json` renamed, clashes suffixed with `_`.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from aiohttp import BodyPartReader, MultipartReader

CHUNK = 256 * 1024
BODY_FILE = "body.json"
IMAGES_FIELD = "images"


class UploadRefused(ValueError):
    """The upload cannot be used; the message is what NodeODX answers as `error`."""


def safe_filename(name: str) -> str:
    """The last path part of a client's filename; never a path, never the staging's own body.json."""
    base = re.split(r"[\\/]", name or "")[-1].strip()
    if base in ("", ".", ".."):
        base = "_"
    return "_body.json" if base == BODY_FILE else base


def _claim(folder: Path, name: str) -> Path:
    """Create `name` in `folder`, or `stem_.ext` while taken (NodeODX's assureUniqueFilename), atomically."""
    while True:
        path = folder / name
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            return path
        except FileExistsError:
            stem, dot, ext = name.rpartition(".")
            name = f"{stem}_.{ext}" if dot and stem else f"{name}_"


async def _stream_to(part: BodyPartReader, path: Path) -> None:
    with path.open("wb") as out:
        while chunk := await part.read_chunk(CHUNK):
            out.write(chunk)


async def receive(reader: MultipartReader, folder: Path) -> tuple[list[Path], dict[str, str]]:
    """Store each `images` file part in `folder`; return the stored paths and the text fields."""
    files: list[Path] = []
    fields: dict[str, str] = {}
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise UploadRefused("Unexpected field")
        if part.filename is None:
            fields[part.name or ""] = await part.text()
            continue
        if part.name != IMAGES_FIELD:
            raise UploadRefused("Unexpected field")
        folder.mkdir(parents=True, exist_ok=True)
        path = _claim(folder, safe_filename(part.filename))
        try:
            await _stream_to(part, path)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        files.append(path)
    return files, fields


class Staging:
    """The `tmp/` folder of a node: one sub-folder per upload that is not yet a task."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def folder(self, uuid: str) -> Path:
        return self.root / uuid

    def open(self, uuid: str, body: dict) -> None:
        """Start a chunked upload (`/task/new/init`); a second init with the same uuid starts over its form."""
        folder = self.folder(uuid)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / BODY_FILE).write_text(json.dumps(body), encoding="utf-8")

    def is_open(self, uuid: str) -> bool:
        if not uuid or uuid in (".", "..") or "/" in uuid or "\\" in uuid:
            return False
        return (self.folder(uuid) / BODY_FILE).is_file()

    def take_body(self, uuid: str) -> dict:
        """Read and remove the init form, as commit does, so a second commit finds nothing."""
        path = self.folder(uuid) / BODY_FILE
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise UploadRefused("Malformed body.json") from None
        path.unlink()
        return body if isinstance(body, dict) else {}

    def files(self, uuid: str) -> list[Path]:
        folder = self.folder(uuid)
        return sorted(p for p in folder.iterdir()) if folder.is_dir() else []

    def discard(self, uuid: str) -> None:
        shutil.rmtree(self.folder(uuid), ignore_errors=True)
