"""The webhook nodes call when a task ends: checked, then handed to `task_end` like any other news of an end.

The relay gives each node a signed URL of its own (`/_relay/webhook/{uuid}?sig=...`) instead of the
client's, so it learns of every end without polling each task, and only nodes it sent the task to can
report on it. The client's webhook is then called (once) with the node's task info, as NodeODX would.
"""
from __future__ import annotations

import hmac
import logging

from aiohttp import web

from .relay import RELAY
from .task_end import learn_info

log = logging.getLogger("odx_relay.webhooks")


async def receive(request: web.Request) -> web.Response:
    relay = request.app[RELAY]
    uuid = request.match_info["uuid"]
    node_id = request.query.get("node", "")
    if not hmac.compare_digest(request.query.get("sig", "").encode(), relay.sign(uuid, node_id).encode()):
        return web.json_response({"error": "Invalid signature"}, status=403)
    task = await relay.store.get_task(uuid)
    try:
        info = await request.json()
    except ValueError:
        return web.json_response({"error": "Expected the task's info as JSON"}, status=400)
    if task is None or not isinstance(info, dict) or info.get("uuid") != uuid:
        return web.json_response({"error": f"{uuid} not found"}, status=404)
    if task.node_id != node_id:  # the task was moved off that node (failover): its word no longer counts
        log.warning("webhook ignored uuid=%s from node=%s; the task is on node=%s", uuid, node_id, task.node_id)
        return web.json_response({"ok": False})
    log.info("node webhook uuid=%s status=%s", uuid, (info.get("status") or {}).get("code"))
    await learn_info(relay, task, info)
    return web.json_response({"ok": True})
