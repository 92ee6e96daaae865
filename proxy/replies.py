"""Replies shaped as NodeODX shapes them for what no single node can answer: a task no node holds yet
(queued, canceled or failed in the relay) and `/info` for the whole cluster."""
from __future__ import annotations

from typing import Any

from shared.types import TaskStatus

from . import __version__
from .models import Stage, TaskRecord
from .state import Relay

API_VERSION = "2.2.1"
POST_PROCESSING = ("pc-ept", "cog", "gltf")  # what NodeODX adds to every task's options unless skipPostProcessing


def relay_side_info(relay: Relay, task: TaskRecord) -> dict[str, Any]:
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
            "options": options_on_node(relay, task), "imagesCount": task.image_count, "progress": 0}


def options_on_node(relay: Relay, task: TaskRecord) -> list[dict[str, Any]]:
    """The task's options as a node lists them: NodeODX adds pc-ept, cog and gltf (where it has them)
    unless the task skips post-processing."""
    options = [{"name": k, "value": v} for k, v in task.options.items()]
    if not task.skip_post_processing:
        known = {o["name"] for o in relay.registry.options()}
        options += [{"name": name, "value": True} for name in POST_PROCESSING
                    if name in known and name not in task.options]
    return options


def relay_side_output(task: TaskRecord) -> list[str]:
    """Console output of a task no node holds: none while it waits (a node's own output then starts at
    line 0, where a client following the lines expects it), the reason when the relay failed it."""
    return [f"ODX Relay: {task.error}"] if task.stage == Stage.FAILED and task.error else []


def public_info(relay: Relay, queued: int, sent: int) -> dict[str, Any]:
    """`/info` summed over online nodes: what the cluster really has, never made-up numbers. `queued`
    tasks wait in the relay; `sent` were committed to a node whose last /info does not count them yet."""
    online = [h for h in relay.registry.handles.values() if h.online and h.info]
    infos = [h.info for h in online]
    limits = [i.get("maxImages") for i in infos]
    versions = sorted({str(i.get("version")) for i in infos if i.get("version")},
                      key=lambda v: tuple(int(p) if p.isdigit() else 0 for p in v.split(".")))
    engines = {str(i.get("engine") or "odm") for i in infos}
    handles = list(relay.registry.handles.values())
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
