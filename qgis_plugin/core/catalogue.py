"""The relay's results catalogue (a STAC API at `/stac`), read as QGIS 3.22 cannot: it has no STAC data source.

`search` asks `GET /stac/search` (STAC API item search: `bbox` in WGS 84, `datetime` as an RFC 3339 instant or
`start/end` interval with `..` for an open end, `limit`) and follows the `next` links (GET) until it has as
many items as asked or the catalogue has no more. Each STAC Item of the relay is one completed task (its id is
the task's uuid), with its footprint, capture times and assets. No Qt here.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..deps import shared

SEARCH = "/stac/search"
PAGE = 100  # items asked per request


class CatalogueUnavailable(Exception):
    """The server has no STAC catalogue (a plain NodeODX node, or a relay from before it)."""


@dataclass(frozen=True)
class CatalogueItem:
    """One task as the catalogue describes it."""

    uuid: str
    title: str
    start: str                # the capture's start (or only) time, RFC 3339
    end: str
    geometry: dict | None     # GeoJSON, WGS 84: the orthophoto's footprint
    bbox: list | None
    assets: list[str] = field(default_factory=list)

    @classmethod
    def from_stac(cls, feature: dict[str, Any]) -> CatalogueItem:
        props = feature.get("properties") or {}
        start = props.get("start_datetime") or props.get("datetime") or ""
        return cls(uuid=str(feature.get("id", "")), title=str(props.get("title") or feature.get("id", "")),
                   start=start, end=props.get("end_datetime") or start, geometry=feature.get("geometry"),
                   bbox=feature.get("bbox"), assets=sorted((feature.get("assets") or {}).keys()))


def interval(start: dt.datetime | None, end: dt.datetime | None) -> str | None:
    """STAC's `datetime` for a range with either end open ("..")."""
    if start is None and end is None:
        return None

    def text(when: dt.datetime | None) -> str:
        if when is None:
            return ".."
        when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
        return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    return f"{text(start)}/{text(end)}"


def search(node: shared.Node, bbox: tuple[float, float, float, float] | None = None,
           start: dt.datetime | None = None, end: dt.datetime | None = None, limit: int = 50) -> list[CatalogueItem]:
    """The catalogue's items inside `bbox` (west, south, east, north in degrees) captured between `start` and
    `end`, newest capture first, at most `limit` of them."""
    query: dict[str, Any] = {"limit": min(PAGE, max(1, limit))}
    if bbox is not None:
        query["bbox"] = ",".join(f"{value:.8f}" for value in bbox)
    when = interval(start, end)
    if when:
        query["datetime"] = when
    path: str | None = SEARCH
    found: list[CatalogueItem] = []
    while path is not None and len(found) < limit:
        try:
            page = node.get_json(path, query)
        except shared.NodeServerError as exc:
            if exc.status in (404, 405) and path == SEARCH:
                raise CatalogueUnavailable(
                    f"{node.url('/', with_token=False).rstrip('/')} has no results catalogue (it is not an ODX Relay, "
                    "or an older one): “List tasks” shows its tasks") from None
            raise
        found += [CatalogueItem.from_stac(f) for f in page.get("features", []) if isinstance(f, dict)]
        path, query = next_page(node, page)
    return found[:limit]


def next_page(node: shared.Node, page: dict[str, Any]) -> tuple[str | None, dict[str, str]]:
    """The path and query of the page's `next` link (GET), relative to the node's base; (None, {}) at the end."""
    for link in page.get("links", []):
        if isinstance(link, dict) and link.get("rel") == "next" and link.get("method", "GET") == "GET":
            parts = urlsplit(str(link.get("href", "")))
            path = parts.path
            if node.base_path and path.startswith(node.base_path):
                path = path[len(node.base_path):]
            return path, {k: v for k, v in parse_qsl(parts.query) if k != "token"}  # the client adds its own
    return None, {}
