"""Every error the relay answers on purpose, as one tree, and the one middleware that answers them.

    RelayError                 answered {"error": message, ...}; HTTP 200 as NodeODX answers task-level errors
    ├── BadRequest             the request cannot be used as sent (fields, files, limits, uuids)
    │   ├── UploadStalled      an upload sent nothing for --upload-timeout: answered, then the connection closed
    │   └── ZipUrlError        a zipurl that may not or cannot be fetched
    ├── NotFound               no such task, or not one this token may see (the two look the same)
    ├── CommandFailed          cancel/remove/restart that could not be done: {"success": false, "error": ...}
    ├── DownloadError          no such asset, or results not there (yet)
    ├── UpstreamError          a node could not be reached or answered something unusable
    └── HTTPError              the relay's own endpoints (auth, admin, webhooks): a real HTTP status
        ├── AuthError          401 no token, 403 wrong token or not an admin
        └── Conflict           409 the thing exists already

Errors from outside the relay are mapped here too, in one place: Redis away → 503, aiohttp's HTTP
exceptions → the same status as JSON, anything else → 500 with a log line and no traceback to the client.
"""
from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

log = logging.getLogger("odx_relay.errors")


class RelayError(Exception):
    """An error answered as `{"error": message, **extra}` with `status` (200 unless said otherwise)."""

    status = 200
    close_connection = False

    def __init__(self, message: str, **extra: Any):
        super().__init__(message)
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": str(self), **self.extra}


class BadRequest(RelayError):
    """The request cannot be used as it was sent; the message says what to change."""


class UploadStalled(BadRequest):
    """The client sent nothing for `--upload-timeout` seconds: answer, then close its connection."""

    close_connection = True


class ZipUrlError(BadRequest):
    """The task's zipurl may not be fetched, or could not be, or is no usable zip."""


class NotFound(RelayError):
    """A task that does not exist, or that this token may not see."""


class CommandFailed(RelayError):
    """A task command that could not be done, answered as NodeODX answers it."""

    def body(self) -> dict[str, Any]:
        return {"success": False, "error": str(self)}


class DownloadError(RelayError):
    """An asset that does not exist or is not there yet."""


class UpstreamError(RelayError):
    """A node could not be reached or answered something unusable (never with its token in the words)."""


class NoAnswer(UpstreamError):
    """A request to a node got no answer (connection refused or cut, timeout): whether the node acted on it
    is unknown, unlike a node that answered, even with an error."""


class HTTPError(RelayError):
    """An error of the relay's own endpoints, answered with a real HTTP status."""

    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message, **extra)
        self.status = status


class AuthError(HTTPError):
    """No token (401), a wrong one or no admin right (403)."""


class Conflict(HTTPError):
    def __init__(self, message: str):
        super().__init__(409, message)


def answer(exc: RelayError) -> web.Response:
    return web.json_response(exc.body(), status=exc.status)


@web.middleware
async def errors_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RelayError as exc:
        if exc.close_connection:
            return await answer_and_close(request, answer(exc))
        return answer(exc)
    except RedisError as exc:
        log.warning("state store unreachable on %s %s: %s", request.method, request.path, type(exc).__name__)
        return answer(HTTPError(503, "The relay's state store (Redis) is unreachable; nothing was lost, "
                                     "try again shortly"))
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json":
            return answer(HTTPError(exc.status, exc.reason))
        raise
    except Exception:  # a bug: log it, answer in JSON, keep serving
        log.exception("unhandled error on %s %s", request.method, request.path)
        return answer(HTTPError(500, "Internal error in the relay; see its log"))


async def answer_and_close(request: web.Request, response: web.Response) -> web.Response:
    """Send `response`, then close the connection without waiting for the rest of the body (aiohttp
    would otherwise keep reading a stalled client for its lingering time)."""
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()
    return response
