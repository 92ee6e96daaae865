"""What keeps the relay's memory bounded under many uploads at once: how much of a client's body it takes
from the socket at a time, and handing freed heap pages back to the system.

Measured by `make bench` (section `concurrent`: 200 uploads in flight, peak RSS bar 150 MB).
"""
from __future__ import annotations

import asyncio
import contextlib
import ctypes
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

#: The most of one request body the relay takes from its socket at a time, and what it buffers before it stops
#: reading that socket (aiohttp pauses at twice the larger of this and what intake reads at a time, its CHUNK).
#: aiohttp's default (256 KB), with asyncio's 256 KB per recv(), let each upload hold about 0.5 MB whenever the
#: relay is behind its clients, which is how 200 uploads at once took 100 MB more than this.
READ_BUFFER = 64 * 1024
#: Seconds between handing the heap memory that finished uploads freed back to the system.
TRIM_EVERY = 2.0


@web.middleware
async def bounded_reads(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                        ) -> web.StreamResponse:
    """Take at most READ_BUFFER bytes from a client's socket at once. asyncio's selector transport reads up to
    256 KB per recv() (`max_size`, a class attribute), all of it buffered until the body is read that far;
    other transports (uvloop) have no such attribute and are left as they are."""
    transport = request.transport
    if isinstance(getattr(transport, "max_size", None), int) and transport.max_size > READ_BUFFER:
        transport.max_size = READ_BUFFER
    return await handler(request)


def malloc_trim() -> Callable[[], int] | None:
    """glibc's `malloc_trim(0)`, or None where the C library has none (musl, macOS)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


@contextlib.asynccontextmanager
async def returning_freed_memory(every: float = TRIM_EVERY) -> AsyncIterator[None]:
    """Now and then, give the system back the heap pages nothing uses any more. Uploads free their chunks
    scattered between objects that live on, so glibc can seldom shrink its heap by itself: without this the
    relay kept its peak RSS after a burst of uploads. A call takes about a millisecond (a few after a burst)."""
    trim = malloc_trim()

    async def keep_trimming(trim: Callable[[], int]) -> None:
        while True:
            await asyncio.sleep(every)
            trim()

    trimmer = asyncio.ensure_future(keep_trimming(trim)) if trim else None
    try:
        yield
    finally:
        if trimmer:
            trimmer.cancel()
