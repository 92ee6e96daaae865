"""The relay's results as a STAC API subset, per owner: each completed task is a STAC Item (id = its uuid), in
one collection of the owner's tasks, found by bbox, datetime and ids, with assets that point at the relay's own
download URLs (`/task/{uuid}/download/<name>`, the names `downloads.resolve` serves).

Items are built on each request from the facts read once from the task's all.zip (`result_facts.py`, kept in the
store; thumbnails are served from the results store, `result_facts.thumbnail_of`); the search runs on the store's
facts index (`Store.search_facts`), newest capture first, paged by a cursor on (capture start, uuid) carried in the
`next` link, so a page costs the same wherever it is.

The token is taken as NodeODX clients send it (`?token=`) or as `Authorization: Bearer`; a token given in the
query is carried in every link and asset href (a STAC client follows them as given), a header is not (the client
sends it again). Errors are answered as the STAC API says, `{"code": ..., "description": ...}` with a real
HTTP status; another owner's task answers 404, as a task that does not exist.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from shared.assets import ALL_ZIP, POINT_CLOUD_PREFERENCE, Product, asset_by_name, asset_for
from shared.options import loads_limited

from .errors import DownloadError, HTTPError, RelayError
from .models import Stage, TaskRecord
from .result_facts import COG_MEDIA_TYPE, GEOTIFF_MEDIA_TYPE, thumbnail_of
from .staging import valid_uuid
from .state import RELAY, Relay
from .store import COMPLETED, FactsQuery, list_fields

STAC_VERSION = "1.1.0"
PROJECTION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
RASTER = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
ROOT = "/stac"
COLLECTION = "odx-tasks"
DEFAULT_LIMIT, MAX_LIMIT = 10, 1000
CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0/item-search",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]
GEOJSON = "application/geo+json"
JSON = "application/json"
POINT_CLOUD_ROLES = ["data", "pointcloud"]


class StacError(HTTPError):
    """An error answered as the STAC API says: `{"code": ..., "description": ...}`."""

    def __init__(self, status: int, code: str, description: str):
        super().__init__(status, description)
        self.code = code

    def body(self) -> dict[str, Any]:
        # `error` too, as every other error of the relay says it (clients of the NodeODX API read that key)
        return {"code": self.code, "description": str(self), "error": str(self)}


def stac_errors(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """The relay's own errors (a missing or wrong token) as STAC API errors too."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except StacError:
            raise
        except RelayError as exc:
            status = exc.status if exc.status >= 400 else 400
            code = {401: "Unauthorized", 403: "Forbidden", 404: "NotFound"}.get(status, "BadRequest")
            raise StacError(status, code, str(exc)) from None
    wrapped.__name__ = handler.__name__
    return wrapped


# --- what a request asks --------------------------------------------------------------------------------
class Links:
    """Absolute URLs on this relay, with the client's `?token=` when it sent one that way."""

    def __init__(self, request: web.Request):
        self.base = str(request.url.origin())
        token = request.query.get("token", "")
        self.token = {"token": token} if token else {}

    def url(self, path: str, **query: Any) -> str:
        params = {**{k: v for k, v in query.items() if v is not None}, **self.token}
        return self.base + path + ("?" + urlencode(params) if params else "")

    def link(self, rel: str, path: str, kind: str = JSON, **extra: Any) -> dict[str, Any]:
        return {"rel": rel, "href": self.url(path), "type": kind, **extra}


def parse_bbox(value: Any) -> tuple[float, float, float, float] | None:
    """`w,s,e,n` (or a 3D `w,s,zmin,e,n,zmax`) as text or a JSON list, in WGS 84 degrees."""
    if value is None or value == "":
        return None
    parts = value.split(",") if isinstance(value, str) else value
    try:
        numbers = [float(v) for v in parts if not isinstance(v, bool)] if isinstance(parts, list) else []
    except (TypeError, ValueError, OverflowError):
        numbers = []
    if len(numbers) == 6:
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    if len(numbers) != 4 or not all(math.isfinite(n) for n in numbers):
        raise StacError(400, "InvalidParameterValue", "bbox must be 4 numbers, west,south,east,north in WGS 84 "
                                                      "degrees (or 6 with heights), e.g. bbox=13.3,52.4,13.5,52.6")
    west, south, east, north = numbers
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= north <= 90):
        raise StacError(400, "InvalidParameterValue", "bbox is out of range: longitudes within [-180, 180], "
                                                      "latitudes within [-90, 90] and south <= north")
    return west, south, east, north


