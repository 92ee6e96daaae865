"""Streaming a task's results instead of downloading them: the relay's signed URLs, turned into the sources
QGIS reads over HTTP, and renewed when a saved project is opened after they expired.

A relay answers `GET /task/{uuid}/signed-urls` (with the token) with URLs that open one product each until
an expiry time, without the token (see the relay's proxy/signed_urls.py): rasters become GDAL `/vsicurl/`
sources (read with Range requests, a COG reads only the tiles and overview it shows), the EPT point cloud an
`ept` source over HTTP, the camera positions a `/vsicurl/` GeoJSON. The project file then holds these URLs,
never the token. A URL that has expired when the project is opened again is renewed then
(`renewed_source`, called by QGIS for each layer source as the project is read): the plugin asks the relay
for a fresh one with the token saved for that server. Without one (another user, no token saved, the
relay away), the source stays as it was and QGIS shows the layer as unavailable.

No Qt here: the QGIS side is in `layers.py` and `stream_sources.py`.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..deps import shared
from .products import Product, Results

#: What the plugin streams, and as which product.
STREAMED = {"orthophoto.tif": Product.ORTHOPHOTO, "dsm.tif": Product.DSM, "dtm.tif": Product.DTM,
            "ept.json": Product.POINT_CLOUD_EPT, "shots.geojson": Product.SHOTS}
VSICURL = "/vsicurl/"
#: A signed URL as the relay makes it; the base is everything before /task/ (scheme, host, port, prefix).
SIGNED_URL = re.compile(r"^(?P<base>https?://.+?)/task/(?P<uuid>[0-9A-Za-z_-]{8,128})/signed/(?P<expires>\d{1,11})/"
                        r"(?P<sig>[0-9a-f]{8,64})/(?P<asset>[A-Za-z0-9_.\-]+)$")
#: A URL about to expire is renewed too: a project opened now must still draw in a few minutes.
RENEW_MARGIN = 300


class StreamingUnavailable(Exception):
    """The server cannot stream (a plain NodeODX node, or a relay from before signed URLs)."""


@dataclass(frozen=True)
class StreamedResults:
    """The URLs of a task's streamed products, when they expire, and what the relay said about them."""

    uuid: str
    expires: int
    urls: dict[str, str]                   # asset name -> signed URL
    warnings: list[str] = field(default_factory=list)

    def results(self) -> Results:
        """The products as QGIS sources, in the shape `layers.layer_plan` takes (paths are URLs here)."""
        files: dict[Any, Any] = {}
        for name, url in self.urls.items():
            product = STREAMED.get(name)
            if product is not None:
                files[product] = url if product == Product.POINT_CLOUD_EPT else VSICURL + url
        return Results(Path(), files)


def signed_links(node: shared.Node, uuid: str, assets: str = "") -> dict[str, Any]:
    """The relay's answer to `/task/{uuid}/signed-urls` (`assets=`: which ones, default its streamable ones)."""
    try:
        return node.get_json(f"/task/{uuid}/signed-urls", {"assets": assets} if assets else None)
    except shared.NodeServerError as exc:
        if exc.status in (404, 405):
            raise StreamingUnavailable(
                f"{node.url('/', with_token=False).rstrip('/')} cannot stream results (it is not an ODX Relay, or "
                "an older one); keep a local copy instead") from None
        raise


def stream_task(node: shared.Node, uuid: str) -> StreamedResults:
    """Signed URLs for the task's orthophoto, DSM, DTM, EPT point cloud and camera positions; a warning for
    each raster the relay says is not a COG (it streams, slowly)."""
    answer = signed_links(node, uuid)
    urls, warnings = {}, []
    for name, entry in answer.get("assets", {}).items():
        if name in STREAMED:
            urls[name] = node.url(entry["path"], with_token=False)
        problem = (entry.get("cog") or {}).get("problem")
        if problem:
            warnings.append(f"The relay says the task's {name} is {problem}.")
    return StreamedResults(uuid, int(answer["expires"]), urls, warnings)


@dataclass(frozen=True)
class SignedSource:
    """A layer source that is a signed URL of the relay, taken apart."""

    prefix: str  # "/vsicurl/" or ""
    base: str
    uuid: str
    expires: int
    asset: str


def signed_source(source: str) -> SignedSource | None:
    """The signed URL in a layer source (`/vsicurl/URL` or the URL), or None for any other source."""
    prefix = VSICURL if source.startswith(VSICURL) else ""
    found = SIGNED_URL.match(source[len(prefix):])
    if found is None:
        return None
    return SignedSource(prefix, found["base"], found["uuid"], int(found["expires"]), found["asset"])


class Renewer:
    """Renews expired signed sources as a project is read, asking each relay once per task while its answer
    lasts; `connect(base)` gives a client for a server's base URL with the token saved for it (or raises)."""

    RETRY_AFTER = 60.0  # a relay that could not renew is not asked again for every layer of the project

    def __init__(self, connect: Callable[[str], shared.Node], log: Callable[[str], None] = print,
                 clock: Callable[[], float] = time.time):
        self.connect, self.log, self.clock = connect, log, clock
        self.fresh: dict[tuple[str, str], StreamedResults] = {}  # (base, uuid) -> the relay's last answer
        self.failed: dict[tuple[str, str], float] = {}  # (base, uuid) -> when

    def renewed_source(self, source: str) -> str:
        """`source` with a fresh signed URL if it is one of ours that has expired (or soon will); else as is."""
        signed = signed_source(source)
        if signed is None or signed.expires > self.clock() + RENEW_MARGIN:
            return source
        key = (signed.base, signed.uuid)
        known = self.fresh.get(key)
        if (known is None or known.expires <= self.clock() + RENEW_MARGIN) and \
                self.failed.get(key, -self.RETRY_AFTER) + self.RETRY_AFTER <= self.clock():
            try:
                known = self.fresh[key] = stream_task(self.connect(signed.base), signed.uuid)
            except (shared.GenericError, StreamingUnavailable, ValueError) as exc:
                self.failed[key] = self.clock()
                self.log(f"The streamed results of task {signed.uuid} on {signed.base} could not be renewed "
                         f"(their link expired): {exc}. Load the task's results again, or save the relay's "
                         "token in Settings › Options › ODX Relay.")
        url = known.urls.get(signed.asset) if known is not None else None
        return signed.prefix + url if url else source
