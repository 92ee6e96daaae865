"""The HTTP surface: NodeODX's routes, answered the way NodeODX answers them.

Handlers only parse, call the task manager and shape the reply. NodeODX's habits are kept on purpose,
because clients depend on them: errors are HTTP 200 with `{"error": ...}` (also for a wrong token),
cancel/remove/restart answer `{"success": false, "error": ...}`, only `all.zip` can be downloaded and
`Range` is ignored (unless the node was started with `--range`), and every answer allows any origin.

Bodies are parsed as strictly as NodeODX parses them, never more leniently, so that a client working
against this node works against a real one: `/task/new/init`, `/task/new` and the uploads read
multipart/form-data only (any other body opens the task with no fields at all), and
cancel/remove/restart read url-encoded or JSON only (a multipart body has no `uuid`).
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import os
import random
import re
import uuid as uuidlib
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import metadata
from pathlib import Path
from urllib.parse import parse_qsl

from aiohttp import web

from shared import endpoints

from .config import API_VERSION, ENGINE, Config
from .node_options import OptionsRefused, filter_options, load_options
from .products import build_outputs
from .tasks import TaskError, TaskManager
from .uploads import UploadRefused, read_upload

log = logging.getLogger("devnode.app")

CONFIG = web.AppKey("config", Config)
MANAGER = web.AppKey("manager", TaskManager)
OPTIONS = web.AppKey("options", list)
RANDOM = web.AppKey("random", random.Random)

SET_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", re.I)
DOWNLOAD_CHUNK = 256 * 1024
#: body-parser's default `limit` for the url-encoded and JSON bodies of cancel/remove/restart.
COMMAND_BODY_LIMIT = 100 * 1024
URLENCODED = "application/x-www-form-urlencoded"
JSON_TYPE = "application/json"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: NodeODX's routes, registered from shared.endpoints: the templates the client fills in are the patterns.
routes = web.RouteTableDef()


def engine_version() -> str:
    try:
        return metadata.version("odx-relay")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def error(message: str, **extra: object) -> web.Response:
    """NodeODX's error reply: HTTP 200, `{"error": message}`."""
    return web.json_response({"error": message, **extra})


def js_int(value: str | None) -> int:
    """How JavaScript's Array.slice reads a query string index: "-5" counts from the end, junk is 0."""
    try:
        number = float(value) if value not in (None, "") else 0.0
    except ValueError:
        return 0
    if math.isnan(number):
        return 0
    if math.isinf(number):
        return 2 ** 31 if number > 0 else -(2 ** 31)
    return math.trunc(number)


# ---- middlewares ---------------------------------------------------------------------------------------

@web.middleware
async def express_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Unexpected failures answer `{"error": message}` with status 200, as NodeODX's error handler does."""
    try:
        return await handler(request)
    except (web.HTTPException, ConnectionResetError):
        raise
    except Exception as exc:
        log.exception("%s %s failed", request.method, request.path)
        return error(str(exc) or type(exc).__name__)


@web.middleware
async def token_check(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With a token set, every NodeODX route but `/auth/*` wants `?token=`; compared in constant time."""
    token = request.app[CONFIG].token
    matched = request.match_info.http_exception is None
    if token and matched and request.method != "OPTIONS" and not request.path.startswith(endpoints.AUTH_PREFIX):
        given = request.query.get("token", "")
        if not hmac.compare_digest(given.encode(), token.encode()):
            return error("Invalid authentication token: token does not match.")
    return await handler(request)


async def allow_any_origin(request: web.Request, response: web.StreamResponse) -> None:
    """NodeODX runs the `cors` middleware with its defaults: any origin may call it."""
    response.headers.setdefault("Access-Control-Allow-Origin", "*")


async def preflight(request: web.Request) -> web.Response:
    """The `cors` package's answer to a preflight: every method, the headers the browser asked for."""
    headers = {"Access-Control-Allow-Methods": "GET,HEAD,PUT,PATCH,POST,DELETE",
               "Vary": "Access-Control-Request-Headers"}
    if wanted := request.headers.get("Access-Control-Request-Headers"):
        headers["Access-Control-Allow-Headers"] = wanted
    return web.Response(status=204, headers=headers)


# ---- node ----------------------------------------------------------------------------------------------

@routes.get(endpoints.INFO)
async def info(request: web.Request) -> web.Response:
    config, manager = request.app[CONFIG], request.app[MANAGER]
    return web.json_response({
        "version": API_VERSION,
        "taskQueueCount": manager.queue_count(),
        "totalMemory": config.total_memory,
        "availableMemory": manager.available_memory(),
        "cpuCores": os.cpu_count() or 1,
        "maxImages": config.max_images_reported,
        "maxParallelTasks": config.slots,
        "engineVersion": engine_version(),
        "engine": ENGINE,
    })


@routes.get(endpoints.OPTIONS)
async def options(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPTIONS])


