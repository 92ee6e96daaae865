"""The relay's application state: its parts, wired once, and every typed AppKey in one place.

There is no global state outside it; handlers reach it as `request.app[RELAY]`.
"""
from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from shared.memory import estimate_memory_mb

from .auth import Auth
from .config import RelayConfig
from .downloads import DownloadCache
from .models import TaskRecord
from .nodes import NodeRegistry
from .results import ResultsStore
from .scheduler import TaskNeeds
from .singleflight import SingleFlight
from .staging import Staging
from .store import Store
from .upstream import Upstream

RELAY: web.AppKey[Relay] = web.AppKey("relay")
CONFIG: web.AppKey[RelayConfig] = web.AppKey("config", RelayConfig)
OPENAPI_DOCUMENT: web.AppKey[dict] = web.AppKey("openapi", dict)  # built once at start


class TaskLocks:
    """One asyncio lock per task uuid, kept only while someone holds or waits for it: a relay that runs for
    months sees millions of uuids, and a lock left behind for each would be a slow leak."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def hold(self, uuid: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(uuid, asyncio.Lock())
        self._users[uuid] = self._users.get(uuid, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[uuid] -= 1
            if not self._users[uuid]:
                del self._users[uuid], self._locks[uuid]

    def busy(self, uuid: str) -> bool:
        return uuid in self._locks and self._locks[uuid].locked()

    def __len__(self) -> int:
        return len(self._locks)


@dataclass
class Relay:
    """The parts every handler and background loop shares, and the per-task locks between them."""

    config: RelayConfig
    store: Store
    upstream: Upstream
    registry: NodeRegistry
    staging: Staging
    auth: Auth
    cache: DownloadCache
    results: ResultsStore
    secret: bytes
    replica_id: str = field(default_factory=lambda: secrets.token_hex(6))
    wake_dispatch: asyncio.Event = field(default_factory=asyncio.Event)
    locks: TaskLocks = field(default_factory=lambda: TaskLocks())
    in_flight: SingleFlight = field(default_factory=SingleFlight)
    background: set[asyncio.Task] = field(default_factory=set)

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run `work` in the background, held until it is done (a bare future may be collected mid-way)."""
        job = asyncio.ensure_future(work)
        self.background.add(job)
        job.add_done_callback(self.background.discard)


    def needs(self, task: TaskRecord) -> TaskNeeds:
        return TaskNeeds(task.image_count, estimate_memory_mb(task.image_count, task.options, self.config.memory_table))
