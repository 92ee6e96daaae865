"""The task panel's network side, without Qt: one snapshot of the server (its tasks and its health) per
refresh, and which tasks ended between two snapshots.

A relay answers its newest tasks' infos in one request (`/task/list?sort=created.desc&limit=200&with_info=true`,
with the node holding each); a plain NodeODX node ignores those parameters and answers every uuid alone, oldest
first, and then each of the newest tasks' info is asked for.
Everything here runs in a worker thread; the panel only reads the `Snapshot` it hands back.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..deps import shared
from .connection import Connection, ConnectionError
from .describe import STATUS_WORDS, error_message

TaskStatus = shared.TaskStatus
#: The panel shows this many of the newest tasks (the `listtasks` algorithm lists them all).
MAX_TASKS = 200
#: Statuses of a task that has not ended.
ACTIVE = (TaskStatus.QUEUED, TaskStatus.RUNNING)


@dataclass(frozen=True)
class TaskEntry:
    """One row of the panel: a task's info and, through a relay, the node that holds it."""

    info: shared.TaskInfo
    node: str | None = None
    seen_at: dt.datetime | None = None  # when the server said this (the elapsed time runs on from there)

    @property
    def uuid(self) -> str:
        return self.info.uuid

    @property
    def status(self) -> shared.TaskStatus:
        return self.info.status

    @property
    def status_word(self) -> str:
        return STATUS_WORDS.get(self.info.status, str(self.info.status))

    @property
    def title(self) -> str:
        """The task's name, else the start of its uuid (what the notices and confirmations call it)."""
        return self.info.name or self.info.uuid[:8]

    def elapsed_ms(self, now: dt.datetime | None = None) -> int:
        """Processing time as the server counts it, running on since the server said it while the task runs (so
        the panel's clock ticks between refreshes); for a task it has not started timing, since creation."""
        now = now or dt.datetime.now(dt.UTC)
        if self.info.processing_time > 0:
            running = self.info.status == TaskStatus.RUNNING and self.seen_at is not None
            since = int((now - self.seen_at).total_seconds() * 1000) if running else 0
            return self.info.processing_time + max(0, since)
        if self.info.status in ACTIVE and self.info.date_created is not None:
            return max(0, int((now - self.info.date_created).total_seconds() * 1000))
        return 0


@dataclass(frozen=True)
class ClusterHealth:
    """What the header shows: for a relay its nodes, for a node itself (one node, online if it answered)."""

    online: int
    total: int
    slots: int
    free_slots: int
    queued: int
    is_relay: bool

    @property
    def warning(self) -> str:
        if self.online == 0:
            return ("No node is online: tasks wait in the relay's queue until one comes back."
                    if self.is_relay else "The node does not answer.")
        return ""

    @property
    def text(self) -> str:
        nodes = f"Nodes online: {self.online}/{self.total}" if self.is_relay else "NodeODX node"
        return f"{nodes} · free slots: {self.free_slots}/{self.slots} · queued: {self.queued}"


def health_from_info(info: shared.NodeInfo) -> ClusterHealth:
    """The relay's `/info` has a `relay` key with its node counts and its own queue; a node's has neither."""
    relay = info.extra.get("relay")
    slots = int(info.max_parallel_tasks or 0)
    busy = int(info.task_queue_count or 0)
    free = max(0, slots - busy)
    if isinstance(relay, Mapping):
        online, total = int(relay.get("online") or 0), int(relay.get("nodes") or 0)
        return ClusterHealth(online, total, slots, free, max(0, busy - slots), True)
    return ClusterHealth(1, 1, slots, free, max(0, busy - slots), False)


@dataclass(frozen=True)
class Snapshot:
    """One refresh: the tasks newest first and the server's health, or what went wrong."""

    tasks: list[TaskEntry] = field(default_factory=list)
    health: ClusterHealth | None = None
    error: str = ""
    with_info: bool = False  # the server answered the whole list with infos (a relay)
    total: int = 0  # how many tasks the list held (a relay answers at most MAX_TASKS, its newest)


def entry_from_json(data: Mapping[str, Any], seen_at: dt.datetime | None = None) -> TaskEntry:
    node = data.get("node")
    return TaskEntry(shared.TaskInfo.from_json(dict(data)), str(node) if node else None, seen_at)


