"""The local results cache, one folder per task uuid.

A folder exists only once its download is whole: results are fetched and extracted under a
`.partial` name and renamed into place at the end, so a canceled or broken download never looks like
results. Layers point into these folders, so nothing here deletes a finished one.
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

UUID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{7,127}$")
RECORD = "odx-relay-task.json"


def check_uuid(uuid: str) -> str:
    """A uuid is used as a folder name: accept only what a NodeODX or relay uuid looks like."""
    uuid = (uuid or "").strip()
    if not UUID.match(uuid):
        raise ValueError(f"{uuid!r} does not look like a task uuid (for example "
                         "1f6e2b2c-0c1d-4c5e-9a51-2d1f0f0b7c11)")
    return uuid


@dataclass(frozen=True)
class ResultsCache:
    root: Path

    def folder(self, uuid: str) -> Path:
        return self.root / check_uuid(uuid)

    def partial(self, uuid: str) -> Path:
        return self.root / f"{check_uuid(uuid)}.partial"

    def has(self, uuid: str) -> bool:
        return (self.folder(uuid) / RECORD).is_file()

    def record(self, uuid: str) -> dict[str, Any]:
        """What was noted when the task was downloaded (name, server); empty if unreadable."""
        try:
            return json.loads((self.folder(uuid) / RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def begin(self, uuid: str) -> Path:
        """An empty folder to download into; leftovers of an interrupted download are discarded."""
        partial = self.partial(uuid)
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        return partial

    def commit(self, uuid: str, record: dict[str, Any]) -> Path:
        """Note what was downloaded and move the partial folder into place."""
        partial, final = self.partial(uuid), self.folder(uuid)
        if self.has(uuid):  # another run finished first; its files may already be on the map
            self.abandon(uuid)
            return final
        (partial / RECORD).write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
        if final.exists():  # a folder without a record is an old, unfinished attempt
            shutil.rmtree(final)
        partial.rename(final)
        return final

    def retire(self, uuid: str, stamp: str) -> Path | None:
        """Move a task's results aside (it is about to be processed again under the same uuid), so the
        next load downloads the new ones; returns where the old ones went."""
        if not self.folder(uuid).exists():
            return None
        target = self.root / f"{check_uuid(uuid)}.before-restart-{stamp}"
        self.folder(uuid).rename(target)
        return target

    def abandon(self, uuid: str) -> None:
        shutil.rmtree(self.partial(uuid), ignore_errors=True)
