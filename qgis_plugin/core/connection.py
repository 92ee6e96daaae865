"""Which server to talk to, with which token, through which proxy.

The settings page keeps one server and its token; a run can name another server. The saved token is
only ever sent to the saved server, so typing a different URL in a dialog does not leak it. Scripts
and `qgis_process` runs, which have no settings page, can use `?token=` in the URL or the
ODX_RELAY_URL / ODX_RELAY_TOKEN environment variables.

Proxies follow QGIS's own network settings (Options › Network), read here from their `proxy/*` keys,
because the client is requests-based and QGIS's QNetworkAccessManager proxy does not apply to it.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

from ..deps import shared

ENV_URL, ENV_TOKEN = "ODX_RELAY_URL", "ODX_RELAY_TOKEN"
SETTINGS_HINT = "Settings › Options › ODX Relay"


class ConnectionError(ValueError):
    """No usable server address."""


def normalize_url(url: str) -> str:
    """`host:port` → `http://host:port`; trailing slashes and the token query dropped (for comparing)."""
    url = (url or "").strip()
    if not url:
        return ""
    parts = urlsplit(url if "://" in url else "http://" + url)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), "", ""))


def url_token(url: str) -> str:
    parts = urlsplit(url if "://" in url else "http://" + url)
    return parse_qs(parts.query).get("token", [""])[0]


@dataclass(frozen=True)
class Connection:
    url: str
    token: str = ""
    proxies: Mapping[str, str] | None = None

    @property
    def display_url(self) -> str:
        """The address without its token, for messages and logs."""
        return normalize_url(self.url)

    def node(self, timeout: float = 30) -> shared.Node:
        kwargs: dict[str, Any] = {"proxies": dict(self.proxies) if self.proxies else None}
        if self.token:
            kwargs["token"] = self.token
        try:
            return shared.Node.from_url(self.url.strip(), timeout, **kwargs)
        except ValueError as exc:
            raise ConnectionError(f"{self.url!r} is not a server address: {exc}. Write it like "
                                  "http://relay.example.com:3000") from None


def resolve_connection(run_url: str | None, saved_url: str | None, saved_token: str | None,
                       environ: Mapping[str, str], proxies: Mapping[str, str] | None = None) -> Connection:
    """The server and token for one run: the run's URL, else ODX_RELAY_URL, else the saved one.

    Token: one in the URL wins, then ODX_RELAY_TOKEN, then the saved token if the server is the
    saved server."""
    url = (run_url or "").strip() or environ.get(ENV_URL, "").strip() or (saved_url or "").strip()
    if not url:
        raise ConnectionError(f"No server set: enter the URL of your ODX Relay or NodeODX node in "
                              f"{SETTINGS_HINT}, or in the algorithm's Server field")
    token = url_token(url) or environ.get(ENV_TOKEN, "")
    if not token and saved_token and normalize_url(url) == normalize_url(saved_url or ""):
        token = saved_token
    return Connection(url, token, proxies)


_TRUE = {"true", "1", "yes"}


def proxies_for(url: str, settings: Mapping[str, Any]) -> dict[str, str] | None:
    """requests' `proxies` for `url` from QGIS's `proxy/*` settings; None means requests' defaults
    (which include the system's proxy environment, as QGIS's "Default proxy" does)."""
    if str(settings.get("proxy/proxyEnabled", "false")).strip().lower() not in _TRUE:
        return None
    scheme = {"HttpProxy": "http", "HttpCachingProxy": "http", "Socks5Proxy": "socks5h"}.get(
        str(settings.get("proxy/proxyType", "DefaultProxy")))
    host = str(settings.get("proxy/proxyHost") or "").strip()
    if scheme is None or not host:
        return None
    target = normalize_url(url)
    for key in ("proxy/proxyExcludedUrls", "proxy/noProxyUrls"):
        excluded = settings.get(key) or ""
        entries = excluded if isinstance(excluded, (list, tuple)) else str(excluded).split("|")
        if any(e.strip() and target.startswith(normalize_url(e)) for e in entries):
            return None
    user = str(settings.get("proxy/proxyUser") or "")
    password = str(settings.get("proxy/proxyPassword") or "")
    credentials = f"{quote(user, safe='')}:{quote(password, safe='')}@" if user else ""
    port = str(settings.get("proxy/proxyPort") or "").strip()
    address = f"{scheme}://{credentials}{host}{':' + port if port and port != '0' else ''}"
    return {"http": address, "https": address}
