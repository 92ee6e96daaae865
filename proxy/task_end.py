"""A task's end, however the relay hears of it, and the client's webhook called exactly once per run.

The relay learns that a task ended from the node's webhook, from a client polling its info, from the
catch-up after a restart, or it ends the task itself (refused in its queue, lost with its node). Every
one of those paths comes here, and the store's `claim_once` lets exactly one of them, on one replica,
call the client, as a NodeODX node calls it once when a task ends (again after a restart).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp

from shared.types import TaskStatus

from . import archiving
from .crashpoints import crash_point
from .errors import BadRequest
from .models import Stage, TaskRecord
from .outbound import WEBHOOK, connector, refused
from .replies import relay_side_info
from .split_merge import is_parent, remove_submodels
from .state import Relay

log = logging.getLogger("odx_relay.task_end")
ENDED = (TaskStatus.FAILED, TaskStatus.COMPLETED, TaskStatus.CANCELED)
ATTEMPTS = 3


def status_code(info: Any) -> int | None:
    status = info.get("status") if isinstance(info, dict) else None
    return status.get("code") if isinstance(status, dict) else None


async def learn_info(relay: Relay, task: TaskRecord, info: dict[str, Any]) -> None:
    """A node's word on a task it holds: remembered; on an end, the node's slot is freed and the client told.

    The end's effects come before the end is recorded, each done once (across replicas) by a claim: a relay
    killed in between finds the task still open on start-up, asks its node, and finishes the rest."""
    if status_code(info) in ENDED and task.ended_ms is None:
        crash_point("at-task-end")
        if await relay.store.claim_once(task.uuid, f"left:{task.runs}"):  # one replica counts the slot free
            await relay.registry.task_left(task.node_id, task.uuid)  # now, so the queue need not wait for a check
        relay.wake_dispatch.set()
        await notify_client(relay, task, info)
        if is_parent(task):
            relay.spawn(remove_submodels(relay, task))
        # (a submodel's results go to its parent's node, which removes it then: nothing to keep or describe here)
        if status_code(info) == TaskStatus.COMPLETED and task.parent_uuid is None:
            if await relay.store.claim_once(task.uuid, f"facts-due:{task.runs}"):  # once: it drops older facts
                await relay.store.mark_facts_due(task.uuid)  # kept until described: the backfill finishes a cut step
            await archiving.announce(relay, task)  # one replica copies its outputs, then reads their facts
    await record_info(relay, task, info)


async def record_info(relay: Relay, task: TaskRecord, info: dict[str, Any]) -> bool:
    """Remember a node's task info; write only when the status changes (info polls stay cheap).
    True if it changed."""
    old = (task.last_info or {}).get("status", {})
    new = info.get("status", {})
    if not isinstance(new, dict) or (isinstance(old, dict) and old.get("code") == new.get("code")):
        return False
    task.last_info = info
    task.ended_ms = (task.ended_ms or int(time.time() * 1000)) if new.get("code") in ENDED else None
    await relay.store.put_task(task)
    log.info("task status uuid=%s node=%s status=%s", task.uuid, task.node_id, new.get("code"))
    return True


async def end_here(relay: Relay, task: TaskRecord, stage: Stage, error: str = "") -> None:
    """End a task that no node holds (refused in the relay's queue, lost with its node)."""
    task.stage, task.error, task.ended_ms = stage, error, int(time.time() * 1000)
    await relay.store.put_task(task)
    log.warning("task %s uuid=%s: %s", stage.value, task.uuid, error)
    if is_parent(task):
        relay.spawn(remove_submodels(relay, task))
    await notify_client(relay, task, relay_side_info(relay, task))


async def notify_client(relay: Relay, task: TaskRecord, info: dict[str, Any]) -> None:
    """Call the task's webhook, unless this run's end was announced already (by any path or replica)."""
    if not task.webhook or task.notified_run == task.runs:
        return
    if await relay.store.claim_once(task.uuid, f"webhook:{task.runs}"):
        relay.spawn(call_client_webhook(relay, task.uuid, task.webhook, info))
    task.notified_run = task.runs
    await relay.store.put_task(task)


async def call_client_webhook(relay: Relay, uuid: str, url: str, info: dict) -> None:
    """POST the task's info as NodeODX does; retried a few times while the receiver fails or is away.

    The URL was checked when the task was created; it is checked again now (the operator may have taken
    `--webhook-allow-private` away since), its name is resolved to public addresses only (a name that
    pointed elsewhere at creation gains nothing: DNS rebinding), and redirects are not followed."""
    allow_private = relay.config.webhook_allow_private
    try:
        target = WEBHOOK.checked(url, allow_private)
    except BadRequest as exc:
        log.warning("webhook not called uuid=%s: %s", uuid, exc)
        return
    async with aiohttp.ClientSession(connector=connector(allow_private)) as session:
        for attempt in range(ATTEMPTS):
            try:
                async with session.post(target, json=info, allow_redirects=False,
                                        timeout=aiohttp.ClientTimeout(total=15)) as resp:
                    log.info("webhook called uuid=%s status=%d", uuid, resp.status)
                    if resp.status < 500:
                        return
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:  # ValueError: an unusable URL
                if refused(exc):
                    log.warning("webhook not called uuid=%s: %s resolves to internal addresses only (an operator "
                                "can allow those with --webhook-allow-private)", uuid, target.host)
                    return
                log.warning("webhook failed uuid=%s attempt=%d: %s: %s", uuid, attempt + 1, type(exc).__name__,
                            str(exc)[:200])
            await asyncio.sleep(2 ** attempt)