def parse_datetime(value: Any) -> tuple[int | None, int | None]:
    """A single RFC 3339 time, or an interval `start/end` with `..` (or nothing) for an open end, as ms."""
    if value is None or value == "":
        return None, None
    if not isinstance(value, str):
        raise StacError(400, "InvalidParameterValue", "datetime must be a string")
    if "/" not in value:
        instant = _instant(value)
        return instant, instant
    if value.count("/") != 1:
        raise StacError(400, "InvalidParameterValue", "datetime is one time or one interval 'start/end'")
    start, end = (None if part in ("", "..") else _instant(part) for part in value.split("/"))
    if start is None and end is None:
        raise StacError(400, "InvalidParameterValue", "datetime '../..' is open at both ends: leave it out instead")
    if start is not None and end is not None and start > end:
        raise StacError(400, "InvalidParameterValue", "datetime interval ends before it starts")
    return start, end


def _instant(text: str) -> int:
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("z", "Z"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return int(moment.timestamp() * 1000)
    except (ValueError, OverflowError, OSError):
        raise StacError(400, "InvalidParameterValue", f"datetime {text[:60]!r} is not an RFC 3339 time such as "
                                                      "2024-05-04T10:00:00Z") from None


def parse_limit(value: Any) -> int:
    if value is None or value == "":
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except (TypeError, ValueError, OverflowError):
        limit = 0
    if limit < 1 or isinstance(value, bool):
        raise StacError(400, "InvalidParameterValue", "limit must be a whole number of 1 or more")
    return min(limit, MAX_LIMIT)


def parse_list(value: Any, name: str) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        values = tuple(v.strip() for v in value.split(",") if v.strip())
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        values = tuple(value)
    else:
        raise StacError(400, "InvalidParameterValue", f"{name} must be a list of strings")
    if len(values) > MAX_LIMIT:
        raise StacError(400, "InvalidParameterValue", f"{name} may name at most {MAX_LIMIT}")
    return values


def parse_cursor(value: Any) -> tuple[int, str] | None:
    if value is None or value == "":
        return None
    try:
        start, uuid = base64.urlsafe_b64decode(str(value).encode() + b"==").decode().split(" ", 1)
        if abs(int(start)) < 2 ** 53 and valid_uuid(uuid):
            return int(start), uuid
        raise ValueError("out of range")
    except (ValueError, UnicodeDecodeError):
        raise StacError(400, "InvalidParameterValue", "cursor is not one this relay gave in a next link: "
                                                      "start the search again") from None


def cursor_of(facts: dict[str, Any], uuid: str) -> str:
    return base64.urlsafe_b64encode(f"{facts.get('start_ms', 0)} {uuid}".encode()).decode().rstrip("=")


SEARCH_FIELDS = ("bbox", "datetime", "ids", "collections", "limit", "cursor", "intersects", "token")


def search_query(params: Mapping[str, Any]) -> tuple[FactsQuery, int, bool]:
    """(the store's query, the page size, whether the collections asked for exclude ours) from GET or POST."""
    if params.get("intersects") not in (None, ""):
        raise StacError(400, "InvalidParameterValue", "intersects is not supported by this relay: use bbox")
    start, end = parse_datetime(params.get("datetime"))
    collections = parse_list(params.get("collections"), "collections")
    query = FactsQuery(bbox=parse_bbox(params.get("bbox")), start_ms=start, end_ms=end,
                       ids=parse_list(params.get("ids"), "ids"), after=parse_cursor(params.get("cursor")))
    return query, parse_limit(params.get("limit")), bool(collections) and COLLECTION not in collections


# --- items ----------------------------------------------------------------------------------------------
def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat().replace("+00:00", "Z")


def item(links: Links, task: TaskRecord, facts: dict[str, Any] | None) -> dict[str, Any]:
    """The STAC Item of a completed task, from its facts (None: not read yet, said in `odx:missing`)."""
    path = f"{ROOT}/collections/{COLLECTION}/items/{task.uuid}"
    info = task.last_info if isinstance(task.last_info, dict) else {}
    props: dict[str, Any] = {"title": task.name or info.get("name") or task.uuid, "created": iso(task.created_ms),
                             "odx:images": list_fields(task)[1], "odx:processing_ms": list_fields(task)[2]}
    extensions: list[str] = []
    assets: dict[str, Any] = {ALL_ZIP: {"href": links.url(f"/task/{task.uuid}/download/{ALL_ZIP}"),
                                        "type": "application/zip", "roles": ["data", "archive"],
                                        "title": "All results (all.zip)"}}
    if facts is None:
        props["datetime"] = iso(task.created_ms)
        props["odx:missing"] = ["the results have not been read yet (the relay reads them once the task "
                                "completes): try again shortly"]
        geometry, bbox = None, None
    else:
        start, end = facts.get("start_ms", task.created_ms), facts.get("end_ms", task.created_ms)
        props["datetime"] = iso(start)
        if end != start:
            props["start_datetime"], props["end_datetime"] = iso(start), iso(end)
        props["odx:datetime_from"] = facts.get("times_from", "")
        props["odx:missing"] = list(facts.get("missing", []))
        geometry, bbox = facts.get("geometry"), facts.get("bbox")
        proj = facts.get("proj")
        if proj:
            extensions.append(PROJECTION)
            props.update(_proj_fields(proj))
        assets.update(_assets(links, task, facts, extensions))
    out = {"type": "Feature", "stac_version": STAC_VERSION, "stac_extensions": sorted(set(extensions)),
           "id": task.uuid, "geometry": geometry, "properties": props, "links": [
               links.link("self", path, GEOJSON), links.link("root", ROOT),
               links.link("parent", f"{ROOT}/collections/{COLLECTION}"),
               links.link("collection", f"{ROOT}/collections/{COLLECTION}")],
           "assets": assets, "collection": COLLECTION}
    if bbox:
        out["bbox"] = bbox
    return out


def _proj_fields(proj: dict[str, Any]) -> dict[str, Any]:
    return {"proj:code": proj.get("code"), "proj:shape": proj.get("shape"), "proj:transform": proj.get("transform"),
            "proj:bbox": proj.get("bbox")}


def _assets(links: Links, task: TaskRecord, facts: dict[str, Any], extensions: list[str]) -> dict[str, Any]:
    have = facts.get("assets", {})
    out: dict[str, Any] = {}

    def add(key: str, name: str, title: str, roles: list[str], kind: str | None = None) -> dict[str, Any] | None:
        asset = asset_by_name(name)
        if name not in have or asset is None:
            return None
        out[key] = {"href": links.url(f"/task/{task.uuid}/download/{name}"), "type": kind or asset.media_type,
                    "title": title, "roles": roles}
        return out[key]

    ortho = asset_for(Product.ORTHOPHOTO).name
    if ortho in have:
        kind = COG_MEDIA_TYPE if have[ortho].get("cog") else GEOTIFF_MEDIA_TYPE
        entry = add("orthophoto", ortho, "Orthophoto", ["visual"], kind)
        _raster(entry, have[ortho], facts, extensions)
    for product, title in ((Product.DSM, "Digital surface model"), (Product.DTM, "Digital terrain model")):
        name = asset_for(product).name
        if name in have:
            kind = COG_MEDIA_TYPE if have[name].get("cog") else GEOTIFF_MEDIA_TYPE
            entry = add(product.value, name, title, ["data"], kind)
            _raster(entry, have[name], facts, extensions)
    for product in POINT_CLOUD_PREFERENCE:
        asset = asset_for(product)
        add(f"pointcloud_{product.value}", asset.name, asset.description, POINT_CLOUD_ROLES)
    add("report", asset_for(Product.REPORT).name, "Processing report", ["metadata"])
    add("camera_positions", asset_for(Product.SHOTS).name, "Camera positions, one point per photo", ["metadata"])
    if facts.get("thumbnail"):
        out["thumbnail"] = {"href": links.url(f"{ROOT}/collections/{COLLECTION}/items/{task.uuid}/thumbnail.png"),
                            "type": "image/png", "title": "Thumbnail of the orthophoto", "roles": ["thumbnail"]}
    return out


def _raster(entry: dict[str, Any] | None, raster: dict[str, Any], facts: dict[str, Any],
            extensions: list[str]) -> None:
    """`raster:bands` (type, nodata) of a GeoTIFF asset, and its projection where it differs from the item's."""
    if entry is None:
        return
    bands = []
    for band in raster.get("bands", []):
        out: dict[str, Any] = {"data_type": {"byte": "uint8"}.get(band.get("data_type", ""), band.get("data_type"))}
        if "nodata" in band:
            out["nodata"] = band["nodata"]
        bands.append(out)
    if bands:
        entry["raster:bands"] = bands
        extensions.append(RASTER)
    proj = raster.get("proj")
    if proj and proj != facts.get("proj"):
        entry.update(_proj_fields(proj))
        extensions.append(PROJECTION)


# --- handlers -------------------------------------------------------------------------------------------
async def owner_of(request: web.Request) -> tuple[Relay, str]:
    relay = request.app[RELAY]
    return relay, await relay.auth.identify(request)


def stac_json(body: Any, kind: str = JSON, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), content_type=kind.split(";")[0], status=status)


