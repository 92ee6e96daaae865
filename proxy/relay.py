"""The relay's application object: its parts, wired once, and the few operations every handler shares.

There is no global state outside it; handlers reach it as `request.app[RELAY]`.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Coroutine

from aiohttp import web

from shared.memory import estimate_memory_mb
from shared.types import TaskStatus

from . import __version__
from .auth import Auth
from .config import RelayConfig
from .models import Stage, TaskRecord
from .nodes import NodeRegistry
from .scheduler import TaskNeeds
from .singleflight import SingleFlight
from .staging import Staging
from .store import Store
from .upstream import Upstream

log = logging.getLogger("odx_relay")
RELAY: web.AppKey["Relay"] = web.AppKey("relay")
API_VERSION = "2.2.1"
POST_PROCESSING = ("pc-ept", "cog", "gltf")  # what NodeODX adds to every task's options unless skipPostProcessing


class NotFound(Exception):
    """A task that does not exist, or that this token may not see (the two look the same)."""


@dataclass
class Relay:
    config: RelayConfig
    store: Store
    upstream: Upstream
    registry: NodeRegistry
    staging: Staging
    auth: Auth
    secret: bytes
    replica_id: str = field(default_factory=lambda: secrets.token_hex(6))
    wake_dispatch: asyncio.Event = field(default_factory=asyncio.Event)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    in_flight: SingleFlight = field(default_factory=SingleFlight)
    background: set[asyncio.Task] = field(default_factory=set)

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run `work` in the background, held until it is done (a bare future may be collected mid-way)."""
        job = asyncio.ensure_future(work)
        self.background.add(job)
        job.add_done_callback(self.background.discard)

    def lock(self, uuid: str) -> asyncio.Lock:
        return self.locks.setdefault(uuid, asyncio.Lock())

    def needs(self, task: TaskRecord) -> TaskNeeds:
        return TaskNeeds(task.image_count, estimate_memory_mb(task.image_count, task.options, self.config.memory_table))

    def webhook_url(self, uuid: str, node_id: str) -> str:
        """The URL a node calls when `uuid` ends there. It names the node, so a node the task was taken
        from (failover) cannot speak for it any more."""
        return f"{self.config.callback_base}/_relay/webhook/{uuid}?node={node_id}&sig={self.sign(uuid, node_id)}"

    def sign(self, uuid: str, node_id: str) -> str:
        return hmac.new(self.secret, f"{uuid}:{node_id}".encode(), hashlib.sha256).hexdigest()[:32]

    async def owned_task(self, uuid: str, owner: str) -> TaskRecord:
        task = await self.store.get_task(uuid)
        if task is None or task.owner != owner or task.stage == Stage.UPLOADING:
            raise NotFound(f"{uuid} not found")
        return task

    def relay_side_info(self, task: TaskRecord) -> dict[str, Any]:
        """NodeODX's task info for a task that no node holds (queued, canceled or failed here), shaped as a
        node shapes it for a task it has not started: no processing time yet, its post-processing options."""
        code = {Stage.CANCELED: TaskStatus.CANCELED, Stage.FAILED: TaskStatus.FAILED}.get(
            task.stage, TaskStatus.QUEUED)
        status: dict[str, Any] = {"code": int(code)}
        if task.error:
            status["errorMessage"] = task.error
        info: dict[str, Any] = {"uuid": task.uuid}
        if task.name is not None:
            info["name"] = task.name
        return {**info, "dateCreated": task.created_ms, "processingTime": -1, "status": status,
                "options": self.options_on_node(task), "imagesCount": task.image_count, "progress": 0}

    def options_on_node(self, task: TaskRecord) -> list[dict[str, Any]]:
        """The task's options as a node lists them: NodeODX adds pc-ept, cog and gltf (where it has them)
        unless the task skips post-processing."""
        options = [{"name": k, "value": v} for k, v in task.options.items()]
        if not task.skip_post_processing:
            known = {o["name"] for o in self.registry.options()}
            options += [{"name": name, "value": True} for name in POST_PROCESSING
                        if name in known and name not in task.options]
        return options

    def relay_side_output(self, task: TaskRecord) -> list[str]:
        """Console output of a task no node holds: none while it waits (a node's own output then starts at
        line 0, where a client following the lines expects it), the reason when the relay failed it."""
        return [f"ODX Relay: {task.error}"] if task.stage == Stage.FAILED and task.error else []

    async def record_info(self, task: TaskRecord, info: dict[str, Any]) -> bool:
        """Remember a node's task info; write only when the status changes (info polls stay cheap).
        True if it changed."""
        old = (task.last_info or {}).get("status", {})
        new = info.get("status", {})
        if isinstance(new, dict) and (not isinstance(old, dict) or old.get("code") != new.get("code")):
            task.last_info = info
            code = new.get("code")
            if code in (TaskStatus.FAILED, TaskStatus.COMPLETED, TaskStatus.CANCELED):
                task.ended_ms = task.ended_ms or int(time.time() * 1000)
            else:
                task.ended_ms = None
            await self.store.put_task(task)
            log.info("task status uuid=%s node=%s status=%s", task.uuid, task.node_id, code)
            return True
        return False

    def public_info(self, queued: int, sent: int) -> dict[str, Any]:
        """`/info` summed over online nodes: what the cluster really has, never made-up numbers. `queued`
        tasks wait in the relay; `sent` were committed to a node whose last /info does not count them yet."""
        online = [h for h in self.registry.handles.values() if h.online and h.info]
        infos = [h.info for h in online]
        limits = [i.get("maxImages") for i in infos]
        versions = sorted({str(i.get("version")) for i in infos if i.get("version")},
                          key=lambda v: tuple(int(p) if p.isdigit() else 0 for p in v.split(".")))
        engines = {str(i.get("engine") or "odm") for i in infos}
        handles = list(self.registry.handles.values())
        return {
            "version": versions[0] if versions else API_VERSION,
            "taskQueueCount": sum(int(i.get("taskQueueCount") or 0) for i in infos) + queued + sent,
            "totalMemory": sum(int(i.get("totalMemory") or 0) for i in infos),
            "availableMemory": sum(int(i.get("availableMemory") or 0) for i in infos),
            "cpuCores": sum(int(i.get("cpuCores") or 0) for i in infos),
            "maxImages": None if (not limits or None in limits) else max(limits),
            "maxParallelTasks": sum(int(i.get("maxParallelTasks") or 0) for i in infos),
            "engine": engines.pop() if len(engines) == 1 else "odx",
            "engineVersion": ", ".join(sorted({str(i.get("engineVersion")) for i in infos if i.get("engineVersion")})),
            "relay": {"version": __version__, "nodes": len(handles), "online": len(online),
                      "offline": sum(1 for h in handles if not h.online),
                      "locked": sum(1 for h in handles if h.record.locked), "queued": queued},
        }
