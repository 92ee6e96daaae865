"""The archive step: a completed task's results copied into the results store once, the node's copy removed
after it when asked (`--remove-from-node`), and the housekeeping that finishes archives cut short and expires
old results (`--keep-results`).

Each step is done only if its result is not there yet, so an archive can be run again from the start after a
kill at any point: the store's `pending/<uuid>` marker is written before the claim (`archive:<run>`) is taken,
refreshed while the copy runs and removed when every step is done. The health lease's holder finds markers
that nobody refreshed for a while (the replica copying was killed, or the node would not give its zip) and
runs the archive again: a claim taken by a replica that died blocks nothing.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from shared import endpoints
from shared.types import TaskStatus

from .crashpoints import crash_point
from .downloads import save_node_zip
from .errors import RelayError, UpstreamError
from .models import Stage, TaskRecord
from .removal import remove_task
from .result_facts import describe
from .results import ResultsError, archived
from .staging import valid_uuid
from .state import Relay

log = logging.getLogger("odx_relay.archiving")
MARK_WAIT = 10.0


def completed(task: TaskRecord) -> bool:
    status = (task.last_info or {}).get("status")
    return task.stage == Stage.ON_NODE and isinstance(status, dict) and status.get("code") == TaskStatus.COMPLETED


async def announce(relay: Relay, task: TaskRecord) -> None:
    """The task just completed: mark its archive as pending (so that a relay killed from here on still makes
    it), then let one replica copy it. (A second path that learns the same end finds it archived already, or
    loses the claim: a marker it leaves is cleared by the sweep.)"""
    if archived(relay.results, task):
        return
    try:  # (bounded: the client whose poll brought the end waits for this; a store away must not hold it up)
        await asyncio.wait_for(relay.results.mark_pending(task.uuid), MARK_WAIT)
    except (OSError, ResultsError, TimeoutError) as exc:
        log.warning("results store: archive of %s not marked as pending (a kill before it is done would leave it "
                    "undone): %s", task.uuid, exc or "no answer in time")
    if await relay.store.claim_once(task.uuid, f"archive:{task.runs}"):
        relay.spawn(archive(relay, task))


async def archive(relay: Relay, task: TaskRecord) -> bool:
    """Do what is left of the task's archive; False (the marker stays, for the sweep) if a step failed."""
    results, uuid = relay.results, task.uuid
    if uuid in results.busy:
        return False
    results.busy.add(uuid)
    beat = asyncio.ensure_future(keep_marked(relay, uuid))
    try:
        kept = await archive_steps(relay, task)
    except (OSError, RelayError) as exc:
        log.warning("results not archived uuid=%s: %s (tried again later)", uuid, exc)
        return False
    finally:
        beat.cancel()
        results.busy.discard(uuid)
    if kept is not None:  # its facts (for STAC) read once, from the archive now there (the fresh record says so)
        relay.spawn(describe(relay, kept))
    return True


async def archive_steps(relay: Relay, task: TaskRecord) -> TaskRecord | None:
    """The task's record once archived; None if it was removed or restarted meanwhile."""
    results, uuid = relay.results, task.uuid
    fresh = await relay.store.get_task(uuid)
    if fresh is None or fresh.runs != task.runs:  # removed or restarted meanwhile: nothing of this run to keep
        await results.clear_pending(uuid)
        return None
    task = fresh
    if not archived(results, task):
        started = time.monotonic()
        handle = relay.registry.get(task.node_id)
        if handle is None:
            raise UpstreamError(f"the node that held {uuid} was removed from the relay")
        output = await relay.upstream.call(handle.record, "GET", endpoints.task_output(uuid))
        await results.put_output(uuid, output if isinstance(output, list) else [])  # first: a zip implies it
        local = results.spool(uuid)
        await save_node_zip(relay.registry, task, local, local.with_name(local.name + ".part"))
        crash_point("mid-archive")
        size = local.stat().st_size
        await results.put_zip(uuid, local)
        changed = await update(relay, task, archived_run=task.runs)
        if changed is None:
            await results.remove(uuid)
            return None
        task = changed
        log.info("results archived uuid=%s bytes=%d seconds=%.1f in %s", uuid, size, time.monotonic() - started,
                 results.where)
    if relay.config.remove_from_node and not task.off_node:
        task = await remove_node_copy(relay, task) or task
    await results.clear_pending(uuid)
    return task


