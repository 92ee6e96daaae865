"""Task intake: `/task/new/init`, `/task/new/upload/{uuid}`, `/task/new/commit/{uuid}` and `/task/new`.

Every file is streamed to the staging folder in bounded chunks. When a node with a free slot is
chosen at init, each file is forwarded to it *while* it is being written, so that commit costs what a
commit costs on the node; otherwise (cluster full, node failed mid-way) the task waits in the relay's
queue and the dispatcher sends it from the staging folder. Staged inputs stay until the task ends.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
import uuid as uuidlib
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from shared.inputs import count_photos
from shared.options import MIN_IMAGES, loads_limited, parse_options_field, validate_options

from .crashpoints import crash_point
from .errors import BadRequest, NoAnswer, UploadStalled, UpstreamError
from .forward import (
    claim_sending,
    commit_on_node,
    discard_on_node,
    held_by,
    mark_on_node,
    open_on_node,
    renewing_claim,
    reserve_slot,
    send_file,
)
from .models import NodeRecord, Stage, TaskRecord
from .outbound import WEBHOOK
from .scheduler import TaskNeeds, forward_target, leaves_free, refusal
from .split_merge import check_input_name, parent_of_owner, rewrite_options, slots_to_keep
from .staging import safe_filename, valid_uuid
from .state import Relay

log = logging.getLogger("odx_relay.intake")
CHUNK = 64 * 1024  # read at a time; each upload holds a few of these (see app.READ_BUFFER): 1 MB held ~2.6 MB
MAX_FIELD = 1024 * 1024  # a text field of a multipart body (name, options, ...) is read into memory: cap it
MB = 1024 * 1024


class Body:
    """A multipart request body read under the relay's limits.

    Every read waits at most `upload_timeout` seconds, so a client that sends a few bytes and stalls
    is dropped instead of holding a connection, a file and (when forwarding) a node upload for ever.
    Files count against the task's byte budget (`max_upload_mb`, all its files together), checked as
    they stream, so a file past it is cut off without ever being kept whole. What the task holds already
    is read from its staging folder once per request and then kept up to date here, so each part costs
    the same however many came before it (commit checks the whole again).
    """

    def __init__(self, relay: Relay, reader: MultipartReader):
        self.relay, self.reader = relay, reader
        self.timeout = relay.config.upload_timeout or None
        self.started, self.received = time.monotonic(), 0
        self.names: set[str] | None = None  # files the task holds, as of this request's first part
        self.used = 0                       # their bytes
        self.images = 0                     # and how many are photos (what --max-images limits)

    def staged(self, task: TaskRecord) -> set[str]:
        if self.names is None:
            self.names = {p.name for p in self.relay.staging.files(task.uuid)}
            self.used = self.relay.staging.used_bytes(task.uuid)
            self.images = count_photos(self.names)
        return self.names

    def images_with(self, task: TaskRecord, name: str) -> int:
        """How many photos the task would hold once `name` is kept too."""
        new = name not in self.staged(task)
        return self.images + (count_photos([name]) if new else 0)

    def kept(self, name: str, size: int) -> None:
        assert self.names is not None
        if name not in self.names:
            self.images += count_photos([name])
            self.names.add(name)
        self.used += size

    @classmethod
    def of(cls, relay: Relay, request: web.Request) -> Body:
        if not request.content_type.startswith("multipart/"):
            raise BadRequest("Need at least 1 file.", noRetry=True)
        try:
            return cls(relay, MultipartReader(request.headers, request.content))
        except (ValueError, KeyError) as exc:
            raise BadRequest(f"Malformed multipart body: {exc}") from None

    async def _timed(self, awaitable, what: str):
        try:
            async with asyncio.timeout(self.timeout):  # not wait_for: no task made per chunk (Python 3.11)
                return await awaitable
        except TimeoutError:
            raise UploadStalled(f"Upload timed out: nothing received for {self.timeout:g} s while reading "
                                f"{what}") from None
        except (ValueError, RuntimeError, HttpProcessingError) as exc:  # a body that is not valid multipart
            raise BadRequest(f"Malformed multipart body: {exc}") from None

    async def next_part(self) -> BodyPartReader | None:
        while True:
            part = await self._timed(self.reader.next(), "the request")
            if part is None or isinstance(part, BodyPartReader):
                return part
            await self.skip(part)  # a nested multipart: nothing NodeODX clients send

    async def chunk(self, part: BodyPartReader) -> bytes:
        """The part's next bytes; b"" once its closing boundary has been read. A body that ends before that
        (its length reached, its last chunk sent) has been cut short: aiohttp then answers b"" too, without
        marking the part done, so that is told apart here and refused, and the partial file not kept."""
        what = part.filename or part.name or "a part"
        data = await self._timed(part.read_chunk(CHUNK), what)
        if not data and not part.at_eof():
            raise BadRequest(f"Upload cut short: the request's body ended in the middle of {what!r}, before the "
                             f"part's closing boundary; the part was not kept")
        self.received += len(data)
        self.check_rate()
        return data

    def check_rate(self) -> None:
        """A client that drips a few bytes now and then never trips `upload_timeout`; past that many seconds,
        the request must also average `--upload-min-kbps`, or it is answered and closed like a stalled one."""
        floor = self.relay.config.upload_min_kbps
        elapsed = time.monotonic() - self.started
        if floor and elapsed > (self.timeout or 60) and self.received / 1024 / elapsed < floor:
            raise UploadStalled(f"Upload too slow: {self.received / 1024 / elapsed:.2f} KB/s on average; this "
                                f"relay needs at least {floor:g} KB/s")

    async def skip(self, part) -> None:
        if isinstance(part, BodyPartReader):
            while await self.chunk(part):
                pass
        else:
            await self._timed(part.release(), "a part")

    async def field(self, part: BodyPartReader) -> str:
        data = bytearray()
        while chunk := await self.chunk(part):
            data += chunk
            if len(data) > MAX_FIELD:
                raise BadRequest(f"Field {part.name!r} is too large (at most {MAX_FIELD // MB} MB)")
        try:
            return bytes(part.decode(data)).decode("utf-8", "replace")
        except (ValueError, RuntimeError) as exc:  # a Content-Transfer-Encoding that is unknown or broken
            raise BadRequest(f"Field {part.name!r} cannot be decoded: {exc}") from None

    def budget(self, task: TaskRecord) -> FileReader:
        limit_mb = self.relay.config.max_upload_mb
        self.staged(task)
        return FileReader(self, int(limit_mb * MB) - self.used if limit_mb else None)


class FileReader:
    """One file's chunks, within what is left of the task's byte budget; remembers why it stopped."""

    def __init__(self, body: Body, left: int | None):
        self.body, self.left = body, left
        self.refusal: BadRequest | None = None

    async def read(self, part: BodyPartReader) -> bytes:
        try:
            chunk = await self.body.chunk(part)
        except BadRequest as exc:
            self.refusal = exc
            raise
        if self.left is not None:
            self.left -= len(chunk)
            if self.left < 0:
                self.refusal = BadRequest(too_large(self.body.relay))
                raise self.refusal
        return chunk

    async def tee(self, part: BodyPartReader, handle) -> AsyncIterator[bytes]:
        while chunk := await self.read(part):
            handle.write(chunk)
            yield chunk


def too_large(relay: Relay) -> str:
    return f"Upload too large: a task's files may take at most {relay.config.max_upload_mb:g} MB on this relay"


def read_options(raw: str | None, relay: Relay) -> dict[str, Any]:
    """The `options` field of init or restart, checked against what every online node accepts. NodeODX drops
    what it cannot use without a word; the relay says so at once (an intended difference)."""
    if raw is not None and raw.strip().startswith("{"):  # NodeODX ignores an object: refused here, not lost
        raise BadRequest('Invalid options: expected a JSON list of {"name": ..., "value": ...} objects')
    try:
        options = parse_options_field(raw)
    except ValueError as exc:
        raise BadRequest(f"Invalid options: {exc}") from None
    available = relay.registry.options()
    problems = validate_options(available, options) if available else []
    if problems:
        raise BadRequest("Invalid option " + "; ".join(str(p) for p in problems))
    return options


def js_parse_int(text: str | None) -> int | None:
    """JavaScript's parseInt, as NodeODX reads `dateCreated`: the leading whole number, or None."""
    match = re.match(r"\s*([+-]?\d+)", text or "")
    return int(match.group(1)) if match else None


