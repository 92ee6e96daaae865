"""Identical requests in flight at the same moment share one call to the node.

Fifty clients polling one task's info through the relay then cost the node one request at a time,
and no answer is older than the round trip it waited for: coalescing, not caching.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any


class SingleFlight:
    def __init__(self) -> None:
        self.calls: dict[Hashable, asyncio.Future] = {}

    async def run(self, key: Hashable, call: Callable[[], Awaitable[Any]]) -> Any:
        future = self.calls.get(key)
        if future is None:
            future = asyncio.ensure_future(call())
            self.calls[key] = future
            future.add_done_callback(lambda done: self._forget(key, done))
        return await asyncio.shield(future)

    def _forget(self, key: Hashable, done: asyncio.Future) -> None:
        if self.calls.get(key) is done:
            del self.calls[key]
        if not done.cancelled():
            done.exception()  # retrieved here so an error nobody awaited is not reported as lost
