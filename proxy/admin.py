"""The admin HTTP API: nodes listed, added, removed, locked and unlocked at run time.

Every call needs the admin token (`Authorization: Bearer ...`) and answers with real HTTP codes.
Node tokens are accepted here and never shown back.
"""
from __future__ import annotations

from aiohttp import web

from .errors import Conflict, HTTPError
from .nodes import parse_node_url
from .state import RELAY


def _relay(request: web.Request):
    relay = request.app[RELAY]
    relay.auth.check_admin(request)
    return relay


def _handle(request: web.Request):
    relay = _relay(request)
    handle = relay.registry.get(request.match_info["node_id"])
    if handle is None:
        raise HTTPError(404, "No such node")
    return relay, handle


async def list_nodes(request: web.Request) -> web.Response:
    relay = _relay(request)
    return web.json_response([h.public() for h in relay.registry.handles.values()])


async def add_node(request: web.Request) -> web.Response:
    relay = _relay(request)
    try:
        data = await request.json()
        record = parse_node_url(str(data["url"]), str(data.get("label", "")))
    except (ValueError, KeyError, TypeError) as exc:
        raise HTTPError(400, f"Send {{\"url\": \"http://host:port?token=...\"}} ({exc})") from None
    if data.get("token"):
        record.token = str(data["token"])
    if relay.registry.get(record.id) is not None:
        raise Conflict(f"Node {record.shown_url} is registered already as {record.id}")
    handle = await relay.registry.add(record)
    relay.wake_dispatch.set()
    return web.json_response(handle.public(), status=201)


async def remove_node(request: web.Request) -> web.Response:
    relay, handle = _handle(request)
    await relay.registry.remove(handle.record.id)
    return web.json_response({"removed": handle.record.id})


async def lock_node(request: web.Request) -> web.Response:
    relay, handle = _handle(request)
    await relay.registry.set_locked(handle.record.id, True)
    return web.json_response(handle.public())


async def unlock_node(request: web.Request) -> web.Response:
    relay, handle = _handle(request)
    await relay.registry.set_locked(handle.record.id, False)
    relay.wake_dispatch.set()
    return web.json_response(handle.public())


def add_admin_routes(app: web.Application) -> None:
    app.router.add_get("/admin/nodes", list_nodes)
    app.router.add_post("/admin/nodes", add_node)
    app.router.add_delete("/admin/nodes/{node_id}", remove_node)
    app.router.add_post("/admin/nodes/{node_id}/lock", lock_node)
    app.router.add_post("/admin/nodes/{node_id}/unlock", unlock_node)