@stac_errors
async def landing(request: web.Request) -> web.Response:
    await owner_of(request)
    links = Links(request)
    return stac_json({
        "type": "Catalog", "stac_version": STAC_VERSION, "id": "odx-relay", "title": "ODX Relay results",
        "description": "The completed tasks of this token's owner, as STAC Items (id: the task's uuid)",
        "conformsTo": CONFORMANCE, "links": [
            links.link("self", ROOT), links.link("root", ROOT),
            links.link("conformance", f"{ROOT}/conformance"), links.link("data", f"{ROOT}/collections"),
            links.link("child", f"{ROOT}/collections/{COLLECTION}", title="Tasks"),
            links.link("search", f"{ROOT}/search", GEOJSON, method="GET"),
            links.link("search", f"{ROOT}/search", GEOJSON, method="POST"),
            links.link("service-desc", "/openapi.json", "application/vnd.oai.openapi+json;version=3.0")]})


@stac_errors
async def conformance(request: web.Request) -> web.Response:
    await owner_of(request)
    return stac_json({"conformsTo": CONFORMANCE})


async def collection_body(relay: Relay, owner: str, links: Links) -> dict[str, Any]:
    extent = await relay.store.facts_extent(owner)
    bbox = (extent or {}).get("bbox") or [-180.0, -90.0, 180.0, 90.0]
    interval = [iso(extent["start_ms"]), iso(extent["end_ms"])] if extent else [None, None]
    path = f"{ROOT}/collections/{COLLECTION}"
    return {"type": "Collection", "stac_version": STAC_VERSION, "stac_extensions": [], "id": COLLECTION,
            "title": "Tasks", "description": "This owner's completed tasks: orthophoto, elevation models, point "
                                             "cloud, report and camera positions of each",
            "license": "other", "extent": {"spatial": {"bbox": [bbox]}, "temporal": {"interval": [interval]}},
            "links": [links.link("self", path), links.link("root", ROOT), links.link("parent", ROOT),
                      links.link("items", f"{path}/items", GEOJSON)]}


