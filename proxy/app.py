"""The composition root: the relay's aiohttp application, its parts wired once, its background work
started with it and stopped with it."""
from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from redis.exceptions import RedisError

from .admin import add_admin_routes
from .auth import Auth, LoginLimiter
from .config import RelayConfig
from .downloads import DownloadCache
from .errors import errors_middleware
from .housekeeping import background_work
from .memory_bounds import READ_BUFFER, bounded_reads, returning_freed_memory
from .nodes import NodeRegistry, parse_node_url
from .openapi import add_openapi_route
from .redis_store import RedisStore
from .results import ResultsStore
from .routes import add_routes
from .stac import add_stac_routes
from .staging import Staging
from .state import CONFIG, RELAY, Relay
from .store import SQLiteStore, Store
from .upstream import Upstream

log = logging.getLogger("odx_relay")



async def open_store(config: RelayConfig) -> Store:
    """SQLite in the data folder, or Redis when given; wait for Redis if it is not up yet."""
    if not config.redis:
        store = SQLiteStore(config.data_dir / "relay.sqlite3")
        await store.open()
        return store
    store = RedisStore(config.redis)
    while True:
        try:
            await store.open()
            return store
        except RedisError as exc:
            log.warning("waiting for Redis at %s: %s", redact(config.redis), exc)
            await asyncio.sleep(2)


def redact(url: str) -> str:
    """A Redis URL without its password, for log lines."""
    return re.sub(r"//[^@/]*@", "//***@", url)


async def relay_context(app: web.Application) -> AsyncIterator[None]:
    """Wire the parts once, run the background work while the app serves, close everything after."""
    config = app[CONFIG]
    data = config.data_dir
    store = await open_store(config)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256), auto_decompress=False)
    upstream = Upstream(session, config.node_timeout)
    registry = NodeRegistry(store, upstream, config.offline_after)
    results = ResultsStore(config.results_dir or data / "results")
    await registry.load([parse_node_url(url) for url in config.node_urls()])
    relay = Relay(config=config, store=store, upstream=upstream, registry=registry,
                  staging=Staging(config.staging_dir or data / "staging"),
                  auth=Auth(store, config.token, config.admin_token, config.allow_registration,
                            LoginLimiter(config.login_failures, config.login_window, config.trusted_proxy)),
                  cache=DownloadCache(data / "cache", int(config.cache_mb * 1024 * 1024), results),
                  results=results,
                  secret=await store.shared_secret(),
                  # the same after a restart, so the replica takes up its own leases (a task it was sending)
                  replica_id=f"{socket.gethostname()}:{config.host}:{config.port}")
    app[RELAY] = relay
    try:
        async with background_work(relay), returning_freed_memory():
            log.info("relay ready on %s:%s with %d node(s), %d online, state in %s", config.host, config.port,
                     len(registry.handles), len(registry.online()),
                     redact(config.redis) if config.redis else "SQLite")
            yield
    finally:
        await session.close()
        await store.close()


def create_app(config: RelayConfig) -> web.Application:
    app = web.Application(middlewares=[bounded_reads, errors_middleware], client_max_size=16 * 1024 * 1024,
                          handler_args={"read_bufsize": READ_BUFFER})
    app[CONFIG] = config
    app.cleanup_ctx.append(relay_context)
    add_routes(app)
    add_admin_routes(app)
    add_stac_routes(app)
    add_openapi_route(app)
    return app
