"""Webhooks: nodes tell the relay when a task ends; the relay tells the task's own webhook.

The relay gives each node a signed URL of its own (`/_relay/webhook/{uuid}?sig=...`) instead of the
client's, so it learns of every end without polling each task, and only nodes it sent the task to can
report on it. The client's webhook is then called with the node's task info, as NodeODX would.
"""
from __future__ import annotations

import asyncio
import hmac
import logging

import aiohttp
from aiohttp import web

from .models import TaskRecord
from .relay import RELAY, Relay

log = logging.getLogger("odx_relay.webhooks")
ATTEMPTS = 3


async def call_client_webhook(session: aiohttp.ClientSession, task: TaskRecord, info: dict) -> None:
    for attempt in range(ATTEMPTS):
        try:
            async with session.post(task.webhook, json=info, timeout=aiohttp.ClientTimeout(total=15)) as resp:
                log.info("webhook called uuid=%s status=%d", task.uuid, resp.status)
                if resp.status < 500:
                    return
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:  # ValueError: a URL aiohttp cannot use
            log.warning("webhook failed uuid=%s attempt=%d: %s", task.uuid, attempt + 1, type(exc).__name__)
        await asyncio.sleep(2 ** attempt)


async def task_ended(relay: Relay, task: TaskRecord, info: dict) -> None:
    """A node says the task ended: record it, free the node's slot, call the client."""
    await relay.record_info(task, info)
    handle = relay.registry.get(task.node_id)
    if handle is not None:
        await relay.registry.check(handle)
    relay.wake_dispatch.set()
    if task.webhook:
        asyncio.ensure_future(call_client_webhook(relay.upstream.session, task, info))


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
    await task_ended(relay, task, info)
    return web.json_response({"ok": True})
