"""The node registry: which nodes the relay knows, whether each is online, and what it last said.

Health: each node's `/info` is asked on an interval and before placing a task; a node goes offline
after `offline_after` failures in a row and comes back after one success. Reservations live in the
store (atomic in Redis, so replicas never overbook a node); a fresh `/info` is what settles them. With
several replicas, one of them (holding the "health" lease) asks the nodes each interval and shares
what it learnt through the store; the others read it.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from yarl import URL

from shared import endpoints

from .errors import UpstreamError
from .models import NodeRecord
from .scheduler import NodeState, Reservations
from .store import Store
from .upstream import Upstream, public_name

log = logging.getLogger("odx_relay.nodes")
MB = 1024 * 1024


def parse_node_url(text: str, label: str = "") -> NodeRecord:
    """`http://host:port[/prefix]?token=T` → a NodeRecord whose URL has no token in it."""
    parts = urlsplit(text.strip() if "://" in text else "http://" + text.strip())
    shown = text.strip().split("?", 1)[0]  # never the query: it holds the node's token
    try:
        parts.port  # noqa: B018  (raises ValueError on a port that is not a number)
    except ValueError:
        raise ValueError(f"not a valid port in node URL: {shown!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) node URL: {shown!r}")
    token = parse_qs(parts.query).get("token", [""])[0]
    url = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    try:  # a host IDNA cannot encode, or user:password that Basic auth cannot send, would fail every check
        checked = URL(url)
        f"{checked.user or ''}:{checked.password or ''}".encode("latin-1")
    except (ValueError, IndexError):
        raise ValueError(f"not a valid host in node URL: {shown!r}") from None
    node_id = hashlib.sha1(url.encode()).hexdigest()[:8]
    return NodeRecord(id=node_id, url=url, token=token, label=label)


@dataclass
class NodeHandle:
    record: NodeRecord
    online: bool = False
    failures: int = 0
    info: dict[str, Any] | None = None
    info_at: float = 0.0
    asked_at: float = 0.0  # wall-clock time `info` was asked: reservations settled later than that need newer info
    options: list[dict] | None = None
    last_error: str = ""
    checked: bool = False
    offline_since: float | None = None

    def shared(self) -> dict[str, Any]:
        """What other replicas need to know of this node's health."""
        return {"online": self.online, "failures": self.failures, "info": self.info, "options": self.options,
                "lastError": self.last_error, "offlineSince": self.offline_since, "at": time.time(),
                "askedAt": self.asked_at}

    def adopt(self, shared: dict[str, Any]) -> None:
        self.online, self.failures = shared["online"], shared["failures"]
        if shared.get("askedAt", 0.0) >= self.asked_at:  # never trade this replica's newer numbers for older ones
            self.info, self.asked_at = shared["info"], shared.get("askedAt", 0.0)
        self.options = shared.get("options") or self.options
        self.last_error, self.offline_since = shared.get("lastError", ""), shared.get("offlineSince")
        self.info_at, self.checked = time.monotonic(), True

    def state(self) -> NodeState:
        info = self.info or {}

        def mb(key: str) -> int | None:
            value = info.get(key)
            return None if value is None else int(value) // MB

        return NodeState(
            id=self.record.id, online=self.online, locked=self.record.locked,
            slots=int(info.get("maxParallelTasks") or 1), queue=int(info.get("taskQueueCount") or 0),
            max_images=info.get("maxImages"), total_mb=mb("totalMemory"), available_mb=mb("availableMemory"))

    def public(self) -> dict[str, Any]:
        """What the admin API shows: everything but the token."""
        return {"id": self.record.id, "url": self.record.shown_url, "label": self.record.label,
                "locked": self.record.locked, "online": self.online, "failures": self.failures,
                "hasToken": bool(self.record.token), "info": self.info, "lastError": self.last_error,
                "infoAge": round(time.monotonic() - self.info_at, 1) if self.info_at else None}


