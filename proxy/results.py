"""The results store: each completed task's `all.zip`, copied from its node once, so that its outputs outlive
the node (dead, recycled, or removed from the relay).

Layout: `<results>/<uuid>/all.zip` (`--results-dir`, DATA_DIR/results by default; replicas behind one
balancer share it, as they share the staging folder). The copy is streamed to a hidden `.part` file and
renamed when whole, so a file named all.zip is always complete. One replica copies (a claim in the store);
the others see the file. Until it is there, downloads come from the node as before.
"""
from __future__ import annotations

import contextlib
import logging
import shutil
import time
from pathlib import Path

from shared.assets import ALL_ZIP

from .downloads import save_node_zip
from .errors import DownloadError
from .models import TaskRecord
from .nodes import NodeRegistry

log = logging.getLogger("odx_relay.results")


class ResultsStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def zip_path(self, uuid: str) -> Path:
        return self.root / uuid / ALL_ZIP

    def has(self, uuid: str) -> bool:
        return self.zip_path(uuid).is_file()

    async def archive(self, nodes: NodeRegistry, task: TaskRecord) -> Path | None:
        """Copy the task's all.zip from its node, streamed with bounded memory; None if the node would not
        give it (the downloads keep coming from the node, as before)."""
        path = self.zip_path(task.uuid)
        started = time.monotonic()
        try:
            await save_node_zip(nodes, task, path, path.with_name(f".{ALL_ZIP}.{time.monotonic_ns()}.part"))
        except (OSError, DownloadError) as exc:
            log.warning("results not archived uuid=%s: %s", task.uuid, exc)
            return None
        log.info("results archived uuid=%s bytes=%d seconds=%.1f", task.uuid, path.stat().st_size,
                 time.monotonic() - started)
        return path

    def remove(self, uuid: str) -> None:
        """The task was removed, or restarted (its old outputs are no longer its results)."""
        with contextlib.suppress(OSError):
            shutil.rmtree(self.root / uuid)