@routes.get(endpoints.AUTH_INFO)
async def auth_info(request: web.Request) -> web.Response:
    return web.json_response({"message": "Authentication not available on this node",
                              "loginUrl": None, "registerUrl": None})


@routes.post(endpoints.AUTH_LOGIN)
@routes.post(endpoints.AUTH_REGISTER)
async def auth_not_available(request: web.Request) -> web.Response:
    return error("Not available")


# ---- new tasks -----------------------------------------------------------------------------------------

def _assign_uuid(request: web.Request) -> str | web.Response:
    """The task's uuid: a fresh one, or the client's `set-uuid` header when it is a uuid not in use."""
    wanted = request.headers.get("set-uuid")
    if not wanted:
        return str(uuidlib.uuid4())
    if SET_UUID.match(wanted) and request.app[MANAGER].find(wanted) is None:
        return wanted
    return error(f"Invalid set-uuid: {wanted}")


def _create(request: web.Request, task_uuid: str, form: dict) -> web.Response:
    try:
        request.app[MANAGER].create(task_uuid, form)
    except OptionsRefused as exc:
        return error(str(exc))
    return web.json_response({"uuid": task_uuid})


@routes.post(endpoints.TASK_NEW_INIT)
async def task_new_init(request: web.Request) -> web.Response:
    """Open a staged upload. Fields come from form-data only: NodeODX reads init with `multer().none()`,
    so a url-encoded or JSON init still opens a task, but one with no name, options or webhook."""
    task_uuid = _assign_uuid(request)
    if isinstance(task_uuid, web.Response):
        return task_uuid
    try:
        _, form = await read_upload(request, None)
    except UploadRefused as exc:
        return error(str(exc))
    if form.get("options"):
        try:
            filter_options(request.app[OPTIONS], form["options"])
        except OptionsRefused as exc:
            # NodeODX's init dies with its error and removes `tmp/<uuid>`: an upload opened before under this
            # set-uuid loses its files (the relay relies on it to start a node's upload afresh)
            request.app[MANAGER].staging.discard(task_uuid)
            return error(str(exc))
    request.app[MANAGER].staging.open(task_uuid, form)
    log.info("task %s upload opened", task_uuid)
    return web.json_response({"uuid": task_uuid})


@routes.post(endpoints.TASK_NEW_UPLOAD)
async def task_new_upload(request: web.Request) -> web.Response:
    task_uuid = request.match_info["uuid"]
    manager, config = request.app[MANAGER], request.app[CONFIG]
    if not manager.staging.is_open(task_uuid):
        return error("Invalid uuid (not found)")
    if config.drop_uploads and request.app[RANDOM].random() < config.drop_uploads:
        while await request.content.readany():  # drain, so the client reliably reads the 500
            pass
        log.info("task %s upload dropped on purpose (--drop-uploads)", task_uuid)
        return web.Response(status=500, text="Internal Server Error")
    try:
        files, _ = await read_upload(request, manager.staging.folder(task_uuid))
    except UploadRefused as exc:
        return error(str(exc))
    if not files:
        return error("Need at least 1 file.", noRetry=True)
    log.info("task %s received %s", task_uuid, ", ".join(p.name for p in files))
    return web.json_response({"success": True})