async def remove_node_copy(relay: Relay, task: TaskRecord) -> TaskRecord | None:
    """The node's copy goes, then the record says that the relay answers for the task from now on. (A kill in
    between leaves a task whose node says "not found" until the sweep runs the step again: the node answers
    that it has no such task, which counts as removed, and the record is written.)"""
    handle = relay.registry.get(task.node_id)
    if handle is not None:  # (a node removed from the relay: its copy is out of reach, as good as gone)
        answer = await relay.upstream.call(handle.record, "POST", endpoints.TASK_REMOVE, data={"uuid": task.uuid})
        if isinstance(answer, dict) and answer.get("error") and "not found" not in str(answer["error"]):
            raise UpstreamError(f"node {handle.record.label or handle.record.id} did not remove {task.uuid}: "
                                f"{answer['error']}")
    changed = await update(relay, task, off_node=True)
    if changed is not None:
        log.info("node copy removed uuid=%s node=%s (its results are in %s)", task.uuid, task.node_id,
                 relay.results.where)
    return changed


async def update(relay: Relay, task: TaskRecord, **changes: object) -> TaskRecord | None:
    """Set fields of the task's record as it is now; None if the task was removed or restarted meanwhile."""
    async with relay.locks.hold(task.uuid):
        fresh = await relay.store.get_task(task.uuid)
        if fresh is None or fresh.runs != task.runs:
            return None
        for name, value in changes.items():
            setattr(fresh, name, value)
        await relay.store.put_task(fresh)
        return fresh


def stale_after(relay: Relay) -> float:
    """Seconds without a refresh after which a pending archive counts as abandoned."""
    return max(4 * relay.config.check_interval, 2.0)


async def keep_marked(relay: Relay, uuid: str) -> None:
    """Refresh the pending marker while this replica archives, so that the sweep leaves it alone."""
    while True:
        await asyncio.sleep(relay.config.check_interval)
        with contextlib.suppress(OSError, ResultsError):
            await relay.results.mark_pending(uuid)


async def finish_archives(relay: Relay) -> None:
    """Archives begun and abandoned: run again (the node must be online), or forgotten if their task is gone."""
    for uuid, age in sorted((await relay.results.pending()).items()):
        if uuid in relay.results.busy or age < stale_after(relay) or not valid_uuid(uuid):
            continue
        task = await relay.store.get_task(uuid)
        if task is None or not completed(task):
            await relay.results.clear_pending(uuid)
            continue
        handle = relay.registry.get(task.node_id)
        needs_node = not archived(relay.results, task) or (relay.config.remove_from_node and not task.off_node)
        if not needs_node or (handle is not None and handle.online):
            log.info("archive of %s was left unfinished: finishing it", uuid)
            relay.spawn(archive(relay, task))


async def expire_results(relay: Relay) -> None:
    """Tasks that ended more than `--keep-results` seconds ago are removed with their results, as a NodeODX
    node removes its old tasks; results whose task is gone are removed too. The pass reads every archived
    task's record, so it runs at most once per a tenth of the retention (between one health interval and five
    minutes), giving the event loop a turn every few hundred records; only names that are task uuids are
    touched (a results folder shared with other files loses none of them)."""
    keep, results = relay.config.keep_results, relay.results
    period = min(300.0, max(relay.config.check_interval, keep / 10))
    if not keep or time.monotonic() - results.expired_at < period:
        return
    results.expired_at = time.monotonic()
    now_ms = time.time() * 1000
    for done, uuid in enumerate(await results.uuids()):
        if done % 500 == 499:
            await asyncio.sleep(0)
        if not valid_uuid(uuid):
            continue
        task = await relay.store.get_task(uuid)
        if task is None and uuid not in relay.results.busy:
            await relay.results.remove(uuid)
            log.info("results of removed task %s deleted", uuid)
        elif task is not None and task.ended_ms and now_ms - task.ended_ms > keep * 1000:
            await expire(relay, task)


async def expire(relay: Relay, task: TaskRecord) -> None:
    refused = await remove_task(relay, task)
    if refused:
        log.warning("task %s not expired: its node refused to remove it: %s", task.uuid, refused.get("error"))
        return
    log.info("task expired uuid=%s: ended more than %g s ago (--keep-results), removed with its results",
             task.uuid, relay.config.keep_results)