def read_fields(fields: dict[str, str], relay: Relay) -> dict[str, Any]:
    """The init fields, read as NodeODX reads them; options and the webhook's address checked early."""
    options = read_options(fields.get("options"), relay)
    outputs = None
    if fields.get("outputs"):
        try:
            outputs = loads_limited(fields["outputs"], "outputs")
            assert isinstance(outputs, list) and all(isinstance(o, str) for o in outputs)
        except (ValueError, AssertionError) as exc:
            deep = isinstance(exc, ValueError) and "nested" in str(exc)
            raise BadRequest(f"Invalid outputs: {exc}" if deep else "Invalid outputs: expected a JSON list of "
                                                                     "paths") from None
    created_ms = js_parse_int(fields.get("dateCreated"))
    if created_ms is None or abs(created_ms) >= 2 ** 53:  # not a number (NodeODX takes the time now), or unsafe
        created_ms = int(time.time() * 1000)
    name = fields.get("name")  # no field, no name (as on NodeODX); an empty one gets NodeODX's default
    if name == "":
        name = "Task of " + datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    webhook = fields.get("webhook") or ""
    if webhook:  # refused now rather than found out when the task ends (checked again when it is called)
        WEBHOOK.checked(webhook, relay.config.webhook_allow_private)
    return {"name": name, "options": options, "webhook": webhook,
            "skip_post_processing": fields.get("skipPostProcessing") == "true",  # NodeODX takes no other spelling
            "outputs": outputs, "created_ms": created_ms}


