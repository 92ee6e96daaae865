"""Building the relay's aiohttp application: parts wired once, background loops started and stopped."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import aiohttp
from aiohttp import web

from .admin import add_admin_routes
from .auth import Auth
from .config import RelayConfig
from .dispatch import dispatch_loop, recover
from .downloads import DownloadCache
from .models import Stage
from .nodes import NodeRegistry, parse_node_url
from .relay import RELAY, Relay
from .routes import CACHE, add_routes, errors_middleware
from .staging import Staging
from .store import SQLiteStore
from .upstream import Upstream, UpstreamError

log = logging.getLogger("odx_relay")


async def health_loop(relay: Relay) -> None:
    """Ask every node's /info each interval; wake the dispatcher when one comes back; tidy staging."""
    while True:
        was_online = {h.record.id for h in relay.registry.online()}
        await relay.registry.check_all()
        if {h.record.id for h in relay.registry.online()} - was_online:
            relay.wake_dispatch.set()
        await drop_old_inputs(relay)
        await release_idle_uploads(relay)
        await asyncio.sleep(relay.config.check_interval)


async def drop_old_inputs(relay: Relay) -> None:
    now_ms = time.time() * 1000
    for task in await relay.store.tasks_in(Stage.ON_NODE, Stage.CANCELED, Stage.FAILED):
        if task.ended_ms and now_ms - task.ended_ms > relay.config.keep_inputs * 1000 and relay.staging.exists(task.uuid):
            relay.staging.remove(task.uuid)
            log.info("staged inputs dropped uuid=%s", task.uuid)


async def release_idle_uploads(relay: Relay) -> None:
    """An init reserves a free slot on the node it forwards to; if its client goes silent (gave up,
    crashed) for `upload_idle` seconds, give the slot back, or the node would look busy for ever."""
    idle_before = time.time() - relay.config.upload_idle
    held = {uuid for tasks in relay.registry.reservations.held.values() for uuid in tasks}
    for task in await relay.store.tasks_in(Stage.UPLOADING):
        if task.uuid not in held:
            continue
        folder = relay.staging.folder(task.uuid)
        try:  # the folder changes with each file; a file being written is a hidden `.part`
            last = max([folder.stat().st_mtime] + [p.stat().st_mtime for p in folder.glob(".*.part")])
        except OSError:
            last = 0.0
        if last < idle_before:
            relay.registry.reservations.drop(task.uuid)
            relay.wake_dispatch.set()
            log.info("upload idle, node slot released uuid=%s node=%s", task.uuid, task.forward_node_id)


async def catch_up(relay: Relay) -> None:
    """After a restart, learn the ends that happened while the relay was down (webhooks it missed)."""
    from .webhooks import task_ended
    for task in await relay.store.tasks_in(Stage.ON_NODE):
        handle = relay.registry.get(task.node_id)
        if task.ended_ms or handle is None:
            continue
        try:
            info = await relay.upstream.call(handle.record, "GET", f"/task/{task.uuid}/info")
        except UpstreamError:
            continue
        code = (info.get("status") or {}).get("code") if isinstance(info, dict) else None
        if code in (30, 40, 50):
            await task_ended(relay, task, info)


async def relay_context(app: web.Application):
    config: RelayConfig = app["config"]
    data = config.data_dir
    store = SQLiteStore(data / "relay.sqlite3")
    await store.open()
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256), auto_decompress=False)
    upstream = Upstream(session, config.node_timeout)
    registry = NodeRegistry(store, upstream, config.offline_after)
    await registry.load([parse_node_url(url) for url in config.node_urls()])
    relay = Relay(config=config, store=store, upstream=upstream, registry=registry,
                  staging=Staging(data / "staging"),
                  auth=Auth(store, config.token, config.admin_token, config.allow_registration),
                  secret=Relay.load_secret(data))
    app[RELAY] = relay
    app[CACHE] = DownloadCache(data / "cache")
    await registry.check_all()
    await recover(relay)
    await catch_up(relay)
    loops = [asyncio.ensure_future(health_loop(relay)), asyncio.ensure_future(dispatch_loop(relay))]
    relay.wake_dispatch.set()
    log.info("relay ready on %s:%s with %d node(s), %d online", config.host, config.port,
             len(registry.handles), len(registry.online()))
    yield
    for loop in loops:
        loop.cancel()
    for loop in loops:
        with contextlib.suppress(asyncio.CancelledError):
            await loop
    await session.close()
    await store.close()


def create_app(config: RelayConfig) -> web.Application:
    app = web.Application(middlewares=[errors_middleware], client_max_size=16 * 1024 * 1024)
    app["config"] = config
    app.cleanup_ctx.append(relay_context)
    add_routes(app)
    add_admin_routes(app)
    return app
