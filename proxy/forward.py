"""Sending a task to a node: open it there under the same uuid (with a signed webhook URL of the relay's
own), send the files it lacks, commit, and record that the node holds it. Intake (committing where the
files already went) and dispatch (from the relay's queue) both send through here, so a task reaches a node
one way only.

Crash rules: a file is marked on its way before it is sent, and a node whose upload holds files the relay
cannot name (a send or commit cut off) has its upload discarded and sent again from the start, so no node
ever keeps a file twice. A commit's intent is recorded before the node is asked (`recover` asks the node
after a crash), so a task is never sent to a second node while the first may have it.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from redis.exceptions import RedisError

from shared import endpoints

from .crashpoints import crash_point
from .errors import NoAnswer, UpstreamError
from .models import NodeRecord, Stage, TaskRecord
from .scheduler import TaskNeeds
from .signed_urls import signature
from .state import Relay

log = logging.getLogger("odx_relay.forward")
CLAIM_SECONDS = 30.0


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


def node_webhook_url(relay: Relay, uuid: str, node_id: str) -> str:
    """The URL a node calls when `uuid` ends there. It names the node, so a node the task was taken from
    (failover) cannot speak for it any more."""
    return (f"{relay.config.callback_base}/_relay/webhook/{uuid}?node={node_id}"
            f"&sig={sign(relay, uuid, node_id)}")


def sign(relay: Relay, uuid: str, node_id: str) -> str:
    return signature(relay.secret, uuid, node_id)


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


async def send_file(relay: Relay, task: TaskRecord, node: NodeRecord, name: str, chunks: Any) -> bool:
    """Send one file to the node's upload of `task`; True if the node took it. The file is marked on its way
    first, so that a relay killed before the node's answer is noted knows the node may hold it."""
    relay.staging.mark_sending(task.uuid, name, node.id)
    try:
        result = await relay.upstream.upload(node, task.uuid, name, chunks)
    except NoAnswer:
        raise  # it may or may not be there: the marker stays, and the node's upload starts afresh before commit
    except UpstreamError:
        relay.staging.unsend(task.uuid, name, node.id)  # it answered (HTTP 5xx): it did not keep the file
        raise
    if not (isinstance(result, dict) and result.get("success")):
        relay.staging.unsend(task.uuid, name, node.id)
        return False
    crash_point("mid-upload" if task.stage == Stage.UPLOADING else "mid-dispatch")
    relay.staging.mark_forwarded(task.uuid, name, node.id)
    return True


async def send_missing_files(relay: Relay, task: TaskRecord, node: NodeRecord) -> None:
    """Upload, from staging, every file the node does not have yet."""
    done = relay.staging.forwarded(task.uuid, node.id)
    for path in relay.staging.files(task.uuid):
        if path.name in done:
            continue
        with open(path, "rb") as handle:
            if not await send_file(relay, task, node, path.name, handle):
                raise UpstreamError(f"node {node.id} refused {path.name}")


async def discard_on_node(relay: Relay, task: TaskRecord, node: NodeRecord) -> bool:
    """Make the node drop its upload of this uuid, files and all, so that it can be sent again without a file
    twice: NodeODX's init refuses options that are not JSON and removes `tmp/<uuid>` with them. False if the
    node holds the task committed already (a commit whose answer was lost)."""
    form = aiohttp.FormData({"options": "discard"}, default_to_multipart=True)  # not JSON, on purpose
    said = await relay.upstream.call(node, "POST", endpoints.TASK_NEW_INIT, data=form, headers={"set-uuid": task.uuid})
    if isinstance(said, dict) and str(said.get("error", "")).startswith("Invalid set-uuid"):
        return False
    for _ in range(40):  # NodeODX answers before its folder is gone: wait until an upload there is refused
        probe = aiohttp.FormData({"probe": ""}, default_to_multipart=True)
        said = await relay.upstream.call(node, "POST", endpoints.upload(task.uuid), data=probe)
        if isinstance(said, dict) and "not found" in str(said.get("error", "")):
            break
        await asyncio.sleep(0.05)
    relay.staging.forget_node(task.uuid, node.id)
    log.info("upload discarded on node uuid=%s node=%s", task.uuid, node.id)
    return True