async def choose_uuid(request: web.Request, relay: Relay) -> str:
    wanted = request.headers.get("set-uuid")
    if wanted is None:
        return str(uuidlib.uuid4())
    # the claim is atomic (across replicas too): of inits racing for one uuid, exactly one gets it
    if (not valid_uuid(wanted) or await relay.store.get_task(wanted) is not None
            or not await relay.store.claim_once(wanted, "set-uuid")):
        raise BadRequest(f"Invalid set-uuid: {wanted}")
    return wanted  # its case kept: NodeODX keeps it, and finds a task by the exact string


async def init_task(relay: Relay, uuid: str, owner: str, fields: dict[str, Any]) -> TaskRecord:
    """Create the record and staging folder, and open the task on the node that fits best now, so that its
    files can be forwarded as they arrive. No slot is held: as on NodeODX, only committed work counts
    against a node's capacity, so abandoned uploads never keep other tasks waiting."""
    task = TaskRecord(uuid=uuid, owner=owner, **fields)
    split_merge_fields(relay, task)
    relay.staging.create(uuid)
    heading = Counter(t.forward_node_id for t in await relay.store.tasks_in(Stage.UPLOADING) if t.forward_node_id)
    task.forward_node_id = forward_target(await relay.registry.states(), heading, relay.registry.last_assigned)
    await relay.store.put_task(task)  # before the node answers, so that parallel inits count it as heading there
    if task.forward_node_id is not None:
        relay.registry.last_assigned[task.forward_node_id] = time.monotonic()  # the next init tries another
        try:
            await open_on_node(relay, task, task.forward_node_id)
        except UpstreamError as exc:
            log.warning("init forward failed uuid=%s node=%s: %s", uuid, task.forward_node_id, exc)
            task.forward_node_id = None
            await relay.store.put_task(task)
    log.info("task init uuid=%s forward_node=%s", uuid, task.forward_node_id)
    crash_point("after-init")
    return task


def split_merge_fields(relay: Relay, task: TaskRecord) -> None:
    """A task made with a split-merge credential is its parent's submodel; `sm-cluster` is the relay's to set."""
    task.parent_uuid = parent_of_owner(task.owner)
    task.options = rewrite_options(relay, task, task.options)


def check_image_count(relay: Relay, task: TaskRecord, body: Body, name: str) -> None:
    """Refuse a photo past `--max-images` before reading it."""
    limit = relay.config.max_images
    if limit and body.images_with(task, name) > limit:
        raise BadRequest(f"Too many images: this relay takes at most {limit} images per task")


