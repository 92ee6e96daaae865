"""The relay's queue: committed tasks that wait for a node with room, sent from the staging folder.

Woken by a commit, by a task's end (webhook), by a node coming online, and at every health interval.
Tasks are considered oldest first; a task that does not fit now does not block a smaller one behind
it (backfill), which shortens the makespan without starving anyone for long since every end wakes
the loop again.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from redis.exceptions import RedisError

from shared import endpoints

from .errors import UpstreamError
from .forward import commit_on_node, mark_on_node, open_on_node, reserve_slot
from .models import Stage, TaskRecord
from .scheduler import Outcome, place
from .state import Relay
from .task_end import end_here

log = logging.getLogger("odx_relay.dispatch")
DISPATCH_LEASE_SECONDS = 30.0


def dispatch_lease(relay: Relay) -> float:
    """How long a replica's claim on sending a task lasts unless renewed: a few health intervals."""
    return min(DISPATCH_LEASE_SECONDS, max(1.0, 5 * relay.config.check_interval))


async def keep_claim(relay: Relay, uuid: str) -> None:
    """Renew the claim while a send lasts, so that recovery never takes a long send for an abandoned one."""
    seconds = dispatch_lease(relay)
    while True:
        await asyncio.sleep(seconds / 3)
        with contextlib.suppress(RedisError):
            await relay.store.lease(f"dispatch:{uuid}", relay.replica_id, seconds)


async def dispatch_once(relay: Relay, excluded: dict[str, set[str]]) -> int:
    """Place every queued task that fits now; return how many were sent."""
    sent = 0
    for task in await relay.store.tasks_in(Stage.QUEUED):
        states = [s for s in await relay.registry.states() if s.id not in excluded.get(task.uuid, set())]
        decision = place(relay.needs(task), states, relay.registry.last_assigned)
        if decision.outcome == Outcome.REFUSE:  # it ends here, never to reach a node
            await end_here(relay, task, Stage.FAILED, decision.reason)
            continue
        if decision.outcome == Outcome.WAIT:
            continue
        if not await claim(relay, task.uuid):
            continue  # another replica is sending it
        if not await reserve_slot(relay, task, decision.node_id, relay.needs(task)):
            continue  # another replica took the last slot first: next round
        task.stage, task.node_id = Stage.DISPATCHING, decision.node_id
        async with relay.locks.hold(task.uuid):  # `recover` leaves alone what this replica is sending
            keeper = asyncio.ensure_future(keep_claim(relay, task.uuid))
            try:
                await relay.store.put_task(task)
                sent_now = await send_to_node(relay, task, decision.node_id)
            finally:
                keeper.cancel()
        if not sent_now:
            excluded.setdefault(task.uuid, set()).add(decision.node_id)
            if len(excluded[task.uuid]) >= len(relay.registry.handles):
                excluded.pop(task.uuid)  # every node tried once: start over next round
        else:
            excluded.pop(task.uuid, None)
            sent += 1
    return sent


async def claim(relay: Relay, uuid: str) -> bool:
    """Only one replica dispatches a given task: a lease on it, then a fresh look at its stage."""
    if not await relay.store.lease(f"dispatch:{uuid}", relay.replica_id, dispatch_lease(relay)):
        return False
    fresh = await relay.store.get_task(uuid)
    return fresh is not None and fresh.stage == Stage.QUEUED


async def send_to_node(relay: Relay, task: TaskRecord, node_id: str) -> bool:
    """Init, upload from staging and commit on `node_id`; on failure put the task back in the queue."""
    handle = relay.registry.get(node_id)
    try:
        if handle is None:
            raise UpstreamError("node was removed")
        # init again under the same uuid: a node that has part of the upload (it was the forward node, or
        # an earlier attempt failed half way) keeps it, so only the files it lacks are sent
        await open_on_node(relay, task, node_id)
        await commit_on_node(relay, task, handle.record)
    except UpstreamError as exc:
        await relay.registry.release(task.uuid)
        fresh = await relay.store.get_task(task.uuid)
        if fresh is not None and fresh.stage == Stage.DISPATCHING:
            fresh.stage, fresh.node_id = Stage.QUEUED, None
            await relay.store.put_task(fresh)
        log.warning("dispatch failed uuid=%s node=%s: %s", task.uuid, node_id, exc)
        return False
    fresh = await relay.store.get_task(task.uuid) or task
    if fresh.stage == Stage.CANCELED:  # canceled while it was on its way: cancel it on the node too
        await relay.upstream.call(handle.record, "POST", endpoints.TASK_CANCEL, data={"uuid": task.uuid})
    await mark_on_node(relay, fresh, node_id, relay.needs(fresh))
    log.info("task dispatched uuid=%s node=%s", task.uuid, node_id)
    return True


async def recover(relay: Relay) -> None:
    """At start, and each interval: a task caught mid-dispatch by a relay's death is either on its node
    already or back in the queue. The slot held for the send is settled or given back.

    Only tasks whose sender's claim ran out (it died), or that this replica's previous run was sending (its
    id outlives a restart): another live replica may be sending one right now, and renews its claim."""
    for task in await relay.store.tasks_in(Stage.DISPATCHING):
        if relay.locks.busy(task.uuid):
            continue  # this replica is sending it now
        if not await relay.store.lease(f"dispatch:{task.uuid}", relay.replica_id, dispatch_lease(relay)):
            continue
        task = await relay.store.get_task(task.uuid)  # as it is now that the claim is ours
        if task is None or task.stage != Stage.DISPATCHING:
            continue
        handle = relay.registry.get(task.node_id)
        info = None
        if handle is not None:
            try:
                info = await relay.upstream.call(handle.record, "GET", endpoints.task_info(task.uuid))
            except UpstreamError:
                info = None
        if isinstance(info, dict) and info.get("uuid") == task.uuid:
            task.stage = Stage.ON_NODE
            await relay.store.commit_reservation(task.uuid, time.time())
        else:
            task.stage, task.node_id = Stage.QUEUED, None
            await relay.registry.release(task.uuid)
        await relay.store.put_task(task)
        log.info("recovered uuid=%s stage=%s", task.uuid, task.stage.value)


async def dispatch_loop(relay: Relay) -> None:
    excluded: dict[str, set[str]] = {}
    while True:
        try:
            await asyncio.wait_for(relay.wake_dispatch.wait(), timeout=relay.config.check_interval)
        except TimeoutError:
            pass
        relay.wake_dispatch.clear()
        try:
            if await relay.store.tasks_in(Stage.QUEUED):
                await relay.registry.check_all()  # fresh numbers before placing
                await dispatch_once(relay, excluded)
        except RedisError as exc:
            log.warning("dispatch round skipped, state store unreachable: %s", type(exc).__name__)
        except Exception:  # the loop must outlive any one bad round
            log.exception("dispatch round failed")
