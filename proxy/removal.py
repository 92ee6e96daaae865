"""A committed task removed from the relay, by its owner (`/task/remove`) or past `--keep-results`: its copy on
its node, its reservation, its cached, archived and staged files, its record."""
from __future__ import annotations

import logging
from typing import Any

from shared import endpoints

from .errors import UpstreamError
from .intake import forget
from .models import Stage, TaskRecord
from .results import ResultsError
from .state import Relay

log = logging.getLogger("odx_relay.removal")


async def remove_task(relay: Relay, task: TaskRecord) -> dict[str, Any] | None:
    """Remove the task everywhere; the node's answer if it refused (the task is then kept), else None. A node
    that does not answer gets a ghost: the task is removed there once it is back. An upload never committed (a
    split-merge submodel's, removed with its parent) is forgotten."""
    if task.stage == Stage.UPLOADING:
        await forget(relay, task)
        return None
    if relay.locks.busy(task.uuid):  # this replica is sending it from its staged files: the send ends first
        async with relay.locks.hold(task.uuid):
            task = await relay.store.get_task(task.uuid) or task
    if task.stage == Stage.ON_NODE and not task.off_node:
        try:
            handle = relay.registry.get(task.node_id)
            if handle is None:
                raise UpstreamError(f"the node that held {task.uuid} was removed from the relay")
            result = await relay.upstream.call(handle.record, "POST", endpoints.TASK_REMOVE, data={"uuid": task.uuid})
            if isinstance(result, dict) and result.get("error") and "not found" not in result["error"]:
                return result
        except UpstreamError as exc:
            await relay.store.add_ghost(task.node_id, task.uuid)  # removed there once it answers again
            log.warning("remove: node unreachable uuid=%s: %s (removed from the relay now, from the node when it "
                        "is back)", task.uuid, exc)
    elif task.stage in (Stage.DISPATCHING, Stage.COMMITTING) and task.node_id:
        await relay.store.add_ghost(task.node_id, task.uuid)  # the node it was being sent to may have it
    await relay.registry.release(task.uuid)
    relay.cache.drop(task.uuid)
    relay.staging.remove(task.uuid)
    await relay.store.delete_task(task.uuid)
    try:  # after the record: an archive finishing meanwhile either saw the record (and its copy goes now) or not
        await relay.results.remove(task.uuid)  # (and removes its copy itself: `archiving.update`)
    except ResultsError as exc:  # (with --keep-results, the housekeeping deletes results left without a task)
        log.warning("remove: results of %s left in the store: %s", task.uuid, exc)
    log.info("task removed uuid=%s", task.uuid)
    return None
