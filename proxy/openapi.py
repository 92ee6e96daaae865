"""The relay's API as an OpenAPI 3.0 document, served at `GET /openapi.json` (no token needed).

Written by hand to match routes.py, admin.py and webhooks.py; tests/hostile checks that every route the
application registers is described here and nothing else is, and fuzzes the relay from this document.

Two habits of NodeODX shape it. Task-level errors are HTTP 200 with `{"error": "..."}`, so most NodeODX
operations document 200 as "the result or an Error"; pyodx and WebODM depend on that. And form bodies
come urlencoded or multipart as clients send them; the relay also takes the same fields as JSON.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from . import __version__
from .replies import API_VERSION
from .state import OPENAPI_DOCUMENT as DOCUMENT

PATH = "/openapi.json"
JSON = "application/json"
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data", JSON)
MULTIPART = ("multipart/form-data",)            # /task/new/init reads nothing else, as NodeODX (multer)
COMMAND_BODIES = ("application/x-www-form-urlencoded", JSON)  # cancel/remove/restart, as NodeODX

Schema = dict[str, Any]


def ref(name: str, kind: str = "schemas") -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


def json_body(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def result_or_error(schema: Schema, description: str) -> Schema:
    """HTTP 200 as NodeODX answers it: the result, or `{"error": ...}` for a task-level problem."""
    return json_body({"anyOf": [schema, ref("Error")]}, description + ", or an Error (NodeODX answers task-level "
                                                                      "errors as HTTP 200)")


def form_body(properties: dict[str, Schema], required: tuple[str, ...] = (), media: tuple[str, ...] = FORMS) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return {"required": bool(required), "content": {kind: {"schema": schema} for kind in media}}


def operation(summary: str, tag: str, responses: dict[str, Any], *, op_id: str, description: str = "",
              parameters: list[Schema] | None = None, body: Schema | None = None,
              security: list[dict[str, list]] | None = None, errors: tuple[str, ...] = ()) -> Schema:
    """One operation; `errors` names the shared responses (Unauthorized, ...) it can also give."""
    op: Schema = {"operationId": op_id, "summary": summary, "tags": [tag], "responses": dict(responses)}
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = parameters
    if body:
        op["requestBody"] = body
    if security is not None:
        op["security"] = security
    for name in errors:
        op["responses"][ERROR_RESPONSES[name]] = ref(name, "responses")
    op["responses"]["503"] = ref("StoreUnavailable", "responses")
    op["responses"]["500"] = ref("InternalError", "responses")
    return op


ERROR_RESPONSES = {"BadRequest": "400", "Unauthorized": "401", "Forbidden": "403", "NotFound": "404",
                   "Conflict": "409", "PayloadTooLarge": "413", "TooManyRequests": "429"}
AUTH = ("Unauthorized", "Forbidden")  # what a missing or wrong token causes
FORM = AUTH + ("PayloadTooLarge",)  # and a form body over the relay's 16 MB (files are streamed instead)
NO_TOKEN: list[dict[str, list]] = []
ADMIN_SECURITY = [{"adminBearer": []}, {"adminQuery": []}]

UUID_PARAM = {"name": "uuid", "in": "path", "required": True, "description": "The task's uuid",
              "schema": {"type": "string"}}
NODE_PARAM = {"name": "node_id", "in": "path", "required": True, "description": "A node id from GET /admin/nodes",
              "schema": {"type": "string"}}
SET_UUID = {"name": "set-uuid", "in": "header", "required": False,
            "description": "Create the task under this uuid (lowercase or uppercase UUID) instead of a new one; "
                           "refused when it is not a UUID or already in use",
            "schema": {"type": "string"}}
LIST_PARAMS = [
    {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1},
     "description": "Answer one page of at most this many tasks (without it: the whole list, as NodeODX)"},
    {"name": "offset", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0},
     "description": "Where the page starts in the list, oldest first (default 0)"},
    {"name": "with_info", "in": "query", "required": False, "schema": {"type": "boolean"},
     "description": "`true`: each entry is the task's whole info, as `/task/{uuid}/info` answers it, and `node`, "
                    "the node holding it (null while the task waits in the relay's queue); NodeODX ignores it"},
    {"name": "status", "in": "query", "required": False, "schema": {"type": "string"}, "example": "40,50",
     "description": "Only tasks in these statuses: codes or names, comma-separated (10 queued, 20 running, 30 failed, "
                    "40 completed, 50 canceled), as the relay last knew them (a task in its queue: 10, canceled "
                    "there 50, failed there 30; on a node: its last info's, 10 until one is learned)"},
    {"name": "created_after", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "Only tasks created at or after this time: ms since 1970, or ISO 8601 (UTC unless it says)"},
    {"name": "created_before", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "Only tasks created before this time: ms since 1970, or ISO 8601 (UTC unless it says)"},
    {"name": "name", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "Only tasks whose name contains this, in any case"},
    {"name": "min_duration", "in": "query", "required": False, "schema": {"type": "number", "minimum": 0},
     "description": "Only tasks whose processing time (`processingTime`, last known) is at least this many seconds"},
    {"name": "max_duration", "in": "query", "required": False, "schema": {"type": "number", "minimum": 0},
     "description": "Only tasks whose processing time is at most this many seconds (-1, not started, counts as less)"},
    {"name": "sort", "in": "query", "required": False, "example": "created.desc", "schema": {
        "type": "string", "pattern": "^(created|status|images|duration)(\\.(asc|desc))?$", "default": "created.asc"},
     "description": "The order: by creation time, status code, image count or processing time, `.asc` or `.desc`; "
                    "ties by creation time then uuid, in the same direction. Default: oldest first, as NodeODX"}]
TASK_FIELDS: dict[str, Schema] = {
    "name": {"type": "string", "description": "A name for the task"},
    "options": {"type": "string", "description": 'Processing options as JSON: [{"name": "dsm", "value": true}, '
                                                 '...] (checked against GET /options)'},
    "webhook": {"type": "string", "description": "URL the relay POSTs the task's info to when it ends: http(s), "
                                                 "on a public address unless the operator allows others "
                                                 "(--webhook-allow-private); refused at creation otherwise"},
    "skipPostProcessing": {"type": "string", "description": "true to skip point-cloud tiles, COG and glTF"},
    "outputs": {"type": "string", "description": "JSON list of paths to keep in all.zip"},
    "dateCreated": {"type": "string", "description": "Creation time, milliseconds since the epoch"},
}
UUID_FIELD = {"uuid": {"type": "string", "description": "The task's uuid"}}
FILES = {"type": "array", "items": {"type": "string", "format": "binary"},
         "description": "One or more files: photos, and optionally gcp_list.txt, geo.txt, image_groups.txt"}


def schemas() -> dict[str, Schema]:
    status = {"type": "object", "required": ["code"], "properties": {
        "code": {"type": "integer", "enum": [10, 20, 30, 40, 50],
                 "description": "10 queued, 20 running, 30 failed, 40 completed, 50 canceled"},
        "errorMessage": {"type": "string"}}}
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}},
                  "description": "What went wrong, in words a person can act on"},
        "Success": {"type": "object", "required": ["success"], "properties": {
            "success": {"type": "boolean"}, "error": {"type": "string", "description": "Why, when success is false"}}},
        "Uuid": {"type": "object", "required": ["uuid"], "properties": {"uuid": {"type": "string"}}},
        "Token": {"type": "object", "required": ["token"], "properties": {"token": {"type": "string"}}},
        "Info": {"type": "object", "description": "The cluster summed over its online nodes (never made-up numbers)",
                 "required": ["version", "taskQueueCount", "maxParallelTasks", "relay"], "properties": {
                     "version": {"type": "string"}, "taskQueueCount": {"type": "integer"},
                     "totalMemory": {"type": "integer"}, "availableMemory": {"type": "integer"},
                     "cpuCores": {"type": "integer"}, "maxImages": {"type": "integer", "nullable": True},
                     "maxParallelTasks": {"type": "integer"}, "engine": {"type": "string"},
                     "engineVersion": {"type": "string"},
                     "relay": {"type": "object", "description": "The relay's own counts", "properties": {
                         "version": {"type": "string"}, "nodes": {"type": "integer"},
                         "online": {"type": "integer"}, "offline": {"type": "integer"},
                         "locked": {"type": "integer"}, "queued": {"type": "integer"}}}}},
        "Option": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"}, "type": {"type": "string"}, "value": {}, "domain": {},
            "help": {"type": "string"}}},
        "AuthInfo": {"type": "object", "required": ["message"], "properties": {
            "message": {"type": "string"}, "loginUrl": {"type": "string", "nullable": True},
            "registerUrl": {"type": "string", "nullable": True}}},
        "TaskStatus": status,
        "TaskInfo": {"type": "object", "required": ["uuid", "status"],
                     "description": "The node's own task info (the relay's, while the task waits in its queue)",
                     "properties": {
                         "uuid": {"type": "string"}, "name": {"type": "string"},
                         "dateCreated": {"type": "integer"}, "processingTime": {"type": "integer"},
                         "status": ref("TaskStatus"), "options": {"type": "array", "items": {"type": "object"}},
                         "imagesCount": {"type": "integer"}, "progress": {"type": "number"},
                         "output": {"type": "array", "items": {"type": "string"}}}},
        "Node": {"type": "object", "required": ["id", "url", "locked", "online"],
                 "description": "A node as the admin API shows it: never its token", "properties": {
                     "id": {"type": "string"}, "url": {"type": "string"}, "label": {"type": "string"},
                     "locked": {"type": "boolean"}, "online": {"type": "boolean"},
                     "failures": {"type": "integer"}, "hasToken": {"type": "boolean"},
                     "info": {"type": "object", "nullable": True}, "lastError": {"type": "string"},
                     "infoAge": {"type": "number", "nullable": True}}},
        "SignedUrls": {"type": "object", "required": ["uuid", "expires", "assets"], "properties": {
            "uuid": {"type": "string"},
            "expires": {"type": "integer", "description": "When the URLs stop working, seconds since 1970"},
            "assets": {"type": "object", "additionalProperties": {"type": "object", "required": ["path", "href"],
                "properties": {
                    "path": {"type": "string", "description": "The URL's path from the relay's root"},
                    "href": {"type": "string", "description": "The whole URL, as this request reached the relay"},
                    "scope": {"type": "string", "description": "What the signature opens: the file, or `ept`"},
                    "cog": {"type": "object", "description": "Rasters only: whether it streams well", "properties": {
                        "cog": {"type": "boolean"}, "tiled": {"type": "boolean"},
                        "overviews": {"type": "integer"}, "width": {"type": "integer"},
                        "height": {"type": "integer"}, "layout": {"type": "boolean"},
                        "block": {"type": "array", "items": {"type": "integer"}, "nullable": True},
                        "problem": {"type": "string", "description": "What is missing (empty if none)"}}}}}}}},
        "StacError": {"type": "object", "required": ["code", "description"],
                      "description": "A STAC API error (`error` repeats the description, as the relay's other errors "
                                     "say it)", "properties": {
                          "code": {"type": "string"}, "description": {"type": "string"},
                          "error": {"type": "string"}}},
        "StacLink": {"type": "object", "required": ["rel", "href"], "properties": {
            "rel": {"type": "string"}, "href": {"type": "string"}, "type": {"type": "string"},
            "method": {"type": "string"}, "body": {"type": "object"}, "merge": {"type": "boolean"},
            "title": {"type": "string"}}},
        "StacItem": {"type": "object", "required": ["type", "stac_version", "id", "geometry", "properties", "links",
                                                    "assets"],
                     "description": "A completed task as a STAC 1.1 Item (id: its uuid), with the projection and "
                                    "raster extensions; `properties.odx:missing` says what its results lack",
                     "properties": {
                         "type": {"type": "string", "enum": ["Feature"]}, "stac_version": {"type": "string"},
                         "stac_extensions": {"type": "array", "items": {"type": "string"}}, "id": {"type": "string"},
                         "geometry": {"type": "object", "nullable": True},
                         "bbox": {"type": "array", "items": {"type": "number"}},
                         "properties": {"type": "object"}, "links": {"type": "array", "items": ref("StacLink")},
                         "assets": {"type": "object"}, "collection": {"type": "string"}}},
        "StacItemCollection": {"type": "object", "required": ["type", "features", "links"], "properties": {
            "type": {"type": "string", "enum": ["FeatureCollection"]},
            "features": {"type": "array", "items": ref("StacItem")},
            "links": {"type": "array", "items": ref("StacLink"),
                      "description": "`next` (GET: a URL; POST: a body to send again) while there are more"},
            "numberReturned": {"type": "integer"}}},
        "StacCollection": {"type": "object", "required": ["type", "stac_version", "id", "description", "license",
                                                          "extent", "links"], "properties": {
            "type": {"type": "string", "enum": ["Collection"]}, "stac_version": {"type": "string"},
            "id": {"type": "string"}, "title": {"type": "string"}, "description": {"type": "string"},
            "license": {"type": "string"}, "extent": {"type": "object"},
            "links": {"type": "array", "items": ref("StacLink")}}},
        "StacSearch": {"type": "object", "description": "The search as a JSON body (POST /stac/search)",
                       "properties": {
                           "bbox": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 6},
                           "datetime": {"type": "string"}, "ids": {"type": "array", "items": {"type": "string"}},
                           "collections": {"type": "array", "items": {"type": "string"}},
                           "limit": {"type": "integer", "minimum": 1}, "cursor": {"type": "string"}}},
        "NewNode": {"type": "object", "required": ["url"], "properties": {
            "url": {"type": "string", "description": "http(s)://host:port[/prefix][?token=NODE_TOKEN]"},
            "label": {"type": "string"}, "token": {"type": "string", "description": "the node's token"}}},
    }


def responses() -> dict[str, Schema]:
    error = {JSON: {"schema": ref("Error")}}
    return {
        "BadRequest": {"description": "The request is malformed", "content": error},
        "Unauthorized": {"description": "No token given where one is needed", "content": error},
        "Forbidden": {"description": "Wrong token, or an action this credential may not do", "content": error},
        "NotFound": {"description": "No such thing", "content": error},
        "Conflict": {"description": "It exists already", "content": error},
        "PayloadTooLarge": {"description": "A form body over 16 MB (file uploads are streamed instead, and "
                                           "limited by --max-upload-mb)", "content": error},
        "TooManyRequests": {"description": "Too many failed logins from this client or for this username "
                                           "(--login-failures within --login-window seconds); try again later",
                            "headers": {"Retry-After": {"description": "Seconds until a login is taken again",
                                                        "schema": {"type": "integer"}}},
                            "content": error},
        "StoreUnavailable": {"description": "The relay's state store (Redis) is unreachable; retry shortly",
                             "content": error},
        "InternalError": {"description": "A bug in the relay (logged); never a traceback", "content": error},
    }


def paths() -> dict[str, Schema]:
    token, form = {"errors": AUTH}, {"errors": FORM}
    task_ops = "Tasks"
    return {
        "/info": {"get": operation("The cluster's capacity, NodeODX style", "Node", {
            "200": json_body(ref("Info"), "Summed info of the online nodes")}, op_id="getInfo", **token)},
        "/options": {"get": operation("Processing options every node accepts", "Node", {
            "200": json_body({"type": "array", "items": ref("Option")}, "The options")},
            op_id="getOptions", **token)},
        "/auth/info": {"get": operation("How to get a token", "Auth", {
            "200": json_body(ref("AuthInfo"), "Where to log in or register, if accounts are on")},
            op_id="getAuthInfo", security=NO_TOKEN)},
        "/auth/login": {"post": operation("Log in; a fresh token (the previous one stops working)", "Auth", {
            "200": result_or_error(ref("Token"), "The new token")},
            op_id="login", security=NO_TOKEN, errors=("Forbidden", "PayloadTooLarge", "TooManyRequests"),
            description="The password is checked off the relay's event loop. Failed logins are limited per client "
                        "address and per username: past --login-failures within --login-window seconds, HTTP 429 "
                        "with Retry-After, whatever the password.",
            body=form_body({"username": {"type": "string"}, "password": {"type": "string"}}))},
        "/auth/register": {"post": operation("Create an account (with --allow-registration)", "Auth", {
            "200": result_or_error(ref("Token"), "The account's token")},
            op_id="register", security=NO_TOKEN, errors=("BadRequest", "Forbidden", "Conflict", "PayloadTooLarge"),
            body=form_body({"username": {"type": "string"}, "password": {"type": "string"}}))},
        "/task/new/init": {"post": operation("Start a task whose files come in separate uploads", task_ops, {
            "200": result_or_error(ref("Uuid"), "The new task's uuid")}, op_id="taskNewInit",
            description="Refused with an Error when this client already has --max-open-uploads uploads begun "
                        "and never committed (commit them, remove them with /task/remove, or let them expire).",
            parameters=[SET_UUID], body=form_body(TASK_FIELDS, media=MULTIPART), **form)},
        "/task/new/upload/{uuid}": {"post": operation("Add files to a task started with init", task_ops, {
            "200": result_or_error(ref("Success"), "The files are staged (and on their way to a node)")},
            op_id="taskNewUpload", parameters=[UUID_PARAM],
            description="Files are streamed to disk. Refused with an Error when the task's files would pass "
                        "--max-upload-mb or its photos --max-images, or when the client sends nothing for "
                        "--upload-timeout seconds (then the connection is closed); the partial file is removed.",
            body={"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["images"], "properties": {"images": FILES}}}}}, **token)},
        "/task/new/commit/{uuid}": {"post": operation("Start processing the uploaded files", task_ops, {
            "200": result_or_error(ref("Uuid"), "The task's uuid")}, op_id="taskNewCommit",
            parameters=[UUID_PARAM], **token)},
        "/task/new": {"post": operation("Create a task in one multipart request", task_ops, {
            "200": result_or_error(ref("Uuid"), "The new task's uuid")}, op_id="taskNew", parameters=[SET_UUID],
            description="Fields and files (or a zipurl) in one body; the same limits as uploads apply.",
            body={"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "properties": {**TASK_FIELDS, "images": FILES, "zipurl": {
                    "type": "string", "description": "http(s) URL of a zip of the photos, fetched by the relay "
                                                     "(public addresses only unless the operator allows others)"}}}}}},
            **token)},
        "/task/list": {"get": operation("The tasks of this token", task_ops, {
            "200": json_body({"type": "array", "items": {"anyOf": [ref("Uuid"), {"allOf": [ref("TaskInfo"), {
                "type": "object", "properties": {"node": {"type": "string", "nullable": True, "description": (
                    "The label (else the id) of the node holding the task")}}}]}]}},
                "Their uuids, oldest first (with `with_info=true`, their infos)"),
            "400": ref("BadRequest", "responses")}, op_id="taskList",
            description="Without `limit` and `offset` the whole list, as NodeODX answers it: every committed task "
                        "of this token, oldest first (uploads not committed yet are not listed). With `limit`, one "
                        "page of that same list: `limit` tasks from position `offset` (0 is the oldest); a page "
                        "past the end is empty. A value that is not a whole number in range is answered HTTP 400. "
                        "Filters (`status`, `created_after`, `created_before`, `name`, `min_duration`, "
                        "`max_duration`) and `sort` apply before the page is taken, from what the relay last knew "
                        "of each task; a bad value is answered HTTP 400 naming the parameter, and NodeODX ignores "
                        "them all. `with_info=true` answers each task's info instead of its uuid alone (the relay "
                        "asks the nodes for unfinished tasks only), so a client following many tasks asks once.",
            parameters=LIST_PARAMS, **token)},
        "/task/{uuid}/info": {"get": operation("A task's status", task_ops, {
            "200": result_or_error(ref("TaskInfo"), "The task's info")}, op_id="taskInfo", parameters=[
                UUID_PARAM, {"name": "with_output", "in": "query", "required": False,
                             "description": "Add console output from this line on", "schema": {"type": "integer"}}],
            **token)},
        "/task/{uuid}/output": {"get": operation("A task's console output", task_ops, {
            "200": result_or_error({"type": "array", "items": {"type": "string"}}, "Lines from `line` on")},
            op_id="taskOutput", parameters=[UUID_PARAM, {
                "name": "line", "in": "query", "required": False, "description": "First line to send",
                "schema": {"type": "integer"}}], **token)},
        "/task/{uuid}/download/{asset}": {"get": operation("Download results, whole or one product", "Downloads", {
            "200": {"description": "The file, typed by its name (application/zip, image/tiff, "
                                   "application/json for ept.json, ...), or, as NodeODX answers, an Error as JSON",
                    "content": {"*/*": {}}},
            "206": {"description": "The byte range asked for with Range, typed as the whole file is",
                    "content": {"*/*": {}}},
            "304": {"description": "Not modified (If-None-Match / If-Modified-Since)"},
            "404": {"description": "The path matches no route (an asset name with a line break in it)",
                    "content": {JSON: {"schema": ref("Error")}}},
            "412": {"description": "Precondition failed (If-Match / If-Unmodified-Since)"},
            "416": {"description": "Range not satisfiable"}},
            op_id="taskDownload",
            description="`all.zip` streams from the node on the first plain request and is cached; a request "
                        "with `Range` (or any later one) is answered from the cache, 206 for a range. Other "
                        "names are products cut out of all.zip: orthophoto.tif, dsm.tif, dtm.tif, "
                        "georeferenced_model.laz, ept.json and its tiles (ept-data/..., ept-hierarchy/..., "
                        "ept-sources/..., also as ept/<tile>), report.pdf, shots.geojson, folders as zips "
                        "(entwine_pointcloud.zip, orthophoto_tiles.zip, ...). `asset` may contain '/' for "
                        "EPT tiles; any other name answers {\"error\": \"Invalid asset\"}.",
            parameters=[UUID_PARAM, {"name": "asset", "in": "path", "required": True,
                                     "description": "all.zip, a product name, or an EPT tile path",
                                     "schema": {"type": "string"}},
                        {"name": "Range", "in": "header", "required": False,
                         "description": "bytes=START-END (answered 206 from the relay's cache)",
                         "schema": {"type": "string"}}], **token)},
        "/task/{uuid}/signed-urls": {"get": operation("Short-lived signed URLs of a task's products, for streaming",
            "Downloads", {"200": result_or_error(ref("SignedUrls"), "A signed URL of each product, and whether each "
                                                                    "raster is a Cloud-Optimized GeoTIFF"),
                          "400": ref("BadRequest", "responses")}, op_id="taskSignedUrls",
            description="For the task's owner (token as for any request). Each URL opens one product until "
                        "`expires` without a token: the orthophoto, DSM and DTM (GDAL /vsicurl/, with Range) and "
                        "ept.json with every EPT tile beside it (the signature is in the path, so that the tiles' "
                        "paths, made from the index's URL, are signed too). A raster that is not a COG (not tiled, "
                        "or without overviews) is said so in `cog.problem` and in the relay's log. A task without "
                        "results yet: an Error, as downloads answer it.",
            parameters=[UUID_PARAM,
                        {"name": "assets", "in": "query", "required": False, "schema": {"type": "string"},
                         "description": "Comma-separated product names (default: orthophoto.tif, dsm.tif, dtm.tif, "
                                        "ept.json and shots.geojson, those the task has)"},
                        {"name": "expires_in", "in": "query", "required": False,
                         "schema": {"type": "integer", "minimum": 1, "default": 43200},
                         "description": "Seconds the URLs last (at most 7 days)"}], **token)},
        "/task/{uuid}/signed/{expires}/{sig}/{asset}": {"get": operation(
            "Download a product by a signed URL (no token)", "Downloads", {
                "200": {"description": "The file", "content": {"*/*": {}}},
                "206": {"description": "The byte range asked for with Range", "content": {"*/*": {}}},
                "304": {"description": "Not modified (If-None-Match / If-Modified-Since)"},
                "403": ref("Forbidden", "responses"), "404": ref("NotFound", "responses"),
                "412": {"description": "Precondition failed (If-Match / If-Unmodified-Since)"},
                "416": {"description": "Range not satisfiable"}},
            op_id="taskSignedDownload", security=NO_TOKEN,
            description="A URL from /task/{uuid}/signed-urls, or an EPT tile beside its ept.json. An altered, "
                        "expired, or other file's signature is refused with 403 and says which; a name that is "
                        "no product (GDAL's probes for side files) is 404. GET and HEAD only.",
            parameters=[UUID_PARAM,
                        {"name": "expires", "in": "path", "required": True, "schema": {"type": "integer"},
                         "description": "When the URL stops working, seconds since 1970"},
                        {"name": "sig", "in": "path", "required": True, "schema": {"type": "string"},
                         "description": "The relay's signature of the task, owner, expiry and file or EPT folder"},
                        {"name": "asset", "in": "path", "required": True, "schema": {"type": "string"},
                         "description": "The product name, or an EPT tile path (ept-data/..., ept-hierarchy/...)"},
                        {"name": "Range", "in": "header", "required": False, "schema": {"type": "string"},
                         "description": "bytes=START-END"}])},
        "/task/cancel": {"post": operation("Cancel a task", task_ops, {
            "200": result_or_error(ref("Success"), "Done")}, op_id="taskCancel",
            body=form_body(UUID_FIELD, ("uuid",), COMMAND_BODIES), **form)},
        "/task/remove": {"post": operation("Remove a task and its results", task_ops, {
            "200": result_or_error(ref("Success"), "Done")}, op_id="taskRemove",
            description="Also removes an upload that was begun with /task/new/init and never committed, with its "
                        "staged files, for its owner (NodeODX answers that it is not found).",
            body=form_body(UUID_FIELD, ("uuid",), COMMAND_BODIES), **form)},
        "/task/restart": {"post": operation("Run a task again, optionally with new options", task_ops, {
            "200": result_or_error(ref("Success"), "Done")}, op_id="taskRestart",
            body=form_body({**UUID_FIELD, "options": TASK_FIELDS["options"]}, ("uuid",), COMMAND_BODIES), **form)},
        "/_relay/webhook/{uuid}": {"post": operation("A node reports that a task ended (for nodes, not clients)",
            "Nodes", {"200": json_body({"type": "object", "properties": {"ok": {"type": "boolean"}}}, "Recorded"),
                      "400": ref("BadRequest", "responses"), "404": ref("NotFound", "responses")},
            op_id="nodeWebhook", security=NO_TOKEN, errors=("Forbidden", "PayloadTooLarge"),
            description="The relay gives each node a URL of its own with a signature; anything unsigned is "
                        "refused with 403.",
            parameters=[UUID_PARAM,
                        {"name": "node", "in": "query", "required": True,
                         "description": "The node the task was sent to", "schema": {"type": "string"}},
                        {"name": "sig", "in": "query", "required": True,
                         "description": "The relay's signature of the uuid and the node",
                         "schema": {"type": "string"}}],
            body={"required": True, "content": {JSON: {"schema": ref("TaskInfo")}}})},
        "/admin/nodes": {
            "get": operation("List nodes", "Admin", {
                "200": json_body({"type": "array", "items": ref("Node")}, "Every node, without tokens")},
                op_id="adminListNodes", security=ADMIN_SECURITY, errors=AUTH),
            "post": operation("Add a node", "Admin", {
                "201": json_body(ref("Node"), "The node, checked once"),
                "400": ref("BadRequest", "responses"), "409": ref("Conflict", "responses")},
                op_id="adminAddNode", security=ADMIN_SECURITY, errors=FORM,
                body={"required": True, "content": {JSON: {"schema": ref("NewNode")}}})},
        "/admin/nodes/{node_id}": {"delete": operation("Remove a node", "Admin", {
            "200": json_body({"type": "object", "properties": {"removed": {"type": "string"}}}, "Removed"),
            "404": ref("NotFound", "responses")}, op_id="adminRemoveNode", parameters=[NODE_PARAM],
            security=ADMIN_SECURITY, errors=AUTH)},
        "/admin/nodes/{node_id}/lock": {"post": operation("Give a node no new tasks (running ones finish)", "Admin", {
            "200": json_body(ref("Node"), "The node"), "404": ref("NotFound", "responses")},
            op_id="adminLockNode", parameters=[NODE_PARAM], security=ADMIN_SECURITY, errors=AUTH)},
        "/admin/nodes/{node_id}/unlock": {"post": operation("Give a node tasks again", "Admin", {
            "200": json_body(ref("Node"), "The node"), "404": ref("NotFound", "responses")},
            op_id="adminUnlockNode", parameters=[NODE_PARAM], security=ADMIN_SECURITY, errors=AUTH)},
        **stac_paths(),
        PATH: {"get": operation("This document", "Meta", {
            "200": json_body({"type": "object"}, "The relay's API as OpenAPI 3.0")},
            op_id="getOpenApi", security=NO_TOKEN)},
    }


GEOJSON = "application/geo+json"
STAC_SEARCH_PARAMS = [
    {"name": "bbox", "in": "query", "required": False, "schema": {"type": "string"}, "example": "13.3,52.4,13.5,52.6",
     "description": "west,south,east,north in WGS 84 degrees (or 6 numbers with heights): items whose footprint's "
                    "bbox meets it (west > east crosses the antimeridian)"},
    {"name": "datetime", "in": "query", "required": False, "schema": {"type": "string"},
     "example": "2024-05-04T00:00:00Z/..", "description": "An RFC 3339 time, or an interval start/end with '..' "
                                                         "for an open end: items whose capture times meet it"},
    {"name": "ids", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "Task uuids, comma-separated"},
    {"name": "collections", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "Collection ids, comma-separated (the relay has one, odx-tasks)"},
    {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1},
     "description": "Items per page (default 10, at most 1000)"},
    {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "Where the page starts: given in the previous page's `next` link"}]
COLLECTION_PARAM = {"name": "collection", "in": "path", "required": True, "schema": {"type": "string"},
                    "description": "The collection's id: odx-tasks"}


def stac_paths() -> dict[str, Schema]:
    """The STAC API subset (stac.py): per owner, with STAC API errors ({code, description})."""
    def answer(schema: str, description: str, kind: str = JSON) -> Schema:
        return {"description": description, "content": {kind: {"schema": ref(schema)}}}

    def stac_op(summary: str, op_id: str, ok: Schema, *, bad: bool = False, missing: bool = False,
                **more: Any) -> Schema:
        responses = {"200": ok}
        if bad:
            responses["400"] = answer("StacError", "A parameter or body the relay cannot use (it says which)")
        if missing:
            responses["404"] = answer("StacError", "No such collection or item, or another owner's")
        return operation(summary, "STAC", responses, op_id=op_id, errors=AUTH, **more)

    catalog = {"description": "The landing page", "content": {JSON: {"schema": {"type": "object", "required": [
        "type", "stac_version", "id", "conformsTo", "links"]}}}}
    page = answer("StacItemCollection", "One page of items, newest capture first", GEOJSON)
    items = [COLLECTION_PARAM, *STAC_SEARCH_PARAMS[:3], *STAC_SEARCH_PARAMS[4:]]
    item_params = [COLLECTION_PARAM, UUID_PARAM]
    return {
        "/stac": {"get": stac_op("STAC landing page of this token's results", "stacLanding", catalog,
                                 description="The token's completed tasks as a STAC API: a collection, items (id: "
                                             "the task's uuid) and a search. A token given as ?token= is carried "
                                             "in every link and asset href.")},
        "/stac/conformance": {"get": stac_op("STAC API conformance classes", "stacConformance", json_body(
            {"type": "object", "required": ["conformsTo"], "properties": {
                "conformsTo": {"type": "array", "items": {"type": "string"}}}}, "The classes"))},
        "/stac/collections": {"get": stac_op("The one collection of this token's tasks", "stacCollections",
                                             json_body({"type": "object", "required": ["collections", "links"],
                                                        "properties": {"collections": {
                                                            "type": "array", "items": ref("StacCollection")},
                                                            "links": {"type": "array", "items": ref("StacLink")}}},
                                                       "The collections"))},
        "/stac/collections/{collection}": {"get": stac_op(
            "The collection of this token's tasks, its extent from the items", "stacCollection",
            answer("StacCollection", "The collection"), missing=True, parameters=[COLLECTION_PARAM])},
        "/stac/collections/{collection}/items": {"get": stac_op(
            "The collection's items, filtered as /stac/search filters", "stacItems", page, bad=True, missing=True,
            parameters=items)},
        "/stac/collections/{collection}/items/{uuid}": {"get": stac_op(
            "A completed task as a STAC Item", "stacItem", answer("StacItem", "The item", GEOJSON), missing=True,
            parameters=item_params)},
        "/stac/collections/{collection}/items/{uuid}/thumbnail.png": {"get": stac_op(
            "The item's thumbnail (a PNG of the orthophoto, 256 px at most a side)", "stacThumbnail",
            {"description": "The PNG", "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}},
            missing=True, parameters=item_params)},
        "/stac/search": {
            "get": stac_op("Search this token's items by bbox, datetime and ids", "stacSearchGet", page, bad=True,
                           parameters=STAC_SEARCH_PARAMS),
            "post": stac_op("The same search, as a JSON body", "stacSearchPost", page, bad=True,
                            body={"required": False, "content": {JSON: {"schema": ref("StacSearch")}}})},
    }


def document() -> Schema:
    return {
        "openapi": "3.0.3",
        "info": {"title": "ODX Relay", "version": __version__, "description": (
            f"One NodeODX endpoint (API {API_VERSION}) in front of many NodeODX nodes, plus the relay's admin "
            "API. NodeODX's conventions hold: the client's token travels as `?token=` (or as "
            "`Authorization: Bearer`), and task-level errors are HTTP 200 with `{\"error\": \"...\"}`. "
            "Authentication errors are 401 (no token) or 403 (wrong token) with a JSON error; the admin API "
            "answers real HTTP codes. Every GET also answers HEAD.")},
        "tags": [{"name": n} for n in ("Node", "Auth", "Tasks", "Downloads", "STAC", "Admin", "Nodes", "Meta")],
        "paths": paths(),
        "components": {
            "schemas": schemas(),
            "responses": responses(),
            "securitySchemes": {
                "token": {"type": "apiKey", "in": "query", "name": "token",
                          "description": "The relay's client token (--token) or an account's token; needed "
                                         "when the relay runs with --token or --allow-registration"},
                "bearerToken": {"type": "http", "scheme": "bearer", "description": "The same token as a header"},
                "adminBearer": {"type": "http", "scheme": "bearer", "description": "The admin token (--admin-token)"},
                "adminQuery": {"type": "apiKey", "in": "query", "name": "admin_token",
                               "description": "The admin token as a query parameter, when no Authorization header"},
            }},
        "security": [{"token": []}, {"bearerToken": []}, {}],
    }


async def serve_document(request: web.Request) -> web.Response:
    return web.json_response(request.app[DOCUMENT])


def add_openapi_route(app: web.Application) -> None:
    app[DOCUMENT] = document()
    app.router.add_get(PATH, serve_document)