@stac_errors
async def collections(request: web.Request) -> web.Response:
    relay, owner = await owner_of(request)
    links = Links(request)
    return stac_json({"collections": [await collection_body(relay, owner, links)],
                      "links": [links.link("self", f"{ROOT}/collections"), links.link("root", ROOT)]})


def check_collection(request: web.Request) -> None:
    if request.match_info["collection"] != COLLECTION:
        raise StacError(404, "NotFound", f"No collection {request.match_info['collection'][:80]!r}: this relay "
                                         f"has one, {COLLECTION!r}")


@stac_errors
async def collection(request: web.Request) -> web.Response:
    relay, owner = await owner_of(request)
    check_collection(request)
    return stac_json(await collection_body(relay, owner, Links(request)))


async def completed_task(request: web.Request) -> tuple[Relay, TaskRecord]:
    """The owner's completed task named in the path; 404 for anything else (another owner's looks the same)."""
    relay, owner = await owner_of(request)
    check_collection(request)
    uuid = request.match_info["uuid"]
    task = await relay.store.get_task(uuid) if valid_uuid(uuid) else None
    if task is None or task.owner != owner or task.stage == Stage.UPLOADING:
        raise StacError(404, "NotFound", f"No item {uuid[:80]!r} in this collection")
    if task.stage != Stage.ON_NODE or list_fields(task)[0] != COMPLETED:
        raise StacError(404, "NotFound", f"Task {uuid} has not completed: only completed tasks are items (see "
                                         f"/task/{uuid}/info)")
    return relay, task


