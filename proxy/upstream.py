"""Requests from the relay to one node, with the node's token added on the way out.

Every failure becomes `UpstreamError` with words a person can act on, and never with the node's
token in it (URLs in messages are shown without their query).
"""
from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from yarl import URL

from shared import endpoints

from .errors import NoAnswer, UpstreamError
from .models import NodeRecord


def node_url(node: NodeRecord, path: str, query: Mapping[str, Any] | None = None) -> URL:
    url = URL(node.url.rstrip("/") + path)
    params = {k: str(v) for k, v in (query or {}).items()}
    if node.token:
        params["token"] = node.token
    return url.with_query(params) if params else url


def public_name(node: NodeRecord) -> str:
    """How a node is named to clients and in errors: its label or id, never its URL (which may carry a
    Basic-auth password, and is nobody's business outside the relay)."""
    return f"{node.id} ({node.label})" if node.label else node.id


class Upstream:
    """The relay's one HTTP client towards nodes."""

    def __init__(self, session: aiohttp.ClientSession, timeout: float):
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)

    async def call(self, node: NodeRecord, method: str, path: str, **kwargs: Any) -> Any:
        """One request whose answer is JSON; NodeODX's `{"error": ...}` is returned, not raised."""
        return (await self.call_raw(node, method, path, **kwargs))[1]

    async def call_raw(self, node: NodeRecord, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                       data: Any = None, headers: Mapping[str, str] | None = None,
                       timeout: aiohttp.ClientTimeout | None = None) -> tuple[bytes, Any]:
        """The answer's bytes and its JSON: a reply passed on unchanged need not be encoded again."""
        try:
            async with self.session.request(method, node_url(node, path, query), data=data,
                                            headers=headers, timeout=timeout or self.timeout) as resp:
                body = await resp.read()
                if resp.status >= 500:
                    raise UpstreamError(f"node {public_name(node)} answered HTTP {resp.status} to {path}")
                try:
                    return body, json.loads(body)
                except ValueError:
                    raise UpstreamError(f"node {public_name(node)} answered {path} with something that is "
                                        f"not JSON (HTTP {resp.status})") from None
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError, ValueError) as exc:  # never sent
            raise UpstreamError(f"node {public_name(node)} is unreachable ({type(exc).__name__})") from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:  # sent, perhaps acted on, but not answered
            raise NoAnswer(f"node {public_name(node)} is unreachable ({type(exc).__name__})") from None

    async def open_stream(self, node: NodeRecord, path: str, headers: Mapping[str, str] | None = None
                          ) -> aiohttp.ClientResponse:
        """Start a download; the caller reads and releases the response."""
        try:
            resp = await self.session.get(node_url(node, path), headers=headers, timeout=self.timeout)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:  # ValueError: a URL aiohttp cannot use
            raise UpstreamError(f"node {public_name(node)} is unreachable ({type(exc).__name__})") from None
        if resp.status >= 400:
            resp.release()
            raise UpstreamError(f"node {public_name(node)} answered HTTP {resp.status} to {path}")
        return resp

    async def upload(self, node: NodeRecord, uuid: str, filename: str, chunks: AsyncIterator[bytes] | Any) -> Any:
        """Send one file to `/task/new/upload/{uuid}` as the `images` field, streamed."""
        form = aiohttp.FormData()
        form.add_field("images", chunks, filename=filename, content_type="application/octet-stream")
        return await self.call(node, "POST", endpoints.upload(uuid), data=form,
                               timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=600))
