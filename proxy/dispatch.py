"""The relay's queue: committed tasks that wait for a node with room, sent from the staging folder.

Woken by a commit, by a task's end (webhook), by a node coming online, and at every health interval.
Tasks are considered oldest first, split-merge submodels ahead of all others (their parent holds a slot
while it waits for them); a task that does not fit now does not block a smaller one behind it (backfill),
which shortens the makespan without starving anyone for long since every end wakes the loop again.
"""
from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from .errors import NoAnswer, UpstreamError
from .forward import claim_sending, commit_on_node, held_by, mark_on_node, open_on_node, renewing_claim, reserve_slot
from .models import Stage, TaskRecord
from .scheduler import Outcome, place
from .split_merge import dispatch_order, slots_to_keep
from .state import Relay
from .task_end import end_here

log = logging.getLogger("odx_relay.dispatch")


async def dispatch_once(relay: Relay, excluded: dict[str, set[str]]) -> int:
    """Place every queued task that fits now; return how many were sent."""
    sent = 0
    for task in sorted(await relay.store.tasks_in(Stage.QUEUED), key=dispatch_order):
        sent += await dispatch_task(relay, task, excluded)
    return sent


async def dispatch_task(relay: Relay, task: TaskRecord, excluded: dict[str, set[str]]) -> bool:
    """Place one queued task if it fits now (and send it); True if it went to a node."""
    states = [s for s in await relay.registry.states() if s.id not in excluded.get(task.uuid, set())]
    decision = place(relay.needs(task), states, relay.registry.last_assigned, await slots_to_keep(relay, task))
    if decision.outcome == Outcome.REFUSE:  # it ends here, never to reach a node
        await end_here(relay, task, Stage.FAILED, decision.reason)
        return False
    if decision.outcome == Outcome.WAIT:
        return False
    if not await claim(relay, task.uuid):
        return False  # another replica is sending it
    if not await reserve_slot(relay, task, decision.node_id, relay.needs(task)):
        return False  # another replica took the last slot first: next round
    task.stage, task.node_id = Stage.DISPATCHING, decision.node_id
    async with relay.locks.hold(task.uuid), renewing_claim(relay, task.uuid):  # `recover` leaves it alone
        await relay.store.put_task(task)  # the intent, before the node hears of it
        sent_now = await send_to_node(relay, task, decision.node_id)
    if not sent_now:
        excluded.setdefault(task.uuid, set()).add(decision.node_id)
        if len(excluded[task.uuid]) >= len(relay.registry.handles):
            excluded.pop(task.uuid)  # every node tried once: start over next round
        return False
    excluded.pop(task.uuid, None)
    return True


async def dispatch_now(relay: Relay, uuid: str) -> None:
    """Place a submodel the moment it is committed if a node has room (on fresh node numbers): ODM reads its
    info right after the commit, and a submodel answered QUEUED is taken back and processed on the parent's
    node instead, so waiting for the next dispatch round would lose the cluster's help."""
    task = await relay.store.get_task(uuid)
    if task is None or task.stage != Stage.QUEUED:
        return
    await relay.registry.check_all()
    if await dispatch_task(relay, task, {}):
        return
    async with relay.locks.hold(uuid):  # the dispatch loop was first: its send ends before the commit's answer
        task = await relay.store.get_task(uuid)
    if task is not None and task.stage == Stage.QUEUED:
        log.info("submodel queued, no node has room now uuid=%s parent=%s", uuid, task.parent_uuid)


async def claim(relay: Relay, uuid: str) -> bool:
    """Only one replica dispatches a given task: a claim on it, then a fresh look at its stage."""
    if not await claim_sending(relay, uuid):
        return False
    fresh = await relay.store.get_task(uuid)
    return fresh is not None and fresh.stage == Stage.QUEUED


async def send_to_node(relay: Relay, task: TaskRecord, node_id: str) -> bool:
    """Init, upload from staging and commit on `node_id`. On failure the task goes back to the queue, unless
    the commit went unanswered and the node cannot be asked: then `recover` asks it later."""
    handle = relay.registry.get(node_id)
    try:
        if handle is None:
            raise UpstreamError("node was removed")
        # init again under the same uuid: a node that has part of the upload (it was the forward node, or
        # an earlier attempt failed half way) keeps it, so only the files it lacks are sent
        await open_on_node(relay, task, node_id)
        await commit_on_node(relay, task, handle.record)
    except UpstreamError as exc:
        held = await held_by(relay, handle.record, task.uuid) if isinstance(exc, NoAnswer) and handle else False
        if held is None:
            log.warning("dispatch unsettled uuid=%s node=%s: %s; the node is asked again later", task.uuid,
                        node_id, exc)
            return False
        if not held:
            await back_to_queue(relay, task.uuid, Stage.DISPATCHING)
            log.warning("dispatch failed uuid=%s node=%s: %s", task.uuid, node_id, exc)
            return False
    await mark_on_node(relay, task, node_id, relay.needs(task))
    log.info("task dispatched uuid=%s node=%s", task.uuid, node_id)
    return True


async def back_to_queue(relay: Relay, uuid: str, *stages: Stage) -> None:
    """A send that did not reach the node: its slot is given back and the task waits again (if it is still
    in one of `stages`: a cancel that came meanwhile stands)."""
    await relay.registry.release(uuid)
    fresh = await relay.store.get_task(uuid)
    if fresh is not None and fresh.stage in stages:
        fresh.stage, fresh.node_id, fresh.forward_node_id = Stage.QUEUED, None, None
        await relay.store.put_task(fresh)
        relay.wake_dispatch.set()


async def recover(relay: Relay) -> None:
    """At start, and each interval: a task caught mid-send by a relay's death (from its queue, or committed at
    intake) is on its node already, or back in the queue: the node that was asked says which. A node that
    cannot be asked now is asked again next time (failover takes the task once the node is gone for good):
    sending it elsewhere meanwhile could run it twice.

    Only tasks whose sender's claim ran out (it died), or that this replica's previous run was sending (its
    id outlives a restart): another live replica may be sending one right now, and renews its claim."""
    for task in await relay.store.tasks_in(Stage.DISPATCHING, Stage.COMMITTING):
        if relay.locks.busy(task.uuid) or not await claim_sending(relay, task.uuid):
            continue  # being sent now, here or by another replica
        task = await relay.store.get_task(task.uuid)  # as it is now that the claim is ours
        if task is None or task.stage not in (Stage.DISPATCHING, Stage.COMMITTING):
            continue
        handle = relay.registry.get(task.node_id)
        held = await held_by(relay, handle.record, task.uuid) if handle is not None else False
        if held is None:
            continue
        if held:
            await mark_on_node(relay, task, task.node_id, relay.needs(task))
        else:
            if handle is not None:
                relay.staging.unsure_of(task.uuid, handle.record.id)  # what it holds of the upload is unknown
            await back_to_queue(relay, task.uuid, task.stage)
        log.info("recovered uuid=%s: %s", task.uuid, "on its node" if held else "queued again")


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
