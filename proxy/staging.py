"""The staging folder: every uploaded input lands here on disk before or while it goes to a node.

Layout: `<data>/staging/<uuid>/<file>` for inputs, `<uuid>/.forwarded/<node id>/<file>` markers for files
each node already has, `<uuid>/.sending/<node id>/<file>` for files on their way to a node (or whose fate
there is unknown: the relay died, the answer was lost), and hidden `.<file>.<pid>.<n>.part` files while an
upload is being written. Markers live on disk, not in the store, so parallel uploads (and replicas sharing
the folder) never race on one record. The init fields live in the task's record in the store.
"""
from __future__ import annotations

import os
import re
import shutil
import unicodedata
from pathlib import Path

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[1-7][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", re.I)  # NodeODX's
_UNSAFE = re.compile(r"[^\w.\- ()+,@]")
MARKERS = ".forwarded"
SENDING = ".sending"


def valid_uuid(text: str) -> bool:
    return bool(UUID_RE.fullmatch(text or ""))


def safe_filename(name: str | None) -> str | None:
    """The last path component of an upload's filename, cleaned; None if nothing usable is left."""
    if not name:
        return None
    base = unicodedata.normalize("NFC", name.replace("\\", "/").split("/")[-1])
    base = _UNSAFE.sub("_", base).strip(" .")[:200]
    if base in ("", ".", "..") or base.startswith("."):
        return None
    return base


class Staging:
    def __init__(self, root: Path):
        self.root = Path(root)

    def folder(self, uuid: str) -> Path:
        if not valid_uuid(uuid):
            raise ValueError(f"not a task uuid: {uuid!r}")
        return self.root / uuid

    def create(self, uuid: str) -> Path:
        folder = self.folder(uuid)
        (folder / MARKERS).mkdir(parents=True, exist_ok=True)
        return folder

    def exists(self, uuid: str) -> bool:
        return self.folder(uuid).is_dir()

    def uuids(self) -> list[str]:
        """Every task that has a staging folder."""
        if not self.root.is_dir():
            return []
        return [p.name for p in self.root.iterdir() if p.is_dir() and valid_uuid(p.name)]

    def files(self, uuid: str) -> list[Path]:
        folder = self.folder(uuid)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))

    def mark_sending(self, uuid: str, name: str, node_id: str) -> None:
        """Written before a file goes to a node: until `mark_forwarded` or `unsend`, whether the node holds it
        is unknown (NodeODX keeps a file sent twice as `name_.ext`, so it must not simply be sent again)."""
        markers = self.folder(uuid) / SENDING / node_id
        markers.mkdir(parents=True, exist_ok=True)
        (markers / name).touch()

    def mark_forwarded(self, uuid: str, name: str, node_id: str) -> None:
        markers = self.folder(uuid) / MARKERS / node_id
        markers.mkdir(parents=True, exist_ok=True)
        (markers / name).touch()
        self.unsend(uuid, name, node_id)

    def unsend(self, uuid: str, name: str, node_id: str) -> None:
        """The node said no to the file: it does not hold it."""
        (self.folder(uuid) / SENDING / node_id / name).unlink(missing_ok=True)

    def uncertain(self, uuid: str, node_id: str) -> bool:
        """Whether `node_id` may hold files of this upload that the relay cannot name (its upload there must
        start afresh before more is sent)."""
        markers = self.folder(uuid) / SENDING / node_id
        return markers.is_dir() and any(markers.iterdir())

    def forget_node(self, uuid: str, node_id: str) -> None:
        """The node's upload of this task was discarded: it holds none of its files now."""
        for kind in (MARKERS, SENDING):
            shutil.rmtree(self.folder(uuid) / kind / node_id, ignore_errors=True)

    def forwarded(self, uuid: str, node_id: str) -> set[str]:
        """Files `node_id` already holds for this uuid (a node keeps an upload it was given, and a file
        sent twice would be kept twice, renamed, as NodeODX does)."""
        markers = self.folder(uuid) / MARKERS / node_id
        return {p.name for p in markers.iterdir()} if markers.is_dir() else set()

    def was_sent(self, uuid: str, name: str, node_id: str) -> bool:
        """Whether the file went, or may have gone, to the node already."""
        return any((self.folder(uuid) / kind / node_id / name).exists() for kind in (MARKERS, SENDING))

    def unsure_of(self, uuid: str, node_id: str) -> None:
        """Mark the node's upload of this task as unknown (a commit there failed or was cut off: NodeODX
        may have removed the upload with it)."""
        self.mark_sending(uuid, ".commit", node_id)

    def partial(self, uuid: str, name: str) -> Path:
        return self.folder(uuid) / f".{name}.{os.getpid()}.{id(name)}.part"

    def remove(self, uuid: str) -> None:
        shutil.rmtree(self.folder(uuid), ignore_errors=True)

    def used_bytes(self, uuid: str) -> int:
        """Bytes the task's inputs take on disk, files still being written included."""
        total = 0
        for path in self.folder(uuid).iterdir() if self.exists(uuid) else ():
            try:
                total += path.stat().st_size if path.is_file() else 0
            except OSError:  # renamed or removed by a parallel upload meanwhile
                pass
        return total