@dataclass
class NodeRegistry:
    store: Store
    upstream: Upstream
    offline_after: int = 3
    handles: dict[str, NodeHandle] = field(default_factory=dict)
    removed: bool = True  # a node went away since tasks were last matched to nodes (and at start)
    last_assigned: dict[str, float] = field(default_factory=dict)

    async def load(self, configured: list[NodeRecord]) -> None:
        """Nodes from the store plus those given at start (start-up flags win for URL and token)."""
        for record in await self.store.list_nodes():
            self.handles[record.id] = NodeHandle(record)
        for record in configured:
            known = self.handles.get(record.id)
            if known is not None:
                record.locked = known.record.locked
                record.label = record.label or known.record.label
            self.handles[record.id] = NodeHandle(record)
            await self.store.put_node(record)

    async def sync(self) -> None:
        """Take in nodes added, removed or (un)locked through another replica, and its health checks."""
        records = {r.id: r for r in await self.store.list_nodes()}
        for node_id in list(self.handles):
            if node_id not in records:
                del self.handles[node_id]
                self.removed = True
        for node_id, record in records.items():
            if node_id in self.handles:
                self.handles[node_id].record = record
            else:
                self.handles[node_id] = NodeHandle(record)
        for node_id, shared in (await self.store.node_infos()).items():
            if node_id in self.handles:
                self.handles[node_id].adopt(shared)

    def get(self, node_id: str | None) -> NodeHandle | None:
        return self.handles.get(node_id or "")

    async def add(self, record: NodeRecord) -> NodeHandle:
        handle = NodeHandle(record)
        self.handles[record.id] = handle
        await self.store.put_node(record)
        await self.check(handle)
        log.info("node added id=%s url=%s", record.id, record.shown_url)
        return handle

    async def remove(self, node_id: str) -> None:
        self.handles.pop(node_id, None)
        self.removed = True
        await self.store.delete_node(node_id)
        log.info("node removed id=%s", node_id)

    async def set_locked(self, node_id: str, locked: bool) -> NodeHandle | None:
        handle = self.handles.get(node_id)
        if handle is not None:
            handle.record.locked = locked
            await self.store.put_node(handle.record)
            log.info("node %s id=%s", "locked" if locked else "unlocked", node_id)
        return handle

    async def check(self, handle: NodeHandle) -> None:
        """Ask one node's /info; update online state, reservations and (first time) its options."""
        asked_at = time.time()
        try:
            info = await self.upstream.call(handle.record, "GET", endpoints.INFO)
            if not isinstance(info, dict) or "error" in info:
                raise UpstreamError(f"node {public_name(handle.record)} refused /info: "
                                    f"{info.get('error') if isinstance(info, dict) else info!r}")
            if handle.options is None:
                options = await self.upstream.call(handle.record, "GET", endpoints.OPTIONS)
                handle.options = options if isinstance(options, list) else None
        except UpstreamError as exc:
            handle.failures += 1
            handle.last_error = str(exc)
            handle.checked = True
            if handle.online and handle.failures >= self.offline_after:
                handle.online, handle.offline_since = False, time.time()
                log.warning("node offline id=%s after %d failures: %s", handle.record.id, handle.failures, exc)
            elif not handle.online and handle.offline_since is None:
                handle.offline_since = time.time()
            await self.store.put_node_info(handle.record.id, handle.shared())
            return
        if asked_at < handle.asked_at:
            return  # checks overlapped and a newer answer came first: this one would turn the numbers back
        was_online = handle.online
        handle.info, handle.info_at, handle.failures, handle.last_error = info, time.monotonic(), 0, ""
        handle.online, handle.checked, handle.offline_since, handle.asked_at = True, True, None, asked_at
        await self.store.settle_reservations(handle.record.id, asked_at)
        await self.store.put_node_info(handle.record.id, handle.shared())
        if not was_online:
            log.info("node online id=%s queue=%s slots=%s", handle.record.id, info.get("taskQueueCount"),
                     info.get("maxParallelTasks"))

    async def task_left(self, node_id: str | None, uuid: str) -> None:
        """A task ended on a node: count its slot free now, without asking the node's /info (NodeODX runs
        `lscpu` and `free` for each /info, ~10 ms of its CPU, just when the client polls and downloads).
        A task whose reservation is still held was never in the node's count; otherwise it leaves the count,
        shared with the other replicas like a health check's numbers (call it once per end, not per replica),
        unless the count is already down to the relay's other unfinished tasks there (a check after the end).
        The next health check corrects whatever this guessed wrong."""
        held = any(uuid in tasks for tasks in (await self.store.reservations()).values())
        handle = self.handles.get(node_id or "")
        if held:
            await self.release(uuid)
        elif handle is not None and handle.info and int(handle.info.get("taskQueueCount") or 0) > 0:
            count = int(handle.info["taskQueueCount"])
            # a check that came after the end shows it already: the node counts no more tasks than the relay
            # still has there, and taking one off again would free a slot that is not free (overbooking)
            still_there = sum(1 for t in await self.store.open_tasks_on(handle.record.id) if t.uuid != uuid)
            if count > still_there:
                handle.info = {**handle.info, "taskQueueCount": count - 1}
                await self.store.put_node_info(handle.record.id, handle.shared())

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check(h) for h in list(self.handles.values())))

    async def states(self) -> list[NodeState]:
        """Each node's state with every replica's in-flight reservations counted, for placement."""
        held = Reservations(await self.store.reservations())
        return [held.apply(h.state()) for h in self.handles.values()]

    async def reserve(self, node_id: str, uuid: str, memory_mb: int) -> bool:
        """Hold a slot (and memory) on a node for a task on its way there; False if it is gone."""
        handle = self.handles.get(node_id)
        if handle is None:
            return False
        state = handle.state()
        return await self.store.reserve(node_id, uuid, memory_mb, state.slots - state.queue, state.available_mb,
                                        info_asked_at=handle.asked_at)

    async def release(self, uuid: str) -> None:
        await self.store.drop_reservation(uuid)

    def online(self) -> list[NodeHandle]:
        return [h for h in self.handles.values() if h.online]

    def options(self) -> list[dict]:
        """Options every online node accepts (by name), so a task validated here runs anywhere."""
        lists = [h.options for h in self.online() if h.options]
        if not lists:
            return []
        names = set.intersection(*({o["name"] for o in opts} for opts in lists))
        return [o for o in lists[0] if o["name"] in names]