async def stage_part(relay: Relay, task: TaskRecord, body: Body, part: BodyPartReader, forward: bool) -> str:
    """Write one uploaded file to staging (and to the task's node at the same time when `forward`).

    Whatever stops it (a limit, a stall, the client leaving) removes the partial file."""
    name = safe_filename(part.filename)
    if name is None:
        raise BadRequest(f"Invalid file name: {part.filename!r}")
    check_input_name(relay, name)
    check_image_count(relay, task, body, name)
    reader = body.budget(task)
    partial = relay.staging.partial(task.uuid, name)
    node = relay.registry.get(task.forward_node_id) if forward else None
    if node is not None and not forwardable(relay, task, name, node.record.id):
        node = None
    try:
        with open(partial, "wb") as handle:
            if node is not None:
                try:
                    await send_file(relay, task, node.record, name, reader.tee(part, handle))
                except UpstreamError as exc:
                    if reader.refusal is None:
                        log.warning("forward failed uuid=%s file=%s: %s", task.uuid, name, exc)
                if reader.refusal is not None:  # the node's copy was cut off with it
                    raise reader.refusal
            while chunk := await reader.read(part):  # whatever the node did not take
                handle.write(chunk)
    except BaseException as exc:
        partial.unlink(missing_ok=True)
        log.info("upload dropped uuid=%s file=%s: %s", task.uuid, name, exc if isinstance(exc, BadRequest)
                 else type(exc).__name__)
        raise
    size = partial.stat().st_size
    partial.replace(relay.staging.folder(task.uuid) / name)
    body.kept(name, size)
    return name


def forwardable(relay: Relay, task: TaskRecord, name: str, node_id: str) -> bool:
    """Whether a file may go to the forward node as it arrives: not a name sent there before (a client's
    retry, or one after a crash), which the node would keep twice; its upload is put in doubt instead, and
    sent again from the start at commit. (Files of other uploads still on their way are no doubt: a client
    sends several at once.)"""
    if relay.staging.was_sent(task.uuid, name, node_id):
        relay.staging.unsure_of(task.uuid, node_id)
        return False
    return True


async def upload_files(relay: Relay, task: TaskRecord, request: web.Request) -> list[str]:
    body = Body.of(relay, request)
    names = []
    async with keep_alive(relay, task.uuid):
        while (part := await body.next_part()) is not None:
            if part.name == "images" and part.filename is not None:
                names.append(await stage_part(relay, task, body, part, forward=task.forward_node_id is not None))
            else:
                await body.skip(part)
    return names


@contextlib.asynccontextmanager
async def keep_alive(relay: Relay, uuid: str) -> AsyncIterator[None]:
    """While an upload request lasts, touch its staging folder now and then, so that no replica's
    housekeeping takes it for abandoned (`--upload-idle`) while bytes wait on a slow node."""
    async def touch() -> None:
        while True:
            await asyncio.sleep(max(0.5, relay.config.upload_idle / 3))
            with contextlib.suppress(OSError):
                os.utime(relay.staging.folder(uuid))

    toucher = asyncio.ensure_future(touch())
    try:
        yield
    finally:
        toucher.cancel()


async def one_shot_files(relay: Relay, task: TaskRecord, request: web.Request) -> dict[str, str]:
    """`/task/new`'s body: files staged (not forwarded: no node is chosen yet), text fields returned."""
    body = Body.of(relay, request)
    fields: dict[str, str] = {}
    while (part := await body.next_part()) is not None:
        if part.filename is not None and part.name == "images":
            await stage_part(relay, task, body, part, forward=False)
        elif part.name:
            fields[part.name] = await body.field(part)
        else:
            await body.skip(part)
    return fields