async def commit_on_node(relay: Relay, task: TaskRecord, node: NodeRecord) -> None:
    """Make the node hold exactly the staged files, then commit; UpstreamError unless the node says it took
    this uuid, NoAnswer when the commit itself went unanswered (the caller must ask the node)."""
    if relay.staging.uncertain(task.uuid, node.id):  # files of an earlier attempt the relay cannot name
        if not await discard_on_node(relay, task, node):
            return  # committed there already
        await open_on_node(relay, task, node.id)
    await send_missing_files(relay, task, node)
    try:
        result = await relay.upstream.call(node, "POST", endpoints.commit(task.uuid))
    except UpstreamError:
        relay.staging.unsure_of(task.uuid, node.id)  # NodeODX removes an upload whose commit fails
        raise
    if not (isinstance(result, dict) and result.get("uuid") == task.uuid):
        relay.staging.unsure_of(task.uuid, node.id)
        raise UpstreamError(f"node {node.id} refused commit: {result}")


async def held_by(relay: Relay, node: NodeRecord, uuid: str) -> bool | None:
    """Whether the node holds the task committed: True, False, or None when it cannot be asked now."""
    try:
        info = await relay.upstream.call(node, "GET", endpoints.task_info(uuid))
    except UpstreamError:
        return None
    return isinstance(info, dict) and info.get("uuid") == uuid


async def reserve_slot(relay: Relay, task: TaskRecord, node_id: str, needs: TaskNeeds) -> bool:
    """Hold a slot (and the task's memory) on the node, atomically across replicas; the fair tie-break
    then remembers the node was given work. False if another placement took the last slot first."""
    if not await relay.registry.reserve(node_id, task.uuid, needs.memory_mb):
        return False
    relay.registry.last_assigned[node_id] = time.monotonic()
    return True


async def mark_on_node(relay: Relay, task: TaskRecord, node_id: str, needs: TaskNeeds) -> None:
    """The node took the task: record it (a cancel that came meanwhile is passed on to the node)."""
    # the slot stays held throughout (letting go first would let another replica take it meanwhile); this
    # only updates the memory counted, and keeps the old reservation if the node's numbers moved on
    await relay.registry.reserve(node_id, task.uuid, needs.memory_mb)  # counted until /info shows it
    await relay.store.commit_reservation(task.uuid, time.time())
    fresh = await relay.store.get_task(task.uuid) or task
    if fresh.stage == Stage.CANCELED:  # canceled while it was on its way: cancel it on the node too
        handle = relay.registry.get(node_id)
        if handle is not None:
            with contextlib.suppress(UpstreamError):
                await relay.upstream.call(handle.record, "POST", endpoints.TASK_CANCEL, data={"uuid": task.uuid})
    fresh.stage, fresh.node_id, fresh.forward_node_id = Stage.ON_NODE, node_id, None
    await relay.store.put_task(fresh)
    task.stage, task.node_id, task.forward_node_id = fresh.stage, node_id, None
    log.info("task on node uuid=%s node=%s images=%d", task.uuid, node_id, task.image_count)


def claim_seconds(relay: Relay) -> float:
    """How long a replica's claim on sending a task lasts unless renewed: a few health intervals."""
    return min(CLAIM_SECONDS, max(1.0, 5 * relay.config.check_interval))


async def claim_sending(relay: Relay, uuid: str) -> bool:
    """Only one replica sends or commits a given task; `recover` leaves alone what is claimed."""
    return await relay.store.lease(f"dispatch:{uuid}", relay.replica_id, claim_seconds(relay))


@contextlib.asynccontextmanager
async def renewing_claim(relay: Relay, uuid: str) -> AsyncIterator[None]:
    """Renew the claim while a send lasts, so that recovery never takes a long send for an abandoned one."""
    async def renew() -> None:
        while True:
            await asyncio.sleep(claim_seconds(relay) / 3)
            with contextlib.suppress(RedisError):
                await claim_sending(relay, uuid)

    keeper = asyncio.ensure_future(renew())
    try:
        yield
    finally:
        keeper.cancel()
