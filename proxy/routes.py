"""The NodeODX API as the relay serves it: one thin handler per endpoint.

Errors are raised from the tree in `errors.py` and answered by its middleware: task-level errors as
NodeODX answers them (HTTP 200, `{"error": ...}`), since pyodx and WebODM rely on that.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from shared import endpoints
from shared.options import loads_limited, options_to_json

from .auth import TooManyLogins, check_signed_download
from .dispatch import dispatch_now
from .downloads import ALL_ZIP, resolve, serve
from .errors import BadRequest, CommandFailed, DownloadError, HTTPError, NotFound, UpstreamError
from .intake import (
    choose_uuid,
    commit_task,
    forget,
    init_task,
    one_shot_files,
    read_fields,
    read_options,
    split_merge_fields,
    upload_files,
)
from .models import Stage, TaskRecord
from .removal import remove_task
from .replies import public_info, relay_side_info, relay_side_output
from .results import ResultsError
from .split_merge import for_each_submodel, is_parent, owns, rewrite_options, with_submodels
from .staging import valid_uuid
from .state import RELAY, Relay
from .store import SORT_KEYS, ListQuery
from .streaming import signed_download, signed_links, wanted_assets
from .task_end import learn_info
from .webhooks import receive
from .zipurl import stage_zipurl

log = logging.getLogger("odx_relay.routes")


COMMAND_BODIES = ("application/x-www-form-urlencoded", "application/json")  # what NodeODX reads for commands


async def form(request: web.Request) -> dict[str, str]:
    """A POST body as a dict, whether it came urlencoded, multipart or JSON."""
    if request.content_type == "application/json":
        try:
            data = await request.json(loads=lambda text: loads_limited(text, "the JSON body"))
        except ValueError as exc:  # JSON nested past the limit is said so; other malformed JSON, as before
            raise BadRequest("Malformed JSON body" + (f": {exc}" if "nested" in str(exc) else "")) from None
        if not isinstance(data, dict):
            raise BadRequest("Expected a JSON object")
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
    try:
        posted = await request.post()
    except (ValueError, LookupError, RuntimeError, HttpProcessingError) as exc:  # not a form body after all
        raise BadRequest(f"Malformed form body: {exc}") from None
    return {k: v for k, v in posted.items() if isinstance(v, str)}


async def init_form(request: web.Request) -> dict[str, str]:
    """`/task/new/init`'s fields, read from multipart/form-data only, as NodeODX reads them (multer): a body
    of another kind opens a task with no name and default options there, and the same here, so that a
    client that works through the relay works against a node too."""
    if request.content_type != "multipart/form-data":
        await request.read()
        return {}
    return await form(request)


async def task_for(request: web.Request, uuid: str) -> tuple[Relay, TaskRecord]:
    relay = request.app[RELAY]
    owner = await relay.auth.identify(request)
    if not valid_uuid(uuid):
        raise NotFound(f"{uuid} not found")
    task = await relay.store.get_task(uuid)
    if task is None or not owns(owner, task) or task.stage == Stage.UPLOADING:
        raise NotFound(f"{uuid} not found")  # another owner's task looks like none at all
    return relay, task


async def uploading_task(request: web.Request) -> tuple[Relay, TaskRecord]:
    relay = request.app[RELAY]
    owner = await relay.auth.identify(request)
    uuid = request.match_info["uuid"]
    task = await relay.store.get_task(uuid) if valid_uuid(uuid) else None
    if task is None or task.owner != owner or task.stage != Stage.UPLOADING:
        raise BadRequest("Invalid uuid (not found)")
    return relay, task


# --- node -------------------------------------------------------------------------------------
async def info(request: web.Request) -> web.Response:
    relay = request.app[RELAY]
    await relay.auth.identify(request)
    online = {h.record.id for h in relay.registry.online() if h.info}
    sent = sum(s.reserved_tasks for s in await relay.registry.states() if s.id in online)
    return web.json_response(public_info(relay, len(await relay.store.tasks_in(Stage.QUEUED)), sent))


async def options(request: web.Request) -> web.Response:
    relay = request.app[RELAY]
    await relay.auth.identify(request)
    return web.json_response(relay.registry.options())


async def auth_info(request: web.Request) -> web.Response:
    relay = request.app[RELAY]
    accounts = relay.auth.allow_registration
    return web.json_response({
        "message": "Log in to get a token" if accounts else "Accounts are not enabled on this relay",
        "loginUrl": endpoints.AUTH_LOGIN if accounts else None,
        "registerUrl": endpoints.AUTH_REGISTER if accounts else None})


async def auth_login(request: web.Request) -> web.Response:
    """A fresh token for a username and password; 429 with Retry-After past `--login-failures`."""
    auth = request.app[RELAY].auth
    data = await form(request)
    try:
        token = await auth.login(data.get("username", ""), data.get("password", ""), auth.client_address(request))
    except TooManyLogins as exc:
        return web.json_response(exc.body(), status=exc.status, headers={"Retry-After": str(exc.retry_after)})
    return web.json_response({"token": token})


async def auth_register(request: web.Request) -> web.Response:
    data = await form(request)
    token = await request.app[RELAY].auth.register(data.get("username", ""), data.get("password", ""))
    return web.json_response({"token": token})


# --- intake -----------------------------------------------------------------------------------
async def task_new_init(request: web.Request) -> web.Response:
    relay = request.app[RELAY]
    owner = await relay.auth.identify(request)
    fields = read_fields(await init_form(request), relay)
    await check_open_uploads(relay, owner)
    uuid = await choose_uuid(request, relay)
    await init_task(relay, uuid, owner, fields)
    return web.json_response({"uuid": uuid})


async def check_open_uploads(relay: Relay, owner: str) -> None:
    """An init past the owner's `--max-open-uploads` uploads begun and never committed is refused, saying how
    to free one: each holds staged files and a record until it is committed, removed or expires."""
    cap = relay.config.max_open_uploads
    if not cap:  # (a split-merge credential's uploads are counted apart, under their parent: `child_owner`)
        return
    open_now = sum(1 for t in await relay.store.tasks_in(Stage.UPLOADING) if t.owner == owner)
    if open_now >= cap:
        raise BadRequest(f"Too many open uploads: this client has {open_now} uploads begun with /task/new/init and "
                         f"never committed, and this relay allows {cap} (--max-open-uploads). Commit them, remove "
                         f"the ones given up with /task/remove, or wait until they expire "
                         f"({relay.config.upload_idle:g} s after their last upload).")


async def task_new_upload(request: web.Request) -> web.Response:
    relay, task = await uploading_task(request)
    names = await upload_files(relay, task, request)
    if not names:
        raise BadRequest("Need at least 1 file.", noRetry=True)  # pyodx's upload loop reads noRetry
    return web.json_response({"success": True})


async def task_new_commit(request: web.Request) -> web.Response:
    relay, task = await uploading_task(request)
    async with relay.locks.hold(task.uuid):
        task = await relay.store.get_task(task.uuid)
        if task is None or task.stage != Stage.UPLOADING:
            raise BadRequest("Invalid uuid (not found)")
        await commit_task(relay, task)
    await place_submodel(relay, task)
    return web.json_response({"uuid": task.uuid})


async def place_submodel(relay: Relay, task: TaskRecord) -> None:
    """A submodel that its forward node could not take is placed now if any node has room (outside the
    task's lock, which sending takes), before the commit is answered: see `dispatch_now`."""
    if task.parent_uuid is not None and task.stage == Stage.QUEUED:
        await dispatch_now(relay, task.uuid)


async def task_new(request: web.Request) -> web.Response:
    """The one-shot form: fields and images (or a `zipurl`) in one multipart body, staged, then committed."""
    relay = request.app[RELAY]
    owner = await relay.auth.identify(request)
    if not request.content_type.startswith("multipart/"):
        raise BadRequest("Need at least 1 file or a zip file url.")
    uuid = await choose_uuid(request, relay)  # claims a set-uuid: from here on, a failure gives it back
    task = TaskRecord(uuid=uuid, owner=owner)
    relay.staging.create(uuid)
    try:
        fields = await one_shot_files(relay, task, request)
        if not relay.staging.files(uuid) and not fields.get("zipurl"):
            raise BadRequest("Need at least 1 file or a zip file url.")
        for key, value in read_fields(fields, relay).items():
            setattr(task, key, value)
        split_merge_fields(relay, task)
        if fields.get("zipurl"):
            await stage_zipurl(relay, task, fields["zipurl"])
        await relay.store.put_task(task)
        await commit_task(relay, task)
    except Exception:
        if await relay.store.get_task(uuid) is None:  # nothing was kept: the uuid (and its claim) is free again
            relay.staging.remove(uuid)
            await relay.store.delete_task(uuid)
        raise
    await place_submodel(relay, task)
    return web.json_response({"uuid": uuid})


# --- tasks ------------------------------------------------------------------------------------
async def node_call(relay: Relay, task: TaskRecord, method: str, path: str, raw: bool = False,
                    **kwargs: Any) -> Any:
    """A request to the node holding `task`; with `raw`, the reply's bytes come along with its JSON."""
    handle = relay.registry.get(task.node_id)
    if handle is None:
        raise UpstreamError(f"the node that held {task.uuid} was removed from the relay")
    if raw:
        return await relay.upstream.call_raw(handle.record, method, path, **kwargs)
    return await relay.upstream.call(handle.record, method, path, **kwargs)


async def task_info(request: web.Request) -> web.Response:
    relay, task = await task_for(request, request.match_info["uuid"])
    with_output = request.query.get("with_output")
    if task.stage != Stage.ON_NODE or task.off_node:
        data = dict(task.last_info or {}) if task.off_node else relay_side_info(relay, task)
        if with_output is not None:
            data["output"] = (await stored_output(relay, task))[_int(with_output):]
        return await info_reply(relay, task, data)
    query = {} if with_output is None else {"with_output": with_output}
    try:
        body, data = await relay.in_flight.run(
            ("info", task.uuid, with_output),
            lambda: node_call(relay, task, "GET", endpoints.task_info(task.uuid), query=query,
                                   raw=True))
    except UpstreamError:  # the node is away (failover may send the task elsewhere): never an error here
        return await info_reply(relay, task, task.last_info or relay_side_info(relay, task))  # last word, or queued
    if isinstance(data, dict) and "error" not in data:
        await learn_info(relay, task, data)
        if is_parent(task):
            return await info_reply(relay, task, data)
    return web.Response(body=body, content_type="application/json")


async def info_reply(relay: Relay, task: TaskRecord, data: dict[str, Any]) -> web.Response:
    """A task's info as JSON; a split-merge parent's with its submodels (`relaySubmodels`, an extension)."""
    if is_parent(task):
        data = await with_submodels(relay, task, data, listed_infos)
    return web.json_response(data)


async def task_output(request: web.Request) -> web.Response:
    relay, task = await task_for(request, request.match_info["uuid"])
    line = _int(request.query.get("line", "0"))
    if task.stage != Stage.ON_NODE or task.off_node:
        return web.json_response((await stored_output(relay, task))[line:])
    return web.json_response(await node_call(relay, task, "GET", endpoints.task_output(task.uuid),
                                                query={"line": line}))


async def stored_output(relay: Relay, task: TaskRecord) -> list[str]:
    """Console output the relay answers itself: the node's, kept with its archive, once the node's copy is
    removed (--remove-from-node); else what a task no node holds says."""
    return await relay.results.output(task.uuid) if task.off_node else relay_side_output(task)


async def task_download(request: web.Request) -> web.StreamResponse:
    relay, task = await task_for(request, request.match_info["uuid"])
    if task.stage != Stage.ON_NODE:  # answered as NodeODX answers for a task whose results are not there yet
        name = request.match_info["asset"]
        raise DownloadError("Asset not ready" if name == ALL_ZIP or resolve(name) else "Invalid asset")
    return await serve(request, relay.registry, relay.cache, task, request.match_info["asset"])


async def task_signed_urls(request: web.Request) -> web.Response:
    """Signed URLs of the task's streamable products, for its owner (see streaming.py)."""
    relay, task = await task_for(request, request.match_info["uuid"])
    names = wanted_assets(request.query.get("assets", ""))
    links = await signed_links(relay, task, names, request.query.get("expires_in"))
    origin = str(request.url.origin())
    for entry in links["assets"].values():
        entry["href"] = origin + entry["path"]
    return web.json_response(links)


async def task_signed_download(request: web.Request) -> web.StreamResponse:
    """A download by signed URL: no token, the signature in the path opens this one file (or EPT folder)."""
    relay = request.app[RELAY]
    uuid, asset = request.match_info["uuid"], request.match_info["asset"]
    task = await relay.store.get_task(uuid) if valid_uuid(uuid) else None
    if task is None or task.stage == Stage.UPLOADING:
        raise HTTPError(404, f"{uuid} not found")
    if resolve(asset) is None:  # GDAL's probes for side files: not there, before any signature is looked at
        raise HTTPError(404, f"No file {asset[:80]!r} in a task's results")
    check_signed_download(relay.secret, task, asset, request.match_info["expires"], request.match_info["sig"])
    return await signed_download(request, relay, task, asset)


async def task_list(request: web.Request) -> web.Response:
    """The owner's committed tasks, oldest first, as NodeODX lists them (`[{"uuid": ...}, ...]`), read from the
    store's index (uuids only, no record decoded); `limit` and `offset` answer one page of that list.

    Filters (`status`, `created_after`/`created_before`, `name`, `min_duration`/`max_duration`) and an order
    (`sort`) narrow and order it first (`list_query`), from what the relay last knew of each task (the store's
    listing indexes). With `with_info=true` each entry is the task's whole `/task/{uuid}/info` (and `node`, the
    label of the node that holds it), so a client following many tasks asks once per interval instead of once
    per task."""
    relay = request.app[RELAY]
    owner = await relay.auth.identify(request)
    page = list_page(request.query)
    query = list_query(request.query)
    if query.plain:
        uuids = await relay.store.listed_uuids(owner, offset=page.offset, limit=page.limit)
    else:
        uuids = await relay.store.query_uuids(owner, query, offset=page.offset, limit=page.limit)
    if request.query.get("with_info", "").strip().lower() in ("true", "1", "yes"):
        return web.json_response(await listed_infos(relay, uuids))
    return web.Response(text=uuid_objects(uuids), content_type="application/json")


LIST_INFO_CALLS = 8  # node calls at once for one `/task/list?with_info=true`
INFO_KEYS = ("uuid", "name", "dateCreated", "processingTime", "status", "options", "imagesCount", "progress")


async def listed_infos(relay: Relay, uuids: list[str]) -> list[dict[str, Any]]:
    """Each task's info as `/task/{uuid}/info` answers it; a task removed meanwhile is left out."""
    gate = asyncio.Semaphore(LIST_INFO_CALLS)

    async def one(uuid: str) -> dict[str, Any] | None:
        async with gate:
            task = await relay.store.get_task(uuid)
            return None if task is None else await listed_info(relay, task)

    return [info for info in await asyncio.gather(*(one(uuid) for uuid in uuids)) if info is not None]


async def listed_info(relay: Relay, task: TaskRecord) -> dict[str, Any]:
    """A task's info for the list: the node is asked only while the task is unfinished there and the node is
    online (an ended task's last info is final), and its word is learned as `/task/{uuid}/info` learns it (an
    end frees the slot and calls the webhook); a node offline or not answering leaves the task's last info."""
    data: Any
    handle = relay.registry.get(task.node_id) if task.node_id else None
    if task.stage != Stage.ON_NODE:
        data = relay_side_info(relay, task)
    elif task.ended_ms is not None and task.last_info:  # (learned from a webhook, it may carry more: left out)
        data = {k: v for k, v in task.last_info.items() if k in INFO_KEYS}
    elif handle is None or not handle.online:  # not waited for: one node away must not hold up the whole list
        data = dict(task.last_info or relay_side_info(relay, task))
    else:
        try:
            data = await relay.in_flight.run(("list-info", task.uuid), lambda: node_call(
                relay, task, "GET", endpoints.task_info(task.uuid)))
        except UpstreamError:
            data = None
        if isinstance(data, dict) and "error" not in data:
            await learn_info(relay, task, data)
            data = dict(data)
        else:
            data = dict(task.last_info or relay_side_info(relay, task))
    data["node"] = (handle.record.label or handle.record.id) if handle is not None else None
    if is_parent(task) and task.ended_ms is None:  # (its submodels are gone once it has ended)
        data = await with_submodels(relay, task, data, listed_infos)
    return data


def uuid_objects(uuids: list[str]) -> str:
    """`[{"uuid":...},...]` as JSON, at the cost of encoding a list of strings (about half that of encoding as
    many dicts: a list of 50,000 tasks holds up the event loop that much less)."""
    encoded = json.dumps(uuids, separators=(",", ":"))
    if not uuids or "\\" in encoded:  # an escape in it: a quote may then be inside a string, so encode each dict
        return json.dumps([{"uuid": uuid} for uuid in uuids], separators=(",", ":"))
    return '[{"uuid":' + encoded[1:-1].replace('","', '"},{"uuid":"') + "}]"


@dataclass(frozen=True)
class ListPage:
    """Which part of `/task/list` is asked for: the whole list unless `limit` is given."""

    offset: int = 0
    limit: int | None = None


def list_page(query: Mapping[str, str]) -> ListPage:
    """`limit` (1 or more) and `offset` (0 or more) from `/task/list`'s query; other parameters are left alone
    (NodeODX clients send only `token`). A value that is not such a number is refused with HTTP 400."""
    return ListPage(offset=_count(query, "offset", 0) or 0, limit=_count(query, "limit", 1))


#: `status=` also takes NodeODX's status names for its codes
STATUS_NAMES = {"queued": 10, "running": 20, "failed": 30, "completed": 40, "canceled": 50}


def list_query(query: Mapping[str, str]) -> ListQuery:
    """`/task/list`'s filters and order: `status` (codes or names, comma-separated), `created_after` (inclusive)
    and `created_before` (exclusive), each ms since the epoch or an ISO 8601 time (UTC unless it says), `name`
    (contained, case-insensitive), `min_duration` and `max_duration` (seconds of processing time, inclusive),
    `sort` (created, status, images or duration, `.asc` or `.desc`; default created.asc). A bad value: HTTP 400
    naming the parameter. Absent or empty (`name=`), a parameter changes nothing."""
    statuses: list[int] = []
    for part in query.get("status", "").split(","):
        part = part.strip().lower()
        if not part:
            continue
        code = STATUS_NAMES.get(part, int(part) if part.isascii() and part.isdigit() and len(part) < 4 else -1)
        if code not in STATUS_NAMES.values():
            raise HTTPError(400, f"status must be status codes or names separated by commas (10 queued, 20 running, "
                                 f"30 failed, 40 completed, 50 canceled), not {query['status'][:40]!r}")
        if code not in statuses:
            statuses.append(code)
    if "status" in query and query["status"].strip() and not statuses:
        raise HTTPError(400, f"status must be at least one status code or name, not {query['status'][:40]!r}")
    sort, _, way = query.get("sort", "created").strip().lower().partition(".")
    if sort not in SORT_KEYS or way not in ("", "asc", "desc"):
        raise HTTPError(400, f"sort must be one of {', '.join(SORT_KEYS)}, optionally followed by .asc or .desc "
                             f"(as created.desc), not {query['sort'][:40]!r}")
    return ListQuery(statuses=tuple(sorted(statuses)), created_after=_time(query, "created_after"),
                     created_before=_time(query, "created_before"), name=query.get("name", "").strip().lower(),
                     min_duration=_seconds(query, "min_duration"), max_duration=_seconds(query, "max_duration"),
                     sort=sort, desc=way == "desc")


def _time(query: Mapping[str, str], name: str) -> int | None:
    """A time as ms since the epoch: given so (digits), or as ISO 8601 (`2026-12-06`, `2026-12-06T10:00:00Z`)."""
    text = query.get(name, "").strip()
    if not text:
        return None
    if text.isascii() and text.isdigit() and len(text) <= 18:
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise HTTPError(400, f"{name} must be a time, as milliseconds since 1970 or ISO 8601 (2026-12-06T10:00:00Z), "
                             f"not {query[name][:40]!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def _seconds(query: Mapping[str, str], name: str) -> int | None:
    """A duration given in seconds (0 or more, fractions allowed), as ms: what `processingTime` counts."""
    text = query.get(name, "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not math.isfinite(seconds) or seconds < 0 or seconds > 1e12:
        raise HTTPError(400, f"{name} must be a number of seconds, 0 or more, not {query[name][:40]!r}")
    return round(seconds * 1000)


def _count(query: Mapping[str, str], name: str, least: int) -> int | None:
    if name not in query:
        return None
    text = query[name].strip()
    digits = text.lstrip("0") or "0"
    value = (int(digits) if len(digits) <= 18 else 10 ** 18) if text.isascii() and text.isdigit() else -1
    if value < least:  # (10 ** 18: more than any list holds, and what the stores take)
        raise HTTPError(400, f"{name} must be a whole number of at least {least}, not {query[name][:40]!r}")
    return value


async def command_target(request: web.Request, uploads: bool = False) -> tuple[Relay, TaskRecord, dict[str, str]]:
    """The task a cancel/remove/restart names, answered as NodeODX answers: a missing uuid is an error,
    an unknown one (or another owner's) is `{"success": false, "error": ...}`. With `uploads`, an upload
    never committed is found too (for its owner only), which NodeODX does not do."""
    data = await form(request) if request.content_type in COMMAND_BODIES else {}
    if not data.get("uuid"):
        raise BadRequest("uuid param missing.")
    relay = request.app[RELAY]
    if uploads:
        owner = await relay.auth.identify(request)
        task = await relay.store.get_task(data["uuid"]) if valid_uuid(data["uuid"]) else None
        if task is not None and task.owner == owner and task.stage == Stage.UPLOADING:
            return relay, task, data
    try:
        relay, task = await task_for(request, data["uuid"])
    except NotFound as exc:
        raise CommandFailed(str(exc)) from None
    return relay, task, data


#: Node status codes of a task that has ended with a result (NodeODX: 30 failed, 40 completed).
ENDED_WITH_RESULT = {30: "failed", 40: "completed"}


async def task_cancel(request: web.Request) -> web.Response:
    """Cancel what is queued or running. A task that completed or failed is refused (an intended difference:
    NodeODX turns it into a canceled one, and its outputs, still there, are then refused by clients)."""
    relay, task, _ = await command_target(request)
    result = await cancel_task(relay, task)
    if is_parent(task):  # its submodels have no use once it stops: canceled and removed with it
        await for_each_submodel(relay, task, remove_task, "removed")
    return web.json_response(result)


async def cancel_task(relay: Relay, task: TaskRecord) -> Any:
    """Cancel one task: on its node, or in the relay's queue; the reply's body."""
    if task.stage == Stage.FAILED:
        raise CommandFailed(ended_error(task.uuid, "failed"))
    if task.off_node:  # only a completed task's copy is removed from its node
        raise CommandFailed(ended_error(task.uuid, "completed"))
    if task.stage == Stage.ON_NODE:
        info = await node_call(relay, task, "GET", endpoints.task_info(task.uuid))
        code = info.get("status", {}).get("code") if isinstance(info, dict) else None
        if code in ENDED_WITH_RESULT:
            raise CommandFailed(ended_error(task.uuid, ENDED_WITH_RESULT[code]))
        return await node_call(relay, task, "POST", endpoints.TASK_CANCEL, data={"uuid": task.uuid})
    if task.stage in (Stage.QUEUED, Stage.DISPATCHING, Stage.COMMITTING):
        if task.stage != Stage.QUEUED:  # the node it was being sent to may have it: stopped there when it answers
            await relay.store.add_ghost(task.node_id, task.uuid)
        task.stage, task.ended_ms = Stage.CANCELED, int(time.time() * 1000)
        await relay.store.put_task(task)
        log.info("task canceled in relay queue uuid=%s", task.uuid)
    return {"success": True}


def ended_error(uuid: str, how: str) -> str:
    return (f"Task {uuid} has {how}: only a queued or running task can be canceled (its outputs stay "
            "downloadable; /task/remove deletes it)")


async def task_remove(request: web.Request) -> web.Response:
    relay, task, _ = await command_target(request, uploads=True)
    if task.stage == Stage.UPLOADING:  # its owner gives it up: record and staged files go (an intended difference)
        async with relay.locks.hold(task.uuid):  # after a commit under way, which may have taken it
            current = await relay.store.get_task(task.uuid)
            if current is not None and current.stage == Stage.UPLOADING:
                await forget(relay, current)
                log.info("upload removed by its owner uuid=%s", task.uuid)
                return web.json_response({"success": True})
        if current is None:
            raise CommandFailed(f"{task.uuid} not found")
        task = current  # committed meanwhile: removed as any task
    refused = await remove_task(relay, task)
    if refused is None and is_parent(task):  # its submodels have no use without it
        await for_each_submodel(relay, task, remove_task, "removed")
    return web.json_response(refused or {"success": True})


async def task_restart(request: web.Request) -> web.Response:
    relay, task, data = await command_target(request)
    new_options = read_options(data["options"], relay) if data.get("options") else None
    if new_options is not None:
        new_options = rewrite_options(relay, task, new_options)
    async with relay.locks.hold(task.uuid):  # a send from the relay's queue finishes first: then the node decides
        task = await relay.store.get_task(task.uuid) or task
        if task.stage == Stage.ON_NODE:
            return web.json_response(await restart_on_node(relay, task, new_options))
        if task.stage in (Stage.CANCELED, Stage.FAILED):
            if not relay.staging.files(task.uuid):
                raise BadRequest("Cannot restart: the relay no longer keeps this task's inputs")
            task.stage, task.error, task.ended_ms, task.node_id = Stage.QUEUED, "", None, None
            task.runs += 1
        if new_options is not None:  # a task still in the relay's queue is sent with its new options
            task.options = new_options
        await relay.store.put_task(task)
        relay.wake_dispatch.set()
    return web.json_response({"success": True})


async def restart_on_node(relay: Relay, task: TaskRecord, new_options: dict[str, Any] | None) -> Any:
    payload = {"uuid": task.uuid}
    if task.off_node:
        raise CommandFailed(f"Cannot restart {task.uuid}: its node's copy was removed once its results were archived "
                            "(--remove-from-node); its results stay downloadable. Create the task again to process it "
                            "again.")
    if new_options is not None:  # as checked, with the relay's own sm-cluster (split_merge.rewrite_options)
        payload["options"] = options_to_json(new_options)
    result = await node_call(relay, task, "POST", endpoints.TASK_RESTART, data=payload)
    if isinstance(result, dict) and result.get("success"):
        relay.cache.drop(task.uuid)
        with contextlib.suppress(ResultsError):  # (a result left behind is replaced by the next run's archive)
            await relay.results.remove(task.uuid)
        if new_options is not None:
            task.options = new_options
        task.ended_ms, task.last_info = None, None  # its old end is no longer what it says if the node goes
        task.runs += 1  # its next end is announced to the client again, as NodeODX does
        await relay.store.put_task(task)
    return result


def _int(text: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return 0


def add_routes(app: web.Application) -> None:
    app.router.add_get(endpoints.INFO, info)
    app.router.add_get(endpoints.OPTIONS, options)
    app.router.add_get(endpoints.AUTH_INFO, auth_info)
    app.router.add_post(endpoints.AUTH_LOGIN, auth_login)
    app.router.add_post(endpoints.AUTH_REGISTER, auth_register)
    app.router.add_post(endpoints.TASK_NEW_INIT, task_new_init)
    app.router.add_post(endpoints.TASK_NEW_UPLOAD, task_new_upload)
    app.router.add_post(endpoints.TASK_NEW_COMMIT, task_new_commit)
    app.router.add_post(endpoints.TASK_NEW, task_new)
    app.router.add_get(endpoints.TASK_LIST, task_list)
    app.router.add_get(endpoints.TASK_INFO, task_info)
    app.router.add_get(endpoints.TASK_OUTPUT, task_output)
    app.router.add_get(endpoints.TASK_DOWNLOAD.replace("{asset}", "{asset:.+}"), task_download)  # EPT tile paths
    app.router.add_get("/task/{uuid}/signed-urls", task_signed_urls)
    app.router.add_get("/task/{uuid}/signed/{expires}/{sig}/{asset:.+}", task_signed_download)  # GET and HEAD only
    app.router.add_post(endpoints.TASK_CANCEL, task_cancel)
    app.router.add_post(endpoints.TASK_REMOVE, task_remove)
    app.router.add_post(endpoints.TASK_RESTART, task_restart)
    app.router.add_post("/_relay/webhook/{uuid}", receive)