async def commit_task(relay: Relay, task: TaskRecord) -> None:
    """Count, check limits, then commit on the forward node or put the task in the relay's queue."""
    files = relay.staging.files(task.uuid)
    task.image_count = count_photos(files)
    if not files:  # NodeODX drops such an upload: a later call on its uuid finds nothing
        await forget(relay, task)
        raise BadRequest("Need at least 1 file.")
    needs = relay.needs(task)
    reason = refusal(needs, await relay.registry.states())
    if task.image_count < MIN_IMAGES:
        reason = f"Not enough images: {task.image_count} image(s) uploaded, at least {MIN_IMAGES} are needed."
    if relay.config.max_images and task.image_count > relay.config.max_images:
        reason = f"Too many images: this relay takes at most {relay.config.max_images} images per task"
    if relay.config.max_upload_mb and relay.staging.used_bytes(task.uuid) > relay.config.max_upload_mb * MB:
        reason = too_large(relay)  # parallel uploads each counted what was there when they began
    if reason:
        await forget(relay, task)
        log.info("task refused uuid=%s: %s", task.uuid, reason)
        raise BadRequest(reason)
    if task.forward_node_id and await commit_on_forward_node(relay, task, needs):
        return
    await relay.registry.release(task.uuid)
    task.stage, task.node_id, task.forward_node_id = Stage.QUEUED, None, None
    await relay.store.put_task(task)
    if task.parent_uuid is None:  # a submodel is placed by its commit's request itself (routes.place_submodel)
        relay.wake_dispatch.set()
    log.info("task queued uuid=%s images=%d memory_mb=%d", task.uuid, task.image_count, needs.memory_mb)


async def commit_on_forward_node(relay: Relay, task: TaskRecord, needs: TaskNeeds) -> bool:
    """Commit where the files already went, if that node still takes the task now: a slot is reserved
    first (atomically, across replicas), so commits racing for its last slot never overbook it. The intent
    is recorded before the node is asked, so that a relay killed meanwhile asks the node on its return.
    True when the task is (or may be, pending an answer) on the node; False: put it in the relay's queue."""
    handle = relay.registry.get(task.forward_node_id)
    if handle is None or not handle.online:
        return False
    state = handle.state()
    if state.max_images is not None and task.image_count > state.max_images:
        log.info("forward node does not take %d images uuid=%s node=%s", task.image_count, task.uuid,
                 handle.record.id)
        return False
    keep = await slots_to_keep(relay, task)
    if keep and not leaves_free(await relay.registry.states(), keep):
        log.info("split-merge parent waits: a slot is kept for submodels uuid=%s", task.uuid)
        return False
    if not await reserve_slot(relay, task, handle.record.id, needs):
        log.info("forward node has no room now uuid=%s node=%s", task.uuid, handle.record.id)
        return False
    await claim_sending(relay, task.uuid)
    async with renewing_claim(relay, task.uuid):
        task.stage, task.node_id = Stage.COMMITTING, handle.record.id
        await relay.store.put_task(task)
        try:
            await commit_on_node(relay, task, handle.record)
            crash_point("in-commit")
        except UpstreamError as exc:
            held = await held_by(relay, handle.record, task.uuid) if isinstance(exc, NoAnswer) else False
            if held is None:  # accepted: `recover` asks the node until it can answer
                log.warning("commit unsettled uuid=%s node=%s: %s", task.uuid, handle.record.id, exc)
                return True
            if not held:
                log.warning("commit forward failed uuid=%s node=%s: %s", task.uuid, handle.record.id, exc)
                return False
        await mark_on_node(relay, task, handle.record.id, needs)
    return True


async def forget(relay: Relay, task: TaskRecord) -> None:
    """Drop an upload that will never be committed: its record, its staged files, and its copy on the forward
    node (which NodeODX would otherwise keep for two days, `cleanupUploadsAfter`)."""
    await relay.registry.release(task.uuid)
    relay.staging.remove(task.uuid)
    await relay.store.delete_task(task.uuid)
    handle = relay.registry.get(task.forward_node_id) if task.forward_node_id else None
    if handle is not None:
        relay.spawn(discard_quietly(relay, task, handle.record))


async def discard_quietly(relay: Relay, task: TaskRecord, node: NodeRecord) -> None:
    try:
        await discard_on_node(relay, task, node)
    except UpstreamError as exc:  # the node cleans up stale uploads itself in the end
        log.info("upload not discarded on node uuid=%s node=%s: %s", task.uuid, node.id, exc)
