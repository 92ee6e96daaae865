"""The relay's background work: node health each interval, failover of tasks from lost nodes, ghosts laid
to rest on nodes that come back, ends missed while the relay was down, expiry of abandoned uploads and old
inputs, archives left unfinished and results past their retention, the backfill of completed tasks' result
facts, and the loops that run it all.

With several replicas, the one holding the "health" lease asks the nodes and does the housekeeping; the
others take in what it shared through the store. Each round reads the store's indexes (a node's unfinished
tasks, its ghosts), never every task a long-running relay holds: a round must not hold up the event loop.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from shared import endpoints

from .archiving import expire_results, finish_archives
from .dispatch import dispatch_loop, recover
from .errors import UpstreamError
from .forward import claim_sending
from .intake import forget
from .models import NodeRecord, Stage, TaskRecord
from .result_facts import backfill_facts
from .results import ResultsError
from .split_merge import is_parent, remove_submodels
from .state import Relay
from .store import ON_NODE_STAGES, open_on
from .task_end import ENDED, end_here, learn_info, status_code

log = logging.getLogger("odx_relay.housekeeping")


async def health_round(relay: Relay) -> None:
    """One interval's work: the health lease's holder asks the nodes and tidies up; the others read."""
    was_online = {h.record.id for h in relay.registry.online()}
    if await relay.store.lease("health", relay.replica_id, relay.config.check_interval * 1.5):
        await relay.registry.sync()
        await relay.registry.check_all()
        await fail_over(relay)
        await lay_ghosts(relay)
        await recover(relay)  # sends cut short by a replica that died (and may not come back)
        await drop_old_inputs(relay)
        await expire_idle_uploads(relay)
        await tend_results(relay)
        # completed tasks not yet described (from before facts existed, or a step cut short): in the background,
        # one backfill at a time, since reading a zip may take long
        relay.spawn(relay.in_flight.run("facts-backfill", lambda: backfill_facts(relay)))
    else:
        await relay.registry.sync()
    if {h.record.id for h in relay.registry.online()} - was_online:
        relay.wake_dispatch.set()


async def tend_results(relay: Relay) -> None:
    """Archives left unfinished are finished, results past `--keep-results` expire; a results store that does not
    answer (S3 away) holds up nothing else."""
    try:
        await finish_archives(relay)
        await expire_results(relay)
    except (OSError, ResultsError) as exc:
        log.warning("results store not tended this round: %s", exc)


async def health_loop(relay: Relay) -> None:
    while True:
        try:
            await health_round(relay)
        except Exception as exc:  # noqa: BLE001  the loop must outlive any round: said in one line, tried again
            log.warning("health round failed: %s: %s", type(exc).__name__, exc)
        await asyncio.sleep(relay.config.check_interval)


async def fail_over(relay: Relay) -> None:
    """Tasks on a node that has been offline past the grace period, or that was removed, go back to the relay's
    queue, to be sent again from their staged inputs, under the same uuid, to a node that fits. Only those
    nodes' unfinished tasks are read (the store's index), however many tasks it holds."""
    now = time.time()
    gone = {h.record.id for h in relay.registry.handles.values()
            if not h.online and h.offline_since is not None and now - h.offline_since >= relay.config.failover_after}
    holders = await relay.store.nodes_with_open_tasks()
    removed = holders - set(relay.registry.handles)
    if removed:  # or added through another replica since this one's last sync: the store says which
        removed -= {record.id for record in await relay.store.list_nodes()}
    for node_id in sorted((gone & holders) | removed):
        for task in await relay.store.open_tasks_on(node_id):
            await move_off(relay, task, node_id, node_id in removed)


async def move_off(relay: Relay, task: TaskRecord, lost_node: str, removed: bool) -> None:
    """One unfinished task of a lost node: back to the queue (or failed, without its inputs). Skipped while this
    replica is sending or committing it (that send decides); the node keeps a ghost of it, to be canceled
    there if it comes back."""
    if relay.locks.busy(task.uuid):
        return
    if task.stage != Stage.ON_NODE and not await claim_sending(relay, task.uuid):
        return  # another replica is sending it: its send decides (or `recover`, once its claim runs out)
    async with relay.locks.hold(task.uuid):
        fresh = await relay.store.get_task(task.uuid)  # as it is now, not as the index was read
        if fresh is None or open_on(fresh) != lost_node:
            return
        task = fresh
        await relay.registry.release(task.uuid)
        if not removed:  # written first: a relay dying right after still cancels it there once it is back
            await relay.store.add_ghost(lost_node, task.uuid)
        why = "removed from the relay" if removed else "offline"
        if relay.staging.files(task.uuid):
            relay.staging.unsure_of(task.uuid, lost_node)  # what the node holds of it is unknown from now on
            task.stage, task.node_id, task.last_info = Stage.QUEUED, None, None
            log.warning("failover uuid=%s: node %s %s, task queued again from its staged inputs",
                        task.uuid, lost_node, why)
            await relay.store.put_task(task)
            relay.wake_dispatch.set()
            if is_parent(task):  # its run is lost: no one takes its submodels' results (the next run makes its own)
                relay.spawn(remove_submodels(relay, task))
        else:
            task.node_id = None  # no node holds it: a word from the lost one is a ghost's
            await end_here(relay, task, Stage.FAILED,
                           f"The node running this task ({lost_node}) went {why} and the relay no longer "
                           f"keeps the task's inputs, so it cannot be sent elsewhere. Create the task again.")


async def lay_ghosts(relay: Relay) -> None:
    """Tasks moved off a node that may still run them there (it was only unreachable): once the node is online
    again, each is canceled and removed there, unless the task was sent back to that very node meanwhile.
    A node removed from the relay takes its ghosts with it."""
    ghost_nodes = await relay.store.ghost_nodes()
    if not ghost_nodes:
        return
    known: set[str] | None = None
    for node_id in sorted(ghost_nodes):
        handle = relay.registry.get(node_id)
        if handle is None:
            known = known if known is not None else {record.id for record in await relay.store.list_nodes()}
            if node_id not in known:
                await relay.store.drop_ghosts(node_id)
                log.info("ghosts forgotten: node %s was removed", node_id)
            continue
        if handle.online:
            for uuid in await relay.store.ghosts(node_id):
                buried = await bury_ghost(relay, handle.record, uuid)
                if buried is None:
                    break  # the node does not answer after all: its other ghosts wait for the next round too
                if buried:
                    log.warning("ghost uuid=%s canceled and removed on node %s, back online: the task is no "
                                "longer there", uuid, node_id)


async def bury_ghost(relay: Relay, node: NodeRecord, uuid: str) -> bool | None:
    """Cancel, then remove, a run of `uuid` on `node` that is no longer the task's (moved elsewhere, ended, or
    removed), and forget the ghost; True if it was canceled and removed, None if the node did not answer. A
    task sent to that node again is its own run there: the ghost is forgotten once it is on the node (left for
    later while it is being sent)."""
    if relay.locks.busy(uuid):
        return False  # this replica is sending it (perhaps to that node): next round
    async with relay.locks.hold(uuid):  # no send of this replica starts while the node is told
        task = await relay.store.get_task(uuid)
        if task is not None and task.node_id == node.id and task.stage in ON_NODE_STAGES:
            if task.stage == Stage.ON_NODE:
                await relay.store.drop_ghost(node.id, uuid)
            return False
        try:
            for path in (endpoints.TASK_CANCEL, endpoints.TASK_REMOVE):
                # a node that says it has no such task has nothing left to stop: that answer is fine too
                await relay.upstream.call(node, "POST", path, data={"uuid": uuid})
        except UpstreamError as exc:
            log.warning("ghost uuid=%s on node %s not removed yet: %s", uuid, node.id, exc)
            return None
        relay.staging.forget_node(uuid, node.id)  # it holds nothing of the task now: a later send starts afresh
        await relay.store.drop_ghost(node.id, uuid)
        return True


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
            await forget(relay, task)
            log.info("upload expired uuid=%s: nothing received for %g s and never committed", task.uuid,
                     relay.config.upload_idle)


async def catch_up(relay: Relay) -> None:
    """After a restart, learn the ends that happened while the relay was down (webhooks it missed): the
    unfinished tasks of each known node (the store's index), not every task ever stored."""
    for node_id in sorted(await relay.store.nodes_with_open_tasks()):
        handle = relay.registry.get(node_id)
        if handle is None:
            continue
        for task in await relay.store.open_tasks_on(node_id):
            if task.stage != Stage.ON_NODE:
                continue  # a send cut short: `recover` settles it
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