@routes.post(endpoints.TASK_NEW_COMMIT)
async def task_new_commit(request: web.Request) -> web.Response:
    task_uuid = request.match_info["uuid"]
    staging = request.app[MANAGER].staging
    if not staging.is_open(task_uuid):
        return error("Invalid uuid (not found)")
    try:
        form = staging.take_body(task_uuid)
    except UploadRefused as exc:
        return error(str(exc))
    if not staging.files(task_uuid):
        staging.discard(task_uuid)
        return error("Need at least 1 file.")
    return _create(request, task_uuid, form)


@routes.post(endpoints.TASK_NEW)
async def task_new(request: web.Request) -> web.Response:
    task_uuid = _assign_uuid(request)
    if isinstance(task_uuid, web.Response):
        return task_uuid
    manager, config = request.app[MANAGER], request.app[CONFIG]
    try:
        files, form = await read_upload(request, manager.staging.folder(task_uuid))
    except UploadRefused as exc:
        manager.staging.discard(task_uuid)
        return error(str(exc))
    if not files:
        manager.staging.discard(task_uuid)
        return error("Need at least 1 file or a zip file url.")
    if config.max_images and len(files) > config.max_images:
        manager.staging.discard(task_uuid)
        return error(f"{len(files)} images uploaded, but this node can only process up to {config.max_images}.")
    return _create(request, task_uuid, form)


# ---- existing tasks ------------------------------------------------------------------------------------

@routes.get(endpoints.TASK_LIST)
async def task_list(request: web.Request) -> web.Response:
    return web.json_response([{"uuid": u} for u in request.app[MANAGER].tasks])


@routes.get(endpoints.TASK_INFO)
async def task_info(request: web.Request) -> web.Response:
    task = request.app[MANAGER].find(request.match_info["uuid"])
    if task is None:
        return error(f"{request.match_info['uuid']} not found")
    body = task.info()
    if "with_output" in request.query:
        body["output"] = task.output[js_int(request.query["with_output"]):]
    return web.json_response(body)


@routes.get(endpoints.TASK_OUTPUT)
async def task_output(request: web.Request) -> web.Response:
    task = request.app[MANAGER].find(request.match_info["uuid"])
    if task is None:
        return error(f"{request.match_info['uuid']} not found")
    return web.json_response(task.output[js_int(request.query.get("line")):])


@routes.get(endpoints.TASK_DOWNLOAD)
async def task_download(request: web.Request) -> web.StreamResponse:
    manager = request.app[MANAGER]
    task = manager.find(request.match_info["uuid"])
    if task is None:
        return error(f"{request.match_info['uuid']} not found")
    asset = request.match_info["asset"]
    if asset != "all.zip":
        return error("Invalid asset")
    path = manager.task_dir(task.uuid) / asset
    if not path.is_file():
        return error("Asset not ready")
    headers = {"Content-Disposition": f"attachment; filename={asset}", "Content-Type": "application/zip"}
    if request.app[CONFIG].range:
        return web.FileResponse(path, chunk_size=DOWNLOAD_CHUNK, headers=headers)
    return await _send_whole(request, path, headers)


async def _send_whole(request: web.Request, path: Path, headers: dict) -> web.StreamResponse:
    """NodeODX pipes the file: always 200 and the full body, no Accept-Ranges, whatever Range says."""
    loop = asyncio.get_running_loop()
    with path.open("rb") as source:
        size = path.stat().st_size
        response = web.StreamResponse(headers=headers)
        response.content_length = size
        await response.prepare(request)
        if request.method != "HEAD":
            while chunk := await loop.run_in_executor(None, source.read, DOWNLOAD_CHUNK):
                await response.write(chunk)
        await response.write_eof()
    return response


class BodyRefused(ValueError):
    """A command body body-parser cannot read; the message is the `error` NodeODX answers."""


def _js_truthy(value: object) -> bool:
    """JavaScript's truthiness, which NodeODX's `if (!req.body.uuid)` applies to a JSON value."""
    if value is None or value is False or value == "":
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value == value and value != 0  # NaN and 0 are falsy
    return True


