"""Staged uploads: what `/task/new/init`, `/task/new/upload` and `/task/new` leave on disk before a task exists.

Like NodeODX, a staged upload is a folder `tmp/<uuid>/` holding `body.json` (the init form) and the files
received so far; `commit` turns it into a task. Files are streamed to disk in chunks, never held whole in
memory, and named as NodeODX names them: no path parts, `body.json` renamed, clashes suffixed with `_`.

Bodies are read the way NodeODX's multer 1.4 (over busboy 0.2) reads them, because a client that works
here must work on a real node: a body that is not multipart carries nothing at all, a multipart body
that is not `multipart/form-data` is refused, and a file part without a filename is dropped unseen.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from aiohttp import BodyPartReader, MultipartReader, hdrs, web

CHUNK = 256 * 1024
BODY_FILE = "body.json"
IMAGES_FIELD = "images"
FORM_DATA = "multipart/form-data"
#: busboy's default `fieldSize`, which multer keeps: a longer text field fails the whole request.
FIELD_LIMIT = 1024 * 1024


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


def _is_file(part: BodyPartReader) -> bool:
    """busboy's test: a part is a file when it has a filename or is typed application/octet-stream."""
    kind = part.headers.get(hdrs.CONTENT_TYPE, "").split(";")[0].strip().lower()
    return part.filename is not None or kind == "application/octet-stream"


async def _field_text(part: BodyPartReader) -> str:
    """A text field's value, refused past FIELD_LIMIT with multer's words rather than aiohttp's HTTP 413."""
    data = bytearray()
    while chunk := await part.read_chunk(CHUNK):
        data += chunk
        if len(data) > FIELD_LIMIT:
            raise UploadRefused("Field value too long")
    return data.decode(part.get_charset("utf-8"), "replace")


async def receive(reader: MultipartReader, folder: Path | None) -> tuple[list[Path], dict[str, str]]:
    """Store each `images` file part in `folder`; return the stored paths and the text fields.

    With no `folder` every file is refused, as `multer().none()` (the parser of `/task/new/init`) does.
    """
    files: list[Path] = []
    fields: dict[str, str] = {}
    try:
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise UploadRefused("Unexpected field")
            if not _is_file(part):
                if part.name is None:
                    raise UploadRefused("Field name missing")
                fields[part.name] = await _field_text(part)
            elif not part.filename:
                await part.release()  # multer skips a file without a name: neither a file nor a field
            elif folder is None or part.name != IMAGES_FIELD:
                raise UploadRefused("Unexpected field")
            else:
                files.append(await _store(part, folder))
    except BaseException:
        for path in files:  # multer removes what this request stored before it gave up
            path.unlink(missing_ok=True)
        raise
    return files, fields


async def _store(part: BodyPartReader, folder: Path) -> Path:
    """Stream one file part into `folder` under a name of its own; nothing half-written stays behind."""
    folder.mkdir(parents=True, exist_ok=True)
    path = _claim(folder, safe_filename(part.filename or ""))
    try:
        await _stream_to(part, path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


async def read_upload(request: web.Request, folder: Path | None) -> tuple[list[Path], dict[str, str]]:
    """What multer hands NodeODX's handler: files and fields of a form-data body, nothing from any other.

    NodeODX ignores a url-encoded or JSON body on its multipart routes without a word, so this does too;
    a multipart body of another subtype is what busboy 0.2 cannot parse, and NodeODX says so.
    """
    if not request.content_type.startswith("multipart/"):
        return [], {}
    if request.content_type != FORM_DATA:
        raise UploadRefused(f"Unsupported content type: {request.headers[hdrs.CONTENT_TYPE]}")
    return await receive(await request.multipart(), folder)


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
