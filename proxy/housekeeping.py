"""The relay's background work: node health each interval, failover of tasks from lost nodes, ends missed
while the relay was down, expiry of abandoned uploads and old inputs, and the loops that run it all.

With several replicas, the one holding the "health" lease asks the nodes and does the housekeeping; the
others take in what it shared through the store.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from shared import endpoints

from .dispatch import dispatch_loop, recover
from .errors import UpstreamError
from .models import Stage
from .state import Relay
from .task_end import ENDED, end_here, learn_info, status_code

log = logging.getLogger("odx_relay.housekeeping")


async def health_round(relay: Relay) -> None:
    """One interval's work: the health lease's holder asks the nodes and tidies up; the others read."""
    was_online = {h.record.id for h in relay.registry.online()}
    if await relay.store.lease("health", relay.replica_id, relay.config.check_interval * 1.5):
        await relay.registry.sync()
        await relay.registry.check_all()
        await fail_over(relay)
        await recover(relay)  # sends cut short by a replica that died (and may not come back)
        await drop_old_inputs(relay)
        await expire_idle_uploads(relay)
    else:
        await relay.registry.sync()
    if {h.record.id for h in relay.registry.online()} - was_online:
        relay.wake_dispatch.set()


async def health_loop(relay: Relay) -> None:
    while True:
        try:
            await health_round(relay)
        except Exception as exc:  # noqa: BLE001  the loop must outlive any round: said in one line, tried again
            log.warning("health round failed: %s: %s", type(exc).__name__, exc)
        await asyncio.sleep(relay.config.check_interval)


async def fail_over(relay: Relay) -> None:
    """Tasks on a node that has been offline past the grace period go back to the relay's queue, to be
    sent again from their staged inputs, under the same uuid, to a node that fits."""
    now = time.time()
    gone = {h.record.id for h in relay.registry.handles.values()
            if not h.online and h.offline_since is not None and now - h.offline_since >= relay.config.failover_after}
    if not gone and not relay.registry.removed:
        return  # the common case: no need to read every task each interval
    relay.registry.removed = False
    for task in await relay.store.tasks_in(Stage.ON_NODE):
        if (task.node_id not in gone and relay.registry.get(task.node_id) is not None) or task.ended_ms:
            continue
        lost_node = task.node_id
        await relay.registry.release(task.uuid)
        if relay.staging.files(task.uuid):
            task.stage, task.node_id, task.last_info = Stage.QUEUED, None, None
            relay.wake_dispatch.set()
            log.warning("failover uuid=%s: node %s offline, task queued again from its staged inputs",
                        task.uuid, lost_node)
            await relay.store.put_task(task)
        else:
            await end_here(relay, task, Stage.FAILED,
                           f"The node running this task ({lost_node}) went offline and the relay no longer "
                           f"keeps the task's inputs, so it cannot be sent elsewhere. Create the task again.")


async def drop_old_inputs(relay: Relay) -> None:
    """Staged inputs of tasks that ended more than `--keep-inputs` ago. Walks the staging folder, which
    holds only tasks still kept, rather than every task ever stored."""
    now_ms = time.time() * 1000
    for uuid in relay.staging.uuids():
        task = await relay.store.get_task(uuid)
        if (task is not None and task.stage != Stage.UPLOADING and task.ended_ms
                and now_ms - task.ended_ms > relay.config.keep_inputs * 1000):
            relay.staging.remove(uuid)
            log.info("staged inputs dropped uuid=%s", uuid)


async def expire_idle_uploads(relay: Relay) -> None:
    """Uploads that were never committed and have been silent for `--upload-idle` seconds: their client gave
    up or crashed. Forget the task and its staged files, as NodeODX cleans up old uploads (it holds no node
    slot: only committed work counts against a node's capacity)."""
    idle_before = time.time() - relay.config.upload_idle
    for task in await relay.store.tasks_in(Stage.UPLOADING):
        folder = relay.staging.folder(task.uuid)
        try:  # the folder changes with each file; a file being written is a hidden `.part`
            last = max([folder.stat().st_mtime] + [p.stat().st_mtime for p in folder.glob(".*.part")])
        except OSError:
            last = task.created_ms / 1000
        if last < idle_before and not relay.locks.busy(task.uuid):
            relay.staging.remove(task.uuid)
            await relay.store.delete_task(task.uuid)
            log.info("upload expired uuid=%s: nothing received for %g s and never committed", task.uuid,
                     relay.config.upload_idle)


async def catch_up(relay: Relay) -> None:
    """After a restart, learn the ends that happened while the relay was down (webhooks it missed)."""
    for task in await relay.store.tasks_in(Stage.ON_NODE):
        handle = relay.registry.get(task.node_id)
        if task.ended_ms or handle is None:
            continue
        try:
            info = await relay.upstream.call(handle.record, "GET", endpoints.task_info(task.uuid))
        except UpstreamError:
            continue
        if isinstance(info, dict) and status_code(info) in ENDED:
            await learn_info(relay, task, info)


@contextlib.asynccontextmanager
async def background_work(relay: Relay) -> AsyncIterator[None]:
    """Settle what a restart left behind, then run the health and dispatch loops until the app stops."""
    await relay.registry.check_all()
    await recover(relay)
    await catch_up(relay)
    loops = [asyncio.ensure_future(health_loop(relay)), asyncio.ensure_future(dispatch_loop(relay))]
    relay.wake_dispatch.set()
    try:
        yield
    finally:
        for job in loops + list(relay.background):
            job.cancel()
        for job in loops:
            with contextlib.suppress(asyncio.CancelledError):
                await job
