"""The relay's state behind one small async interface, with an embedded SQLite backend by default.

Handlers only ever see `Store`; a Redis backend (several replicas, one view) implements the same
methods. SQLite runs in WAL mode and commits every write, so a `kill -9` loses nothing committed.

Besides the records, both backends keep the indexes the control plane reads each interval or on each
listing, so neither ever decodes every task a long-running relay holds:
- the unfinished tasks of each node (`open_tasks_on`, `nodes_with_open_tasks`): what failover and the
  catch-up after a restart look at;
- each owner's committed tasks, oldest first (`listed_uuids`): what `/task/list` answers, a page at a time;
  and, for `/task/list`'s filters and orders (`query_uuids`), each listed task's last known status code,
  image count, processing time and name (`list_fields`), kept beside it whenever the record is written;
- ghosts (`add_ghost`, `ghosts`, `drop_ghost`): tasks moved off a node that may still run them there, to be
  canceled and removed on that node when it is back;
- result facts (`put_facts`, `search_facts`): what `result_facts.py` read from a completed task's all.zip,
  with its WGS 84 bbox and capture times indexed per owner for the STAC search (a few KB a task: its thumbnail
  is kept in the results store), and the tasks whose facts are still to be read (`mark_facts_due`, `due_facts`).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .models import NodeRecord, Stage, TaskRecord, UserRecord
from .scheduler import Reservations

#: Stages in which a task's record names the node that has it, or is being given it.
ON_NODE_STAGES = (Stage.DISPATCHING, Stage.COMMITTING, Stage.ON_NODE)


def open_on(task: TaskRecord) -> str | None:
    """The node a task is unfinished on (sent, or being sent, and not ended), or None."""
    if task.stage in ON_NODE_STAGES and task.ended_ms is None and task.node_id:
        return task.node_id
    return None


def listed(task: TaskRecord) -> bool:
    """Whether `/task/list` shows the task: committed, as NodeODX lists only committed tasks."""
    return task.stage != Stage.UPLOADING


#: Status codes of a task no node holds (NodeODX's codes: 10 queued, 30 failed, 50 canceled).
RELAY_SIDE_STATUS = {Stage.CANCELED: 50, Stage.FAILED: 30}
SORT_KEYS = ("created", "status", "images", "duration")


def list_fields(task: TaskRecord) -> tuple[int, int, int, str]:
    """What `/task/list` filters and sorts by, as the relay last knew it: the status code (a task on a node: the
    code of its last info, 10 until one is learned; in the relay's queue 10, canceled there 50, failed there 30),
    the image count, the processing time in ms (-1 while not known, as NodeODX says of a task not started) and
    the name, lowercased."""
    info = task.last_info if task.stage == Stage.ON_NODE and isinstance(task.last_info, dict) else {}
    status = info.get("status")
    code = status.get("code") if isinstance(status, dict) else None
    if task.stage != Stage.ON_NODE:
        code = RELAY_SIDE_STATUS.get(task.stage, 10)
    images, duration = info.get("imagesCount"), info.get("processingTime")
    return (_whole(code, 10), _whole(images, task.image_count), _whole(duration, -1),
            str(task.name or info.get("name") or "").lower())


def _whole(value: object, default: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    return int(value)


@dataclass(frozen=True)
class ListQuery:
    """`/task/list`'s filters and order. The default (no filter, oldest first) is NodeODX's list.
    `created_after` is inclusive and `created_before` exclusive (ms), durations are ms (processingTime), both
    inclusive; ties of the sort key are ordered by creation time then uuid, all in the same direction."""

    statuses: tuple[int, ...] = ()
    created_after: int | None = None
    created_before: int | None = None
    name: str = ""          # contained in the name, lowercased
    min_duration: int | None = None
    max_duration: int | None = None
    sort: str = "created"
    desc: bool = False

    @property
    def plain(self) -> bool:
        return self == ListQuery()

    def matches(self, created: int, fields: tuple[int, int, int, str]) -> bool:
        status, _, duration, name = fields
        return ((not self.statuses or status in self.statuses)
                and (self.created_after is None or created >= self.created_after)
                and (self.created_before is None or created < self.created_before)
                and self.name in name
                and (self.min_duration is None or duration >= self.min_duration)
                and (self.max_duration is None or duration <= self.max_duration))

    def key(self, created: int, uuid: str, fields: tuple[int, int, int, str]) -> tuple:
        """The order's key (reverse it for `desc`)."""
        first = {"created": created, "status": fields[0], "images": fields[1], "duration": fields[2]}[self.sort]
        return first, created, uuid


COMPLETED = 40  # NodeODX's status code: only completed tasks are described


@dataclass(frozen=True)
class FactsQuery:
    """The STAC search: items whose WGS 84 bbox meets `bbox` (west, south, east, north; west > east crosses the
    antimeridian) and whose capture interval meets [`start_ms`, `end_ms`] (None: open), among `ids` if given;
    newest capture first (start time, then uuid, both descending), from after `after` (the last one a previous
    page gave: its start time and uuid)."""

    bbox: tuple[float, float, float, float] | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    ids: tuple[str, ...] = ()
    after: tuple[int, str] | None = None

    def matches(self, uuid: str, facts: dict) -> bool:
        """The same test as the SQL, for a backend that filters in Python (Redis)."""
        if self.ids and uuid not in self.ids:
            return False
        start, end = facts.get("start_ms"), facts.get("end_ms")
        if self.after is not None and (start, uuid) >= self.after:
            return False
        if (self.start_ms is not None and end < self.start_ms) or (self.end_ms is not None and start > self.end_ms):
            return False
        if self.bbox is None:
            return True
        box = facts.get("bbox")
        if not box:
            return False
        west, south, east, north = self.bbox
        across = box[2] >= west or box[0] <= east if west > east else box[2] >= west and box[0] <= east
        return across and box[3] >= south and box[1] <= north


class Store(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def put_task(self, task: TaskRecord) -> None: ...
    async def get_task(self, uuid: str) -> TaskRecord | None: ...
    async def delete_task(self, uuid: str) -> None: ...
    async def list_tasks(self, owner: str | None = None) -> list[TaskRecord]: ...
    async def tasks_in(self, *stages: Stage) -> list[TaskRecord]: ...
    async def open_tasks_on(self, node_id: str) -> list[TaskRecord]: ...
    async def nodes_with_open_tasks(self) -> set[str]: ...
    async def listed_uuids(self, owner: str, offset: int = 0, limit: int | None = None) -> list[str]: ...
    async def query_uuids(self, owner: str, query: ListQuery, offset: int = 0,
                          limit: int | None = None) -> list[str]: ...
    async def add_ghost(self, node_id: str, uuid: str) -> None: ...
    async def ghosts(self, node_id: str) -> list[str]: ...
    async def ghost_nodes(self) -> set[str]: ...
    async def drop_ghost(self, node_id: str, uuid: str) -> None: ...
    async def drop_ghosts(self, node_id: str) -> None: ...
    async def put_node(self, node: NodeRecord) -> None: ...
    async def delete_node(self, node_id: str) -> None: ...
    async def list_nodes(self) -> list[NodeRecord]: ...
    async def put_user(self, user: UserRecord) -> None: ...
    async def get_user(self, username: str) -> UserRecord | None: ...
    async def user_by_token_hash(self, token_hash: str) -> UserRecord | None: ...
    async def reserve(self, node_id: str, uuid: str, memory_mb: int, free_slots: int,
                      headroom_mb: int | None, info_asked_at: float | None = None) -> bool: ...
    async def commit_reservation(self, uuid: str, at: float) -> None: ...
    async def drop_reservation(self, uuid: str) -> None: ...
    async def settle_reservations(self, node_id: str, asked_at: float) -> None: ...
    async def reservations(self) -> dict[str, dict[str, tuple[int, float | None]]]: ...
    async def put_node_info(self, node_id: str, state: dict) -> None: ...
    async def node_infos(self) -> dict[str, dict]: ...
    async def lease(self, name: str, holder: str, seconds: float) -> bool: ...
    async def claim_once(self, uuid: str, what: str) -> bool: ...
    async def shared_secret(self) -> bytes: ...
    async def put_facts(self, uuid: str, owner: str, facts: dict) -> None: ...
    async def get_facts(self, uuid: str) -> dict | None: ...
    async def mark_facts_due(self, uuid: str, not_before: float = 0.0) -> None: ...
    async def due_facts(self, now: float, limit: int) -> list[str]: ...
    async def retry_facts(self, uuid: str, now: float, delay: float) -> int: ...
    async def drop_facts_due(self, uuid: str) -> None: ...
    async def search_facts(self, owner: str, query: FactsQuery, limit: int) -> list[tuple[str, dict]]: ...
    async def facts_extent(self, owner: str) -> dict | None: ...


# `open_on`: the node the task is unfinished on (see `open_on()`), NULL otherwise; `status`, `images`,
# `duration`, `name_lc`: `list_fields()`. A database made before them gets the columns, filled from the
# records, when it is opened (`_migrate`)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (uuid TEXT PRIMARY KEY, owner TEXT, stage TEXT, created INTEGER, data TEXT,
                                  open_on TEXT, status INTEGER, images INTEGER, duration INTEGER, name_lc TEXT);
CREATE TABLE IF NOT EXISTS nodes (id TEXT PRIMARY KEY, data TEXT);
CREATE TABLE IF NOT EXISTS users (username TEXT PRIMARY KEY, token_hash TEXT UNIQUE, data TEXT);
CREATE TABLE IF NOT EXISTS once (uuid TEXT, what TEXT, PRIMARY KEY (uuid, what));
CREATE TABLE IF NOT EXISTS ghosts (node_id TEXT, uuid TEXT, PRIMARY KEY (node_id, uuid));
CREATE TABLE IF NOT EXISTS facts (uuid TEXT PRIMARY KEY, owner TEXT, west REAL, south REAL, east REAL, north REAL,
                                  start_ms INTEGER, end_ms INTEGER, data TEXT);
CREATE TABLE IF NOT EXISTS facts_due (uuid TEXT PRIMARY KEY, not_before REAL, tries INTEGER DEFAULT 0);
CREATE VIRTUAL TABLE IF NOT EXISTS facts_rtree USING rtree(id, west, east, south, north);
CREATE TABLE IF NOT EXISTS facts_extent (owner TEXT PRIMARY KEY, west REAL, south REAL, east REAL, north REAL,
                                         start_ms INTEGER, end_ms INTEGER);
"""
# `tasks_listed` answers `/task/list` alone (owner, oldest first, uuids only: the records are never read; `stage`
# is in it so that SQLite sees it covers the query); its WHERE must be written the same way in the query
_INDEXES = """
CREATE INDEX IF NOT EXISTS tasks_owner ON tasks(owner);
CREATE INDEX IF NOT EXISTS tasks_stage ON tasks(stage);
CREATE INDEX IF NOT EXISTS tasks_open_on ON tasks(open_on) WHERE open_on IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_listed ON tasks(owner, created, uuid, stage) WHERE stage != 'uploading';
CREATE INDEX IF NOT EXISTS tasks_listed_status ON tasks(owner, status, created, uuid) WHERE stage != 'uploading';
CREATE INDEX IF NOT EXISTS tasks_listed_images ON tasks(owner, images, created, uuid) WHERE stage != 'uploading';
CREATE INDEX IF NOT EXISTS tasks_listed_duration ON tasks(owner, duration, created, uuid) WHERE stage != 'uploading';
CREATE INDEX IF NOT EXISTS facts_search ON facts(owner, start_ms, uuid, end_ms, west, east, south, north);
CREATE INDEX IF NOT EXISTS facts_due_at ON facts_due(not_before);
"""
_LIST_COLUMNS = {"status": "INTEGER", "images": "INTEGER", "duration": "INTEGER", "name_lc": "TEXT"}


class SQLiteStore:
    """One file under the data folder; enough for a single relay that must survive restarts.

    Reservations, shared node info and leases only matter between replicas, which need Redis: here
    they live in memory, in this one process."""

    LIST_CHUNK = 5000  # a long listing is read this many uuids at a time, other requests answered in between
    RTREE_CANDIDATES = 1000  # a bbox search starts from the R*Tree when it holds at most this many items there

    def __init__(self, path: Path):
        self.path = Path(path)
        self.db: sqlite3.Connection | None = None
        self.held = Reservations()
        self.settled: dict[str, float] = {}  # node id -> newest /info time that settled a reservation on it
        self.infos: dict[str, dict] = {}

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():  # it holds node tokens: the relay's user alone may read it
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self.path.chmod(0o600)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        had_facts = bool(self._rows("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'facts'"))
        self.db.executescript(_SCHEMA)
        self._migrate()
        self._drop_thumbnails()
        if not self._rows("SELECT 1 FROM facts_rtree LIMIT 1"):  # facts from before the R*Tree (none or few)
            self._rows("INSERT INTO facts_rtree SELECT rowid, west, east, south, north FROM facts "
                       "WHERE west IS NOT NULL")
        if not had_facts:  # a database from before the facts: its completed tasks are described by the backfill
            self._rows("INSERT OR IGNORE INTO facts_due (uuid, not_before) SELECT uuid, 0 FROM tasks "
                       "WHERE stage = 'on_node' AND status = ?", COMPLETED)
        self.db.executescript(_INDEXES)

    def _migrate(self) -> None:
        """A database from before the `open_on` column or the listing columns: add those missing, and fill them
        from the records (`open_on` only for tasks in an on-node stage, the only ones it can be set for), in
        one transaction."""
        assert self.db is not None, "store is not open"
        have = {row[1] for row in self.db.execute("PRAGMA table_info(tasks)")}
        missing = [c for c in ("open_on", *_LIST_COLUMNS) if c not in have]
        if not missing:
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for column in missing:
                self.db.execute(f"ALTER TABLE tasks ADD COLUMN {column} {_LIST_COLUMNS.get(column, 'TEXT')}")
            for (data,) in self.db.execute("SELECT data FROM tasks").fetchall():
                task = TaskRecord.from_json(json.loads(data))
                self.db.execute("UPDATE tasks SET open_on = ?, status = ?, images = ?, duration = ?, name_lc = ? "
                                "WHERE uuid = ?", (open_on(task), *list_fields(task), task.uuid))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def _drop_thumbnails(self) -> None:
        """A database from before thumbnails moved to the results store has their bytes in a `thumbnail` column of
        `facts` (tens of KB a task): dropped, in one transaction (they are made again from the zip when asked).
        The file keeps its size, its freed pages reused by later writes; VACUUM (relay stopped) gives them back."""
        assert self.db is not None, "store is not open"
        if "thumbnail" not in {row[1] for row in self.db.execute("PRAGMA table_info(facts)")}:
            return
        with self._transaction():
            self.db.execute("ALTER TABLE facts DROP COLUMN thumbnail")

    async def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    def _rows(self, sql: str, *args) -> list[tuple]:
        assert self.db is not None, "store is not open"
        return self.db.execute(sql, args).fetchall()

    async def put_task(self, task: TaskRecord) -> None:
        self._rows("INSERT OR REPLACE INTO tasks (uuid, owner, stage, created, data, open_on, status, images, "
                   "duration, name_lc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", task.uuid, task.owner,
                   task.stage.value, task.created_ms, json.dumps(task.to_json()), open_on(task), *list_fields(task))

    async def get_task(self, uuid: str) -> TaskRecord | None:
        rows = self._rows("SELECT data FROM tasks WHERE uuid = ?", uuid)
        return TaskRecord.from_json(json.loads(rows[0][0])) if rows else None

    async def delete_task(self, uuid: str) -> None:
        self._rows("DELETE FROM tasks WHERE uuid = ?", uuid)
        self._rows("DELETE FROM once WHERE uuid = ?", uuid)
        self._drop_facts(uuid)
        self._rows("DELETE FROM facts_due WHERE uuid = ?", uuid)

    async def list_tasks(self, owner: str | None = None) -> list[TaskRecord]:
        if owner is None:
            rows = self._rows("SELECT data FROM tasks ORDER BY created")
        else:
            rows = self._rows("SELECT data FROM tasks WHERE owner = ? ORDER BY created", owner)
        return [TaskRecord.from_json(json.loads(r[0])) for r in rows]

    async def tasks_in(self, *stages: Stage) -> list[TaskRecord]:
        marks = ",".join("?" * len(stages))
        rows = self._rows(f"SELECT data FROM tasks WHERE stage IN ({marks}) ORDER BY created",
                          *[s.value for s in stages])
        return [TaskRecord.from_json(json.loads(r[0])) for r in rows]

    async def open_tasks_on(self, node_id: str) -> list[TaskRecord]:
        """The node's unfinished tasks (sent or being sent, not ended), oldest first, from the index alone."""
        rows = self._rows("SELECT data FROM tasks WHERE open_on = ? ORDER BY created, uuid", node_id)
        return [TaskRecord.from_json(json.loads(r[0])) for r in rows]

    async def nodes_with_open_tasks(self) -> set[str]:
        return {r[0] for r in self._rows("SELECT DISTINCT open_on FROM tasks WHERE open_on IS NOT NULL")}

    async def listed_uuids(self, owner: str, offset: int = 0, limit: int | None = None) -> list[str]:
        """The owner's committed tasks' uuids, oldest first (ties by uuid), `limit` of them from `offset`.
        Read LIST_CHUNK at a time, each piece after the last one read (by creation time and uuid), so that a
        task removed meanwhile shifts nothing."""
        def wanted(have: int) -> int:
            return self.LIST_CHUNK if limit is None else min(self.LIST_CHUNK, limit - have)

        rows = self._rows("SELECT created, uuid FROM tasks WHERE owner = ? AND stage != 'uploading' "
                          "ORDER BY created, uuid LIMIT ? OFFSET ?", owner, wanted(0), offset)
        out = [r[1] for r in rows]
        while len(rows) == self.LIST_CHUNK and wanted(len(out)) > 0:
            await asyncio.sleep(0)
            rows = self._rows("SELECT created, uuid FROM tasks WHERE owner = ? AND stage != 'uploading' "
                              "AND (created, uuid) > (?, ?) ORDER BY created, uuid LIMIT ?",
                              owner, rows[-1][0], rows[-1][1], wanted(len(out)))
            out += [r[1] for r in rows]
        return out

    async def query_uuids(self, owner: str, query: ListQuery, offset: int = 0,
                          limit: int | None = None) -> list[str]:
        """The owner's committed tasks that `query` keeps, in its order, `limit` of them from `offset`: one
        query, which the indexes on (owner, sort column, created, uuid) answer without a sort when the order
        is by creation time or by the one status asked for (`status=40&sort=created.desc&limit=10`)."""
        where, args = ["owner = ?", "stage != 'uploading'"], [owner]
        if query.statuses:
            where.append(f"status IN ({','.join('?' * len(query.statuses))})")
            args += list(query.statuses)
        for cond, value in (("created >= ?", query.created_after), ("created < ?", query.created_before),
                            ("duration >= ?", query.min_duration), ("duration <= ?", query.max_duration)):
            if value is not None:
                where.append(cond)
                args.append(value)
        if query.name:
            where.append("instr(name_lc, ?) > 0")
            args.append(query.name)
        way = "DESC" if query.desc else "ASC"
        order = [f"{query.sort} {way}"] if query.sort != "created" else []  # (a column's name: SORT_KEYS)
        order += [f"created {way}", f"uuid {way}"]
        rows = self._rows(f"SELECT uuid FROM tasks WHERE {' AND '.join(where)} ORDER BY {', '.join(order)} "
                          "LIMIT ? OFFSET ?", *args, -1 if limit is None else limit, offset)
        return [r[0] for r in rows]

    async def add_ghost(self, node_id: str, uuid: str) -> None:
        self._rows("INSERT OR IGNORE INTO ghosts VALUES (?, ?)", node_id, uuid)

    async def ghosts(self, node_id: str) -> list[str]:
        return [r[0] for r in self._rows("SELECT uuid FROM ghosts WHERE node_id = ? ORDER BY uuid", node_id)]

    async def ghost_nodes(self) -> set[str]:
        return {r[0] for r in self._rows("SELECT DISTINCT node_id FROM ghosts")}

    async def drop_ghost(self, node_id: str, uuid: str) -> None:
        self._rows("DELETE FROM ghosts WHERE node_id = ? AND uuid = ?", node_id, uuid)

    async def drop_ghosts(self, node_id: str) -> None:
        self._rows("DELETE FROM ghosts WHERE node_id = ?", node_id)

    async def put_node(self, node: NodeRecord) -> None:
        self._rows("INSERT OR REPLACE INTO nodes VALUES (?, ?)", node.id, json.dumps(node.to_json()))

    async def delete_node(self, node_id: str) -> None:
        self._rows("DELETE FROM nodes WHERE id = ?", node_id)

    async def list_nodes(self) -> list[NodeRecord]:
        return [NodeRecord.from_json(json.loads(r[0])) for r in self._rows("SELECT data FROM nodes ORDER BY rowid")]

    async def put_user(self, user: UserRecord) -> None:
        self._rows("INSERT OR REPLACE INTO users VALUES (?, ?, ?)", user.username, user.token_hash,
                   json.dumps(user.to_json()))

    async def get_user(self, username: str) -> UserRecord | None:
        rows = self._rows("SELECT data FROM users WHERE username = ?", username)
        return UserRecord.from_json(json.loads(rows[0][0])) if rows else None

    async def user_by_token_hash(self, token_hash: str) -> UserRecord | None:
        rows = self._rows("SELECT data FROM users WHERE token_hash = ?", token_hash)
        return UserRecord.from_json(json.loads(rows[0][0])) if rows else None

    async def reserve(self, node_id: str, uuid: str, memory_mb: int, free_slots: int,
                      headroom_mb: int | None, info_asked_at: float | None = None) -> bool:
        if info_asked_at is not None and self.settled.get(node_id, 0.0) > info_asked_at:
            return False  # `free_slots` comes from older numbers than those that settled a reservation
        others = {u: v for u, v in self.held.held.get(node_id, {}).items() if u != uuid}
        if free_slots - len(others) <= 0:
            return False
        if headroom_mb is not None and headroom_mb - sum(mb for mb, _ in others.values()) < memory_mb:
            return False
        self.held.add(node_id, uuid, memory_mb)
        return True

    async def commit_reservation(self, uuid: str, at: float) -> None:
        self.held.committed(uuid, at)

    async def drop_reservation(self, uuid: str) -> None:
        self.held.drop(uuid)

    async def settle_reservations(self, node_id: str, asked_at: float) -> None:
        before = len(self.held.held.get(node_id, {}))
        self.held.settle(node_id, asked_at)
        if len(self.held.held.get(node_id, {})) < before:
            self.settled[node_id] = max(self.settled.get(node_id, 0.0), asked_at)

    async def reservations(self) -> dict[str, dict[str, tuple[int, float | None]]]:
        return {node: dict(tasks) for node, tasks in self.held.held.items()}

    async def put_node_info(self, node_id: str, state: dict) -> None:
        self.infos[node_id] = state

    async def node_infos(self) -> dict[str, dict]:
        return dict(self.infos)

    async def lease(self, name: str, holder: str, seconds: float) -> bool:
        return True

    async def claim_once(self, uuid: str, what: str) -> bool:
        """True for the first caller only, ever (until the task is deleted): for things done exactly once."""
        assert self.db is not None, "store is not open"
        return self.db.execute("INSERT OR IGNORE INTO once VALUES (?, ?)", (uuid, what)).rowcount == 1

    # --- result facts ------------------------------------------------------------------------------
    async def put_facts(self, uuid: str, owner: str, facts: dict) -> None:
        """A task's facts, indexed by its WGS 84 bbox and capture times; no longer due. In one transaction: a
        kill -9 leaves them due, never half written."""
        with self._transaction():
            self._put_facts(uuid, owner, facts)

    def _put_facts(self, uuid: str, owner: str, facts: dict) -> None:
        box = facts.get("bbox") or [None] * 4
        self._drop_facts(uuid)
        self._rows("INSERT INTO facts (uuid, owner, west, south, east, north, start_ms, end_ms, data) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", uuid, owner, *box, facts.get("start_ms"), facts.get("end_ms"),
                   json.dumps(facts))
        if facts.get("bbox"):
            self._rows("INSERT OR REPLACE INTO facts_rtree SELECT rowid, west, east, south, north FROM facts "
                       "WHERE uuid = ?", uuid)
        self._rows("DELETE FROM facts_due WHERE uuid = ?", uuid)
        # the owner's extent grows with each item (min/max ignore NULL): read in O(1) by every collection request
        self._rows("INSERT INTO facts_extent VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (owner) DO UPDATE SET "
                   "west = min(coalesce(west, excluded.west), coalesce(excluded.west, west)), "
                   "south = min(coalesce(south, excluded.south), coalesce(excluded.south, south)), "
                   "east = max(coalesce(east, excluded.east), coalesce(excluded.east, east)), "
                   "north = max(coalesce(north, excluded.north), coalesce(excluded.north, north)), "
                   "start_ms = min(start_ms, excluded.start_ms), end_ms = max(end_ms, excluded.end_ms)",
                   owner, *box, facts.get("start_ms"), facts.get("end_ms"))

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        assert self.db is not None, "store is not open"
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _drop_facts(self, uuid: str) -> None:
        self._rows("DELETE FROM facts_rtree WHERE id IN (SELECT rowid FROM facts WHERE uuid = ?)", uuid)
        self._rows("DELETE FROM facts WHERE uuid = ?", uuid)

    async def get_facts(self, uuid: str) -> dict | None:
        rows = self._rows("SELECT data FROM facts WHERE uuid = ?", uuid)
        return json.loads(rows[0][0]) if rows else None

    async def mark_facts_due(self, uuid: str, not_before: float = 0.0) -> None:
        """The task (just completed, again perhaps) is to be described: facts of an earlier run go."""
        with self._transaction():
            self._drop_facts(uuid)
            self._rows("INSERT OR REPLACE INTO facts_due (uuid, not_before, tries) VALUES (?, ?, 0)", uuid,
                       not_before)

    async def due_facts(self, now: float, limit: int) -> list[str]:
        return [r[0] for r in self._rows("SELECT uuid FROM facts_due WHERE not_before <= ? ORDER BY not_before, uuid "
                                         "LIMIT ?", now, limit)]

    async def retry_facts(self, uuid: str, now: float, delay: float) -> int:
        """One more failed try: the next after `delay` seconds, doubled with each try. The tries so far."""
        rows = self._rows("SELECT tries FROM facts_due WHERE uuid = ?", uuid)
        if not rows:
            return 0
        self._rows("UPDATE facts_due SET not_before = ?, tries = ? WHERE uuid = ?", now + delay * 2 ** rows[0][0],
                   rows[0][0] + 1, uuid)
        return rows[0][0] + 1

    async def drop_facts_due(self, uuid: str) -> None:
        self._rows("DELETE FROM facts_due WHERE uuid = ?", uuid)

    async def search_facts(self, owner: str, query: FactsQuery, limit: int) -> list[tuple[str, dict]]:
        """The owner's completed tasks' facts that `query` keeps, newest capture first: one query, on the R*Tree of
        the items' bboxes when a bbox finds at most RTREE_CANDIDATES items there (any owner's), else on the index
        (owner, start, uuid, end, bbox), newest first, which holds every column tested: only the rows kept are
        read."""
        where, args = ["f.owner = ?", "t.status = ?", "t.stage = 'on_node'"], [owner, COMPLETED]
        source = "facts f"
        if query.bbox is not None and query.bbox[0] <= query.bbox[2]:
            west, south, east, north = query.bbox
            (found,), = self._rows("SELECT count(*) FROM (SELECT 1 FROM facts_rtree WHERE east >= ? AND west <= ? "
                                   "AND north >= ? AND south <= ? LIMIT ?)", west, east, south, north,
                                   self.RTREE_CANDIDATES + 1)
            if found <= self.RTREE_CANDIDATES:  # the R*Tree first (CROSS JOIN: SQLite keeps that order)
                source = "facts_rtree r CROSS JOIN facts f ON f.rowid = r.id"
                where.append("r.east >= ? AND r.west <= ? AND r.north >= ? AND r.south <= ?")
                args += [west, east, south, north]
        if query.ids:
            where.append(f"f.uuid IN ({','.join('?' * len(query.ids))})")
            args += list(query.ids)
        if query.start_ms is not None:
            where.append("f.end_ms >= ?")
            args.append(query.start_ms)
        if query.end_ms is not None:
            where.append("f.start_ms <= ?")
            args.append(query.end_ms)
        if query.after is not None:
            where.append("(f.start_ms, f.uuid) < (?, ?)")
            args += list(query.after)
        if query.bbox is not None:
            west, south, east, north = query.bbox
            where.append("(f.east >= ? OR f.west <= ?)" if west > east else "f.east >= ? AND f.west <= ?")
            where.append("f.north >= ? AND f.south <= ?")
            args += [west, east, south, north]
        uuids = [r[0] for r in self._rows(f"SELECT f.uuid FROM {source} JOIN tasks t ON t.uuid = f.uuid "
                                          f"WHERE {' AND '.join(where)} ORDER BY f.start_ms DESC, f.uuid DESC "
                                          "LIMIT ?", *args, limit)]
        # the facts themselves (kilobytes each) for the page only, not for every row sorted
        data = dict(self._rows(f"SELECT uuid, data FROM facts WHERE uuid IN ({','.join('?' * len(uuids))})", *uuids))
        return [(uuid, json.loads(data[uuid])) for uuid in uuids if uuid in data]

    async def facts_extent(self, owner: str) -> dict | None:
        """The bbox and capture interval of the owner's described tasks (the collection's extent): grown with
        each, not shrunk when a task is removed, as on Redis (a covering extent is still a true one)."""
        rows = self._rows("SELECT west, south, east, north, start_ms, end_ms FROM facts_extent WHERE owner = ?", owner)
        if not rows or rows[0][4] is None:
            return None
        west, south, east, north, start, end = rows[0]
        return {"bbox": None if west is None else [west, south, east, north], "start_ms": start, "end_ms": end}

    async def shared_secret(self) -> bytes:
        """The key that signs webhook URLs given to nodes; kept beside the database across restarts."""
        path = self.path.with_name("relay.secret")
        if not path.exists():
            path.write_text(secrets.token_hex(32))
            path.chmod(0o600)
        return bytes.fromhex(path.read_text().strip())