@stac_errors
async def item_by_uuid(request: web.Request) -> web.Response:
    relay, task = await completed_task(request)
    return stac_json(item(Links(request), task, await relay.store.get_facts(task.uuid)), GEOJSON)


@stac_errors
async def thumbnail(request: web.Request) -> web.Response:
    relay, task = await completed_task(request)
    try:
        png = await thumbnail_of(relay, task)
    except (DownloadError, OSError) as exc:  # not in the results store, and the zip to make it from is away
        raise StacError(503, "ServiceUnavailable", f"The thumbnail of task {task.uuid} is made from its results, "
                                                   f"which cannot be had now ({exc}): try again later") from None
    if png is None:
        raise StacError(404, "NotFound", f"Task {task.uuid} has no thumbnail (no 8-bit orthophoto, or its results "
                                         "have not been read yet)")
    return web.Response(body=png, content_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


async def search_page(request: web.Request, params: Mapping[str, Any], path: str,
                      post: bool = False) -> web.Response:
    relay, owner = await owner_of(request)
    query, limit, other_collection = search_query(params)
    links = Links(request)
    found = [] if other_collection else await relay.store.search_facts(owner, query, limit + 1)
    tasks = [await relay.store.get_task(uuid) for uuid, _ in found[:limit]]
    features = [item(links, task, facts) for task, (_, facts) in zip(tasks, found) if task is not None]
    page_links = [links.link("self", path, GEOJSON), links.link("root", ROOT)]
    if len(found) > limit:
        cursor = cursor_of(found[limit - 1][1], found[limit - 1][0])
        if post:
            body = {k: v for k, v in params.items() if k in SEARCH_FIELDS and k != "token"}
            page_links.append({"rel": "next", "href": links.url(path), "type": GEOJSON, "method": "POST",
                               "body": {**body, "cursor": cursor}, "merge": False})
        else:
            kept = {k: v for k, v in params.items() if k in SEARCH_FIELDS and k not in ("token", "cursor")}
            page_links.append({"rel": "next", "href": links.url(path, **kept, cursor=cursor), "type": GEOJSON,
                               "method": "GET"})
    return stac_json({"type": "FeatureCollection", "features": features, "links": page_links,
                      "numberReturned": len(features)}, GEOJSON)


@stac_errors
async def items(request: web.Request) -> web.Response:
    await owner_of(request)  # a wrong token is said before anything else
    check_collection(request)
    params = {k: v for k, v in request.query.items() if k != "collections"}
    return await search_page(request, params, request.path)


@stac_errors
async def search_get(request: web.Request) -> web.Response:
    return await search_page(request, request.query, f"{ROOT}/search")


@stac_errors
async def search_post(request: web.Request) -> web.Response:
    await owner_of(request)
    try:
        body = await request.json(loads=lambda text: loads_limited(text, "the search body")) \
            if request.can_read_body else {}
    except ValueError as exc:
        raise StacError(400, "BadRequest", f"The search body must be a JSON object: {exc}") from None
    if not isinstance(body, dict):
        raise StacError(400, "BadRequest", "The search body must be a JSON object")
    return await search_page(request, {**body, "token": request.query.get("token")}, f"{ROOT}/search", post=True)


def add_stac_routes(app: web.Application) -> None:
    collection_path = f"{ROOT}/collections/{{collection:[^/]+}}"  # any name (then a 404 in words), braces too
    app.router.add_get(ROOT, landing)
    app.router.add_get(f"{ROOT}/conformance", conformance)
    app.router.add_get(f"{ROOT}/collections", collections)
    app.router.add_get(collection_path, collection)
    app.router.add_get(f"{collection_path}/items", items)
    app.router.add_get(f"{collection_path}/items/{{uuid:[^/]+}}", item_by_uuid)
    app.router.add_get(f"{collection_path}/items/{{uuid:[^/]+}}/thumbnail.png", thumbnail)
    app.router.add_get(f"{ROOT}/search", search_get)
    app.router.add_post(f"{ROOT}/search", search_post)