def _strict_json(raw: bytes) -> dict[str, object]:
    """body-parser's JSON in strict mode: an object or an array (whose fields are none), else an error.

    The error's words are Python's, not V8's; what matters is that the command is refused, as there.
    """
    if not raw:
        return {}
    first = raw.lstrip(b" \t\r\n")[:1]
    if first not in (b"{", b"["):
        raise BodyRefused(f"Unexpected token {first.decode('latin-1')!r}: JSON body is not an object or an array")
    try:
        data = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError, or UnicodeDecodeError for bytes that are not UTF-8
        raise BodyRefused(f"{exc} in JSON") from None
    return data if isinstance(data, dict) else {}


async def _command_fields(request: web.Request) -> dict[str, object]:
    """A cancel/remove/restart body as body-parser's urlencoded and json parsers read it.

    Any other body (multipart above all) yields no fields, so NodeODX finds no `uuid`: accepting one here
    would let a client pass that a real node answers with "uuid param missing.".
    """
    if request.content_type not in (URLENCODED, JSON_TYPE):
        return {}
    if (request.content_length or 0) > COMMAND_BODY_LIMIT:
        raise BodyRefused("request entity too large")
    raw = await request.read()
    if len(raw) > COMMAND_BODY_LIMIT:
        raise BodyRefused("request entity too large")
    if request.content_type == JSON_TYPE:
        return _strict_json(raw)
    return _urlencoded(raw)


def _urlencoded(raw: bytes) -> dict[str, object]:
    """querystring.parse, as body-parser (`extended: false`) uses it: a repeated key gives an array,
    which NodeODX then turns into text as JavaScript does, the values joined by commas."""
    fields: dict[str, list[str]] = {}
    for key, value in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True):
        fields.setdefault(key, []).append(value)
    return {key: ",".join(values) for key, values in fields.items()}


def _text(value: object) -> str:
    """A JSON value as the string a form field would carry (options may come as a parsed list)."""
    return value if isinstance(value, str) else json.dumps(value)


async def _command(request: web.Request,
                   action: Callable[[TaskManager, str, str | None], Awaitable[None]]) -> web.Response:
    """cancel/remove/restart: NodeODX wants a `uuid` field and answers `{"success": ...}`."""
    try:
        fields = await _command_fields(request)
    except BodyRefused as exc:
        return error(str(exc))
    if not _js_truthy(fields.get("uuid")):
        return error("uuid param missing.")
    options = fields.get("options")
    try:
        await action(request.app[MANAGER], _text(fields["uuid"]), None if options is None else _text(options))
    except OptionsRefused as exc:
        return error(str(exc))
    except TaskError as exc:
        return web.json_response({"success": False, "error": str(exc)})
    return web.json_response({"success": True})


@routes.post(endpoints.TASK_CANCEL)
async def task_cancel(request: web.Request) -> web.Response:
    return await _command(request, lambda manager, uuid, _: manager.cancel(uuid))


@routes.post(endpoints.TASK_REMOVE)
async def task_remove(request: web.Request) -> web.Response:
    return await _command(request, lambda manager, uuid, _: manager.remove(uuid))


@routes.post(endpoints.TASK_RESTART)
async def task_restart(request: web.Request) -> web.Response:
    return await _command(request, lambda manager, uuid, options: manager.restart(uuid, options))


# ---- the application -----------------------------------------------------------------------------------

async def _manager_context(app: web.Application) -> AsyncIterator[None]:
    manager = app[MANAGER]
    await manager.start()
    yield
    await manager.close()


def create_app(config: Config) -> web.Application:
    """One development node; everything it keeps lives on this Application."""
    if config.data_dir is None:
        raise ValueError("a development node needs a data_dir")
    config.data_dir.mkdir(parents=True, exist_ok=True)
    app = web.Application(middlewares=[express_errors, token_check])
    app[CONFIG] = config
    app[OPTIONS] = load_options(config.options_file)
    app[MANAGER] = TaskManager(config, app[OPTIONS], build_outputs)
    app[RANDOM] = random.Random()
    app.add_routes(routes)
    app.router.add_route("OPTIONS", "/{tail:.*}", preflight)
    app.on_response_prepare.append(allow_any_origin)
    app.cleanup_ctx.append(_manager_context)
    return app
