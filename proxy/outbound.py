"""Where the relay may send a request a client asked for: the policy shared by `zipurl` and task webhooks.

A client that gives the relay a URL (a zip to fetch, a webhook to call when its task ends) makes the relay
send a request on its behalf, from inside the network the relay sits in. So such a URL must be http(s)
with a host, and, unless the operator allows it with a flag of its own (`--zipurl-allow-private`,
`--webhook-allow-private`), never towards a loopback, private, link-local, multicast, reserved or
unspecified address. The URL is checked when the client gives it (a literal address, `localhost`), and
again where the connection is made: `PublicOnlyResolver` keeps only public addresses of a name, so a name
that resolves elsewhere on the second lookup (DNS rebinding) gains nothing. Redirects are either not
followed (webhooks) or each checked like the first URL (zipurl).
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from .errors import BadRequest


def internal(address: str) -> bool:
    """Loopback, private, link-local, multicast, reserved or unspecified: not a place for a client to send us."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def internal_host(host: str) -> bool:
    """A URL's host that is internal on its face: an internal address literal, or a `localhost` name."""
    host = host.strip("[]").rstrip(".").lower()  # `localhost.` is `localhost`
    try:
        return internal(host)
    except ValueError:
        return host == "localhost" or host.endswith(".localhost")


class InternalOnly(OSError):
    """A name that resolves to internal addresses only: refused, and no use trying again."""


def refused(exc: BaseException) -> bool:
    """Whether a client error comes from `PublicOnlyResolver` refusing the name (aiohttp wraps it)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        if isinstance(current, InternalOnly):
            return True
        seen.add(id(current))
        stack += [current.__cause__, current.__context__, getattr(current, "os_error", None)]
    return False


class PublicOnlyResolver(AbstractResolver):
    """The system's resolver, keeping only public addresses."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self.inner = inner or DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = [r for r in await self.inner.resolve(host, port, family) if not internal(r["host"])]
        if not results:
            raise InternalOnly(f"{host} resolves only to internal addresses")
        return results

    async def close(self) -> None:
        await self.inner.close()


@dataclass(frozen=True)
class Policy:
    """One kind of client-given URL: how errors name it, what the relay does with it, the operator's flag."""

    what: str                     # "zipurl", "webhook"
    action: str                   # "fetches zip files from", "calls webhooks on"
    flag: str                     # "--zipurl-allow-private"
    error: type[BadRequest] = BadRequest

    def checked(self, text: str, allow_private: bool) -> URL:
        """The URL if the relay may send a request to it; the policy's error naming the rule it breaks."""
        try:
            url = URL(text.strip())
        except ValueError:
            raise self.error(f"Invalid {self.what}: {text!r} is not a URL") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise self.error(f"Invalid {self.what}: only http:// and https:// URLs with a host are allowed")
        if not allow_private and internal_host(url.host):
            raise self.error(f"{self.what} refused: {url.host} is an internal address; this relay {self.action} "
                             f"public addresses only (an operator can allow others with {self.flag})")
        return url


def connector(allow_private: bool) -> aiohttp.TCPConnector:
    """A connector for requests a client asked for: public addresses only unless the operator allows others.
    (aiohttp asks no resolver for an address literal: `Policy.checked` is what refuses those.)"""
    return aiohttp.TCPConnector(resolver=None if allow_private else PublicOnlyResolver())


WEBHOOK = Policy("webhook", "calls webhooks on", "--webhook-allow-private")