def fetch_tasks(node: shared.Node, ended: Mapping[str, TaskEntry] | None = None,
                most: int = MAX_TASKS) -> tuple[list[TaskEntry], bool, int]:
    """The token's newest `most` tasks, newest first; whether one request said it all (a relay); how many tasks
    there are (from a relay, which answers only its newest `most`, at least that many). From a plain node, the
    tasks in `ended` (ended at an earlier refresh, so unchanged unless restarted) are not asked again."""
    listed = node.get_json(shared.endpoints.TASK_LIST, list_query(most))
    if not isinstance(listed, list):
        raise shared.NodeResponseError(f"unexpected task list: {str(listed)[:200]}")
    with_info = all(isinstance(item, Mapping) and "status" in item for item in listed) and bool(listed)
    seen_at = dt.datetime.now(dt.UTC)
    entries: list[TaskEntry] = []
    for item in listed[:most] if with_info else listed[-most:]:  # (a node lists every task, oldest first)
        if with_info:
            entries.append(entry_from_json(item, seen_at))
            continue
        if ended and item["uuid"] in ended:
            entries.append(ended[item["uuid"]])
            continue
        try:  # a plain NodeODX node: one info per task
            entries.append(entry_from_json(node.get_json(shared.endpoints.task_info(item["uuid"])), seen_at))
        except shared.NodeResponseError:  # removed between the list and its info
            continue
    return newest_first(entries)[:most], with_info, len(listed)


def list_query(most: int = MAX_TASKS) -> dict[str, str | int]:
    """What the panel asks a relay for: its newest `most` tasks with their infos (a plain node ignores it all)."""
    return {"sort": "created.desc", "limit": most, "with_info": "true"}


def newest_first(entries: Iterable[TaskEntry]) -> list[TaskEntry]:
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(entries, key=lambda e: (e.info.date_created or epoch, e.uuid), reverse=True)


def take_snapshot(node: shared.Node, display_url: str = "", ended: Mapping[str, TaskEntry] | None = None) -> Snapshot:
    """Health and tasks in one go (two requests to a relay); never raises for the server's faults."""
    try:
        health = health_from_info(node.info())
        tasks, with_info, total = fetch_tasks(node, ended)
    except (shared.GenericError, ValueError, KeyError, TypeError) as exc:
        return Snapshot(error=error_message(exc, display_url))
    return Snapshot(tasks, health, "", with_info, total)


def ended_between(before: Mapping[str, TaskStatus] | None, after: Iterable[TaskEntry],
                  newest: dt.datetime | None = None) -> list[TaskEntry]:
    """Tasks that ended since the last snapshot (`before`: uuid → status then; None: there was none, and
    nothing is announced): those seen queued or running then, and those created since (after `newest`, the
    last snapshot's newest task: an older one that comes into view when newer ones are removed is not news)
    that have ended already, between two refreshes."""
    if before is None:
        return []

    def new(entry: TaskEntry) -> bool:
        created = entry.info.date_created
        return entry.uuid not in before and (newest is None or (created is not None and created > newest))

    return [e for e in after if e.status.is_final and (new(e) or before.get(e.uuid) in ACTIVE)]


def newest_created(entries: Iterable[TaskEntry]) -> dt.datetime | None:
    return max((e.info.date_created for e in entries if e.info.date_created is not None), default=None)


def matches(entry: TaskEntry, statuses: Iterable[TaskStatus] | None) -> bool:
    """The status filter: None shows every task."""
    return statuses is None or entry.status in set(statuses)


def snapshot_of(connection: Connection, timeout: float = 20, ended: Mapping[str, TaskEntry] | None = None
                ) -> Snapshot:
    """One refresh against `connection` (in a worker thread: the token was read on the main thread)."""
    try:
        node = connection.node(timeout=timeout)
    except ConnectionError as exc:
        return Snapshot(error=str(exc))
    try:
        return take_snapshot(node, connection.display_url, ended)
    finally:
        node.session.close()


def ended_entries(snapshot: Snapshot) -> dict[str, TaskEntry]:
    """The tasks of a snapshot that had ended, by uuid (what a plain node need not be asked for again)."""
    return {e.uuid: e for e in snapshot.tasks if e.status.is_final}


def fetch_entries(connection: Connection, timeout: float = 20) -> list[TaskEntry]:
    """The newest tasks alone, newest first (the algorithm dialogs' task pickers; in a worker thread). Raises the
    server's faults, for the caller to say in words."""
    node = connection.node(timeout=timeout)
    try:
        return fetch_tasks(node)[0]
    finally:
        node.session.close()


def picker_label(entry: TaskEntry) -> str:
    """`name · status · short uuid`, what a task picker lists (a task without a name: its short uuid first)."""
    if entry.info.name:
        return f"{entry.info.name} · {entry.status_word} · {entry.uuid[:8]}"
    return f"{entry.uuid[:8]} · {entry.status_word}"
