"""Task intake: `/task/new/init`, `/task/new/upload/{uuid}`, `/task/new/commit/{uuid}` and `/task/new`.

Every file is streamed to the staging folder in bounded chunks. When a node with a free slot is
chosen at init, each file is forwarded to it *while* it is being written, so that commit costs what a
commit costs on the node; otherwise (cluster full, node failed mid-way) the task waits in the relay's
queue and the dispatcher sends it from the staging folder. Staged inputs stay until the task ends.
"""
from __future__ import annotations

import json
import logging
import time
import uuid as uuidlib
from typing import Any, AsyncIterator

import aiohttp
from aiohttp import BodyPartReader, MultipartReader, web

from shared.client import count_images
from shared.options import MIN_IMAGES, option_is_true, parse_options_field, validate_options

from .models import Stage, TaskRecord
from .relay import Relay
from .scheduler import Outcome, TaskNeeds, place, refusal
from .staging import safe_filename, valid_uuid
from .upstream import UpstreamError

log = logging.getLogger("odx_relay.intake")
CHUNK = 256 * 1024


class IntakeError(Exception):
    """Answered to the client as NodeODX does: HTTP 200 with {"error": message}."""


def read_fields(fields: dict[str, str], relay: Relay) -> dict[str, Any]:
    """The init fields, checked: options parse and validate against what the nodes accept."""
    try:
        options = parse_options_field(fields.get("options"))
    except ValueError as exc:
        raise IntakeError(f"Invalid options: {exc}") from None
    available = relay.registry.options()
    if available:
        problems = validate_options(available, options)
        if problems:
            raise IntakeError("Invalid option " + "; ".join(str(p) for p in problems))
    outputs = None
    if fields.get("outputs"):
        try:
            outputs = json.loads(fields["outputs"])
            assert isinstance(outputs, list) and all(isinstance(o, str) for o in outputs)
        except (ValueError, AssertionError):
            raise IntakeError("Invalid outputs: expected a JSON list of paths") from None
    created = fields.get("dateCreated")
    try:
        created_ms = int(float(created)) if created else int(time.time() * 1000)
    except ValueError:
        raise IntakeError(f"Invalid dateCreated: {created!r}") from None
    return {"name": fields.get("name") or "", "options": options, "webhook": fields.get("webhook") or "",
            "skip_post_processing": option_is_true(fields.get("skipPostProcessing", "false")),
            "outputs": outputs, "created_ms": created_ms}


async def choose_uuid(request: web.Request, relay: Relay) -> str:
    wanted = request.headers.get("set-uuid")
    if wanted is None:
        return str(uuidlib.uuid4())
    if not valid_uuid(wanted) or await relay.store.get_task(wanted.lower()) is not None:
        raise IntakeError(f"Invalid set-uuid: {wanted}")
    return wanted.lower()


def node_fields(task: TaskRecord, relay: Relay) -> dict[str, str]:
    """The init form sent to a node: the client's fields, with the relay's webhook in place of theirs."""
    fields = {"name": task.name, "options": json.dumps([{"name": k, "value": v} for k, v in task.options.items()]),
              "dateCreated": str(task.created_ms), "webhook": relay.webhook_url(task.uuid)}
    if task.skip_post_processing:
        fields["skipPostProcessing"] = "true"
    if task.outputs:
        fields["outputs"] = json.dumps(task.outputs)
    return fields


async def node_init(relay: Relay, task: TaskRecord, node_id: str) -> None:
    """Open the task on a node under the same uuid; raise UpstreamError if the node will not."""
    handle = relay.registry.get(node_id)
    if handle is None:
        raise UpstreamError("node was removed")
    form = aiohttp.FormData(node_fields(task, relay))
    result = await relay.upstream.call(handle.record, "POST", "/task/new/init", data=form,
                                       headers={"set-uuid": task.uuid})
    if not (isinstance(result, dict) and result.get("uuid") == task.uuid):
        raise UpstreamError(f"node {node_id} refused init: {result.get('error') if isinstance(result, dict) else result}")


async def init_task(relay: Relay, uuid: str, owner: str, fields: dict[str, Any]) -> TaskRecord:
    """Create the record and staging folder; reserve a free node now if there is one."""
    task = TaskRecord(uuid=uuid, owner=owner, **fields)
    relay.staging.create(uuid)
    decision = place(TaskNeeds(None, 0), await relay.registry.states(), relay.registry.last_assigned)
    if decision.outcome == Outcome.PLACE and await relay.registry.reserve(decision.node_id, uuid, 0):
        try:
            await node_init(relay, task, decision.node_id)
            task.forward_node_id = decision.node_id
            relay.registry.last_assigned[decision.node_id] = time.monotonic()
        except UpstreamError as exc:
            await relay.registry.release(uuid)
            log.warning("init forward failed uuid=%s node=%s: %s", uuid, decision.node_id, exc)
    await relay.store.put_task(task)
    log.info("task init uuid=%s forward_node=%s", uuid, task.forward_node_id)
    return task


