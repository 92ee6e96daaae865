"""The webhook nodes call when a task ends: checked, then handed to `task_end` like any other news of an end.

The relay gives each node a signed URL of its own (`/_relay/webhook/{uuid}?sig=...`, made in `forward.py`
with the init form) instead of the client's, so it learns of every end without polling each task, and only
nodes it sent the task to can report on it. The client's webhook is then called (once) with the node's task
info, as NodeODX would.
"""
from __future__ import annotations

import hmac
import logging

from aiohttp import web

from .errors import HTTPError
from .forward import mark_on_node, sign
from .housekeeping import bury_ghost
from .models import Stage
from .state import RELAY
from .task_end import learn_info

log = logging.getLogger("odx_relay.webhooks")


async def receive(request: web.Request) -> web.Response:
    relay = request.app[RELAY]
    uuid = request.match_info["uuid"]
    node_id = request.query.get("node", "")
    if not hmac.compare_digest(request.query.get("sig", "").encode(), sign(relay, uuid, node_id).encode()):
        raise HTTPError(403, "Invalid signature")
    task = await relay.store.get_task(uuid)
    try:
        info = await request.json()
    except ValueError:
        raise HTTPError(400, "Expected the task's info as JSON") from None
    if task is None or not isinstance(info, dict) or info.get("uuid") != uuid:
        raise HTTPError(404, f"{uuid} not found")
    if task.node_id != node_id:  # the task was moved off that node (failover): a ghost run, stopped there
        handle = relay.registry.get(node_id)
        log.warning("webhook ignored uuid=%s from node=%s; the task is on node=%s, so that run is a ghost: %s", uuid,
                    node_id, task.node_id, "canceling and removing it there" if handle else "the node was removed")
        if handle is not None:
            relay.spawn(bury_ghost(relay, handle.record, uuid))  # answered at once; never told to the client
        return web.json_response({"ok": False})
    log.info("node webhook uuid=%s status=%s", uuid, (info.get("status") or {}).get("code"))
    if task.stage in (Stage.COMMITTING, Stage.DISPATCHING):  # its commit's answer was lost: the node has it
        async with relay.locks.hold(uuid):  # after a send of this replica's own, if one is under way
            task = await relay.store.get_task(uuid)
            if task is not None and task.stage in (Stage.COMMITTING, Stage.DISPATCHING) and task.node_id == node_id:
                await mark_on_node(relay, task, node_id, relay.needs(task))
    if task is not None:
        await learn_info(relay, task, info)
    return web.json_response({"ok": True})
