"""Sending a task to a node: open it there under the same uuid, send the files it lacks, commit, and record
that the node holds it. Intake (committing where the files already went) and dispatch (from the relay's
queue) both send through here, so a task reaches a node one way only.
"""
from __future__ import annotations

import json
import logging
import time

import aiohttp

from shared import endpoints

from .crashpoints import crash_point
from .errors import UpstreamError
from .models import NodeRecord, Stage, TaskRecord
from .scheduler import TaskNeeds
from .state import Relay
from .webhooks import node_webhook_url

log = logging.getLogger("odx_relay.forward")


def node_fields(relay: Relay, task: TaskRecord, node_id: str) -> dict[str, str]:
    """The init form sent to a node: the client's fields, with the relay's webhook in place of theirs."""
    fields = {"options": json.dumps([{"name": k, "value": v} for k, v in task.options.items()]),
              "dateCreated": str(task.created_ms), "webhook": node_webhook_url(relay, task.uuid, node_id)}
    if task.name is not None:
        fields["name"] = task.name
    if task.skip_post_processing:
        fields["skipPostProcessing"] = "true"
    if task.outputs:
        fields["outputs"] = json.dumps(task.outputs)
    return fields


async def open_on_node(relay: Relay, task: TaskRecord, node_id: str) -> None:
    """Open the task on a node under the same uuid; raise UpstreamError if the node will not."""
    handle = relay.registry.get(node_id)
    if handle is None:
        raise UpstreamError("node was removed")
    # multipart, never url-encoded: NodeODX reads init fields with multer().none() and silently drops the rest
    form = aiohttp.FormData(node_fields(relay, task, node_id), default_to_multipart=True)
    result = await relay.upstream.call(handle.record, "POST", endpoints.TASK_NEW_INIT, data=form,
                                       headers={"set-uuid": task.uuid})
    if not (isinstance(result, dict) and result.get("uuid") == task.uuid):
        said = result.get("error") if isinstance(result, dict) else result
        raise UpstreamError(f"node {node_id} refused init: {said}")


async def send_missing_files(relay: Relay, task: TaskRecord, node: NodeRecord) -> None:
    """Upload, from staging, every file the node does not have yet."""
    done = relay.staging.forwarded(task.uuid, node.id)
    for path in relay.staging.files(task.uuid):
        if path.name in done:
            continue
        with open(path, "rb") as handle:
            result = await relay.upstream.upload(node, task.uuid, path.name, handle)
        if not (isinstance(result, dict) and result.get("success")):
            raise UpstreamError(f"node refused {path.name}: {result}")
        crash_point("mid-dispatch")
        relay.staging.mark_forwarded(task.uuid, path.name, node.id)


async def commit_on_node(relay: Relay, task: TaskRecord, node: NodeRecord) -> None:
    """Send what the node lacks, then commit; UpstreamError unless the node says it took this uuid."""
    await send_missing_files(relay, task, node)
    result = await relay.upstream.call(node, "POST", endpoints.commit(task.uuid))
    if not (isinstance(result, dict) and result.get("uuid") == task.uuid):
        raise UpstreamError(f"node {node.id} refused commit: {result}")


async def reserve_slot(relay: Relay, task: TaskRecord, node_id: str, needs: TaskNeeds) -> bool:
    """Hold a slot (and the task's memory) on the node, atomically across replicas; the fair tie-break
    then remembers the node was given work. False if another placement took the last slot first."""
    if not await relay.registry.reserve(node_id, task.uuid, needs.memory_mb):
        return False
    relay.registry.last_assigned[node_id] = time.monotonic()
    return True


async def mark_on_node(relay: Relay, task: TaskRecord, node_id: str, needs: TaskNeeds) -> None:
    # the slot stays held throughout (letting go first would let another replica take it meanwhile); this
    # only updates the memory counted, and keeps the old reservation if the node's numbers moved on
    await relay.registry.reserve(node_id, task.uuid, needs.memory_mb)  # counted until /info shows it
    await relay.store.commit_reservation(task.uuid, time.time())
    task.stage, task.node_id, task.forward_node_id = Stage.ON_NODE, node_id, None
    await relay.store.put_task(task)
    log.info("task on node uuid=%s node=%s images=%d", task.uuid, node_id, task.image_count)