async def _tee(part: BodyPartReader, handle) -> AsyncIterator[bytes]:
    while True:
        chunk = await part.read_chunk(CHUNK)
        if not chunk:
            return
        handle.write(chunk)
        yield chunk


async def stage_part(relay: Relay, task: TaskRecord, part: BodyPartReader, forward: bool) -> str:
    """Write one uploaded file to staging (and to the task's node at the same time when `forward`)."""
    name = safe_filename(part.filename)
    if name is None:
        raise IntakeError(f"Invalid file name: {part.filename!r}")
    partial = relay.staging.partial(task.uuid, name)
    forwarded = False
    with open(partial, "wb") as handle:
        if forward:
            node = relay.registry.get(task.forward_node_id)
            try:
                if node is None:
                    raise UpstreamError("node was removed")
                result = await relay.upstream.upload(node.record, task.uuid, name, _tee(part, handle))
                forwarded = isinstance(result, dict) and bool(result.get("success"))
            except UpstreamError as exc:
                log.warning("forward failed uuid=%s file=%s: %s", task.uuid, name, exc)
        while chunk := await part.read_chunk(CHUNK):  # whatever the node did not take
            handle.write(chunk)
    partial.replace(relay.staging.folder(task.uuid) / name)
    if forwarded:
        relay.staging.mark_forwarded(task.uuid, name, task.forward_node_id)
    return name


async def upload_files(relay: Relay, task: TaskRecord, reader: MultipartReader) -> list[str]:
    names = []
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "images" and part.filename is not None:
            names.append(await stage_part(relay, task, part, forward=task.forward_node_id is not None))
        else:
            await part.release()
    return names


async def commit_task(relay: Relay, task: TaskRecord) -> None:
    """Count, check limits, then commit on the forward node or put the task in the relay's queue."""
    files = relay.staging.files(task.uuid)
    task.image_count = count_images(files)
    if not files:
        raise IntakeError("Need at least 1 file.")
    needs = relay.needs(task)
    reason = refusal(needs, await relay.registry.states())
    if task.image_count < MIN_IMAGES:
        reason = f"Not enough images: {task.image_count} image(s) uploaded, at least {MIN_IMAGES} are needed."
    if reason:
        await forget(relay, task)
        log.info("task refused uuid=%s: %s", task.uuid, reason)
        raise IntakeError(reason)
    if task.forward_node_id and await commit_on_forward_node(relay, task, needs):
        return
    await relay.registry.release(task.uuid)
    task.stage, task.forward_node_id = Stage.QUEUED, None
    await relay.store.put_task(task)
    relay.wake_dispatch.set()
    log.info("task queued uuid=%s images=%d memory_mb=%d", task.uuid, task.image_count, needs.memory_mb)


async def commit_on_forward_node(relay: Relay, task: TaskRecord, needs: TaskNeeds) -> bool:
    handle = relay.registry.get(task.forward_node_id)
    if handle is None or not handle.online:
        return False
    state = next(s for s in await relay.registry.states() if s.id == handle.record.id)
    fits = ((state.max_images is None or task.image_count <= state.max_images)
            and (state.headroom_mb is None or needs.memory_mb <= state.headroom_mb))
    if not fits:
        log.info("forward node no longer fits uuid=%s node=%s", task.uuid, handle.record.id)
        return False
    try:
        await send_missing_files(relay, task, handle.record)
        result = await relay.upstream.call(handle.record, "POST", f"/task/new/commit/{task.uuid}")
    except UpstreamError as exc:
        log.warning("commit forward failed uuid=%s node=%s: %s", task.uuid, handle.record.id, exc)
        return False
    if not (isinstance(result, dict) and result.get("uuid") == task.uuid):
        log.warning("node refused commit uuid=%s node=%s: %s", task.uuid, handle.record.id, result)
        return False
    await mark_on_node(relay, task, handle.record.id, needs)
    return True


async def send_missing_files(relay: Relay, task: TaskRecord, node) -> None:
    """Upload, from staging, every file the node does not have yet."""
    done = relay.staging.forwarded(task.uuid, node.id)
    for path in relay.staging.files(task.uuid):
        if path.name in done:
            continue
        with open(path, "rb") as handle:
            result = await relay.upstream.upload(node, task.uuid, path.name, handle)
        if not (isinstance(result, dict) and result.get("success")):
            raise UpstreamError(f"node refused {path.name}: {result}")
        relay.staging.mark_forwarded(task.uuid, path.name, node.id)


async def mark_on_node(relay: Relay, task: TaskRecord, node_id: str, needs: TaskNeeds) -> None:
    await relay.registry.release(task.uuid)
    await relay.registry.reserve(node_id, task.uuid, needs.memory_mb)  # counted until /info shows it
    await relay.store.commit_reservation(task.uuid, time.time())
    task.stage, task.node_id, task.forward_node_id = Stage.ON_NODE, node_id, None
    await relay.store.put_task(task)
    log.info("task on node uuid=%s node=%s images=%d", task.uuid, node_id, task.image_count)


async def forget(relay: Relay, task: TaskRecord) -> None:
    await relay.registry.release(task.uuid)
    relay.staging.remove(task.uuid)
    await relay.store.delete_task(task.uuid)
