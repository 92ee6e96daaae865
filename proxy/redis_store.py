"""The Redis backend of the store: several relay replicas, one view of tasks, nodes and reservations.

Keys (prefix `odx:` by default):
  task:<uuid>            the task record, JSON
  stage:<stage>          sorted set of uuids in that stage, scored by creation time
  owner:<owner>          sorted set of that owner's uuids
  listed:<owner>         sorted set of that owner's committed uuids (what /task/list shows), by creation time
  lstatus:<owner>:<code> the same, for the listed tasks whose last known status is that code (`list_fields`)
  lmeta:<owner>          hash uuid -> JSON [created, status, images, processing ms, lowercased name] of each
                         listed task: what /task/list's other filters and orders read
  opentasks              hash uuid -> node id of every unfinished task (sent or being sent, not ended)
  open:<node id>         set of the node's unfinished tasks (the same, by node)
  ghosts:<node id>       set of tasks moved off the node (failover) that it may still run: canceled there later
  ghostnodes             set of the node ids that have ghosts
  facts:<uuid>           the task's result facts (`result_facts.py`), JSON (its thumbnail is in the results store)
  stac:<owner>           sorted set of the owner's described tasks, by capture start (what the STAC search walks)
  stacbox:<owner>        hash uuid -> "west south east north start end" of each (what the search tests, a few
                         dozen bytes a task: the facts themselves are read for the hits only)
  stacgeo:<owner>        geo set of the same, at the centre of each one's bbox (what a search by a small bbox reads)
  stacext:<owner>        hash west/south/east/north/start/end: the extent of those (grows; a removed task's part
                         stays in it), and halfw/halfh: the largest half width and height of an item's bbox
  factsdue               sorted set of tasks whose facts are to be read, by the time to try (next) at;
                         factstries: hash uuid -> tries so far
  schema                 "6" once the indexes above are built (a store from before them is indexed at open) and
                         the thumb:<uuid> keys of schema 5 (each thumbnail, base64, ~140 KB) are gone
No command reads the whole keyspace (SCAN, KEYS): with tens of thousands of tasks stored, each would cost
hundreds of round trips, and /info, placement and every health round read reservations and node info.
  nodes                  hash node id -> node record JSON
  user:<name>            user record JSON;  usertoken:<hash> -> name
  resv:<node id>         hash task uuid -> [memory MB, committed at or null]  (reservations)
  resvnodes              set of the node ids that have had reservations (which resv: keys to read)
  nodeinfo:<node id>     the node's last health-check result, JSON, shared by replicas
  nodeinfonodes          set of the node ids that have a nodeinfo: key
  lease:<name>           who runs a job (health round, one dispatch): SET NX PX, extended by its holder
  settled:<node id>      the newest /info time that settled a reservation on the node
  once:<uuid>            hash of things done exactly once for the task (its client webhook per run)
Tasks are written and deleted by Lua scripts that keep the indexes in step in the same round trip: a task
that moves to another node or ends leaves its old node's set, which `opentasks` names.
A reservation is taken by a Lua script that checks the node's free slots and memory and writes in one
step, so two replicas placing at the same instant never overbook a node. A replica whose numbers for
the node are older than `settled` is refused too: its queue count may not show a task whose reservation
is already gone.
"""
from __future__ import annotations

import asyncio
import hashlib
import heapq
import json
import math
import secrets
import time

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from .models import NodeRecord, Stage, TaskRecord, UserRecord
from .store import COMPLETED, ON_NODE_STAGES, FactsQuery, ListQuery, list_fields, listed, open_on

SCHEMA = "6"
REINDEX_BATCH = 500
# Lua for the task indexes, shared by the scripts below. Keys are named from the prefix (ARGV[1]) inside the
# scripts (a node's set is only known once `opentasks` is read): fine on one Redis, not on a Redis Cluster.
_INDEX = """
local function list_index(p, uuid, owner, created, listed, status, meta)
  local old = redis.call('HGET', p .. 'lmeta:' .. owner, uuid)
  if old then
    local was = string.format('%.0f', cjson.decode(old)[2])
    if not listed or was ~= status then redis.call('ZREM', p .. 'lstatus:' .. owner .. ':' .. was, uuid) end
  end
  if listed then
    redis.call('ZADD', p .. 'listed:' .. owner, created, uuid)
    if meta then
      redis.call('ZADD', p .. 'lstatus:' .. owner .. ':' .. status, created, uuid)
      redis.call('HSET', p .. 'lmeta:' .. owner, uuid, meta)
    end
  else
    redis.call('ZREM', p .. 'listed:' .. owner, uuid)
    redis.call('HDEL', p .. 'lmeta:' .. owner, uuid)
  end
end
local function open_index(p, uuid, node)
  local old = redis.call('HGET', p .. 'opentasks', uuid)
  if old and old ~= node then
    redis.call('SREM', p .. 'open:' .. old, uuid)
  end
  if node then
    redis.call('HSET', p .. 'opentasks', uuid, node)
    redis.call('SADD', p .. 'open:' .. node, uuid)
  elseif old then
    redis.call('HDEL', p .. 'opentasks', uuid)
  end
end
"""
# ARGV: prefix, uuid, record JSON, stage, created, owner, listed ("1" or ""), open node ("" if none), status code,
# list meta JSON, every stage
_PUT_TASK = _INDEX + """
local p, uuid, stage, created, owner = ARGV[1], ARGV[2], ARGV[4], ARGV[5], ARGV[6]
redis.call('SET', p .. 'task:' .. uuid, ARGV[3])
for i = 11, #ARGV do
  if ARGV[i] ~= stage then redis.call('ZREM', p .. 'stage:' .. ARGV[i], uuid) end
end
redis.call('ZADD', p .. 'stage:' .. stage, created, uuid)
redis.call('ZADD', p .. 'owner:' .. owner, created, uuid)
list_index(p, uuid, owner, created, ARGV[7] == '1', ARGV[9], ARGV[10])
open_index(p, uuid, ARGV[8] ~= '' and ARGV[8] or false)
"""
# ARGV: prefix, uuid, every stage
_DELETE_TASK = _INDEX + """
local p, uuid = ARGV[1], ARGV[2]
local raw = redis.call('GET', p .. 'task:' .. uuid)
redis.call('DEL', p .. 'task:' .. uuid, p .. 'once:' .. uuid)
for i = 3, #ARGV do redis.call('ZREM', p .. 'stage:' .. ARGV[i], uuid) end
redis.call('DEL', p .. 'facts:' .. uuid)
redis.call('ZREM', p .. 'factsdue', uuid)
redis.call('HDEL', p .. 'factstries', uuid)
if raw then
  local owner = cjson.decode(raw)['owner']
  if type(owner) ~= 'string' then owner = '' end
  redis.call('ZREM', p .. 'owner:' .. owner, uuid)
  redis.call('ZREM', p .. 'stac:' .. owner, uuid)
  redis.call('HDEL', p .. 'stacbox:' .. owner, uuid)
  redis.call('ZREM', p .. 'stacgeo:' .. owner, uuid)
  list_index(p, uuid, owner, 0, false, '', false)
end
open_index(p, uuid, false)
"""
# KEYS: facts:<uuid>, stac:<owner>, stacext:<owner>, factsdue, factstries, stacbox:<owner>, stacgeo:<owner>;
# ARGV: uuid, facts JSON, start ms, west, south, east, north ("" when the item has no bbox), end ms, the stacbox entry
_PUT_FACTS = """
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[6], ARGV[1], ARGV[9])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
local function grow(field, value, keep)
  local old = redis.call('HGET', KEYS[3], field)
  if not old or keep(tonumber(value), tonumber(old)) then redis.call('HSET', KEYS[3], field, value) end
end
local less = function(a, b) return a < b end
local more = function(a, b) return a > b end
grow('start', ARGV[3], less)
grow('end', ARGV[8], more)
if ARGV[4] ~= '' then
  grow('west', ARGV[4], less)
  grow('south', ARGV[5], less)
  grow('east', ARGV[6], more)
  grow('north', ARGV[7], more)
  local w, s, e, n = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
  grow('halfw', tostring((e - w) / 2), more)
  grow('halfh', tostring((n - s) / 2), more)
  local lat = math.max(-85, math.min(85, (s + n) / 2))
  redis.call('GEOADD', KEYS[7], (w + e) / 2, lat, ARGV[1])
else
  redis.call('ZREM', KEYS[7], ARGV[1])
end
"""
# ARGV: prefix, the on-node stages joined by ",", then for each task: uuid, SHA-1 of the record its status and list
# meta were computed from (in Python: `list_fields`), status, meta. Each record is indexed as it is now (atomic
# per batch, so a write racing with the indexing is never undone by it); its list meta only if the record is
# still the one they were computed from (a newer write has indexed them itself)
_REINDEX = _INDEX + """
local p = ARGV[1]
local on_node = {}
for stage in string.gmatch(ARGV[2], '[^,]+') do on_node[stage] = true end
for i = 3, #ARGV, 4 do
  local raw = redis.call('GET', p .. 'task:' .. ARGV[i])
  if raw then
    local t = cjson.decode(raw)
    local owner = type(t['owner']) == 'string' and t['owner'] or ''
    local node = false
    local ended = t['ended_ms'] ~= nil and t['ended_ms'] ~= cjson.null
    if on_node[t['stage']] and not ended and type(t['node_id']) == 'string' and t['node_id'] ~= '' then
      node = t['node_id']
    end
    local created = type(t['created_ms']) == 'number' and string.format('%.0f', t['created_ms']) or '0'
    local same = redis.sha1hex(raw) == ARGV[i + 1]
    list_index(p, ARGV[i], owner, created, t['stage'] ~= 'uploading', ARGV[i + 2], same and ARGV[i + 3] or false)
    open_index(p, ARGV[i], node)
  end
end
return (#ARGV - 2) / 4
"""
# The STAC search's tests, in Redis: KEYS stac:<owner>, stacbox:<owner>; ARGV: top score, offset, how many members to
# test at most, how many hits are wanted, west, south, east, north ("" for no bbox; west > east crosses the
# antimeridian), the earliest end ("" for none), the cursor's start and uuid ("" for none). Returns {members tested,
# hits}, hits newest first.
_SEARCH = """
local members = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[1], '-inf', 'WITHSCORES', 'LIMIT', ARGV[2], ARGV[3])
local want = tonumber(ARGV[4])
local west, south, east, north = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local earliest, after_start, after_uuid = tonumber(ARGV[9]), tonumber(ARGV[10]), ARGV[11]
local hits, tested = {}, 0
for i = 1, #members, 2 do
  tested = tested + 1
  local uuid = members[i]
  local entry = redis.call('HGET', KEYS[2], uuid)
  if entry then
    local w, s, e, n, first, last = string.match(entry, '(%S+) (%S+) (%S+) (%S+) (%S+) (%S+)')
    first, last = tonumber(first), tonumber(last)
    local ok = (not earliest or last >= earliest)
    if ok and after_start then ok = first < after_start or (first == after_start and uuid < after_uuid) end
    if ok and west then
      if w == '-' then
        ok = false
      else
        w, s, e, n = tonumber(w), tonumber(s), tonumber(e), tonumber(n)
        local across
        if west > east then across = e >= west or w <= east else across = e >= west and w <= east end
        ok = across and n >= south and s <= north
      end
    end
    if ok then
      hits[#hits + 1] = uuid
      if #hits >= want then break end
    end
  end
end
return {tested, hits}
"""
# the `count` members after `member` in a sorted set (false if `member` is not in it any more)
_AFTER = """
local rank = redis.call('ZRANK', KEYS[1], ARGV[1])
if not rank then return false end
return redis.call('ZRANGE', KEYS[1], rank + 1, rank + tonumber(ARGV[2]))
"""
_DROP_GHOST = """
redis.call('SREM', KEYS[1], ARGV[1])
if redis.call('SCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[2]) end
"""
_STAGES = [stage.value for stage in Stage]

_RESERVE = """
if tonumber(ARGV[5]) >= 0 and tonumber(redis.call('GET', KEYS[2]) or '0') > tonumber(ARGV[5]) then return 0 end
local held = redis.call('HGETALL', KEYS[1])
local count, mb = 0, 0
for i = 1, #held, 2 do
  if held[i] ~= ARGV[1] then
    count = count + 1
    mb = mb + cjson.decode(held[i + 1])[1]
  end
end
local free = tonumber(ARGV[3]) - count
local headroom = tonumber(ARGV[4])
if free <= 0 then return 0 end
if headroom >= 0 and headroom - mb < tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode({tonumber(ARGV[2]), cjson.null}))
redis.call('SADD', KEYS[3], ARGV[6])
return 1
"""
_LEASE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
_SETTLE = """
local held = redis.call('HGETALL', KEYS[1])
local asked = tonumber(ARGV[1])
local settled = 0
for i = 1, #held, 2 do
  local at = cjson.decode(held[i + 1])[2]
  if at ~= cjson.null and at <= asked then
    redis.call('HDEL', KEYS[1], held[i])
    settled = settled + 1
  end
end
if settled > 0 and asked > tonumber(redis.call('GET', KEYS[2]) or '0') then
  redis.call('SET', KEYS[2], ARGV[1])
end
return settled
"""


def _box_facts(entry: str) -> dict:
    """A `stacbox` entry as the facts `FactsQuery.matches` reads (bbox, start_ms, end_ms)."""
    west, south, east, north, start, end = entry.split(" ")
    box = None if west == "-" else [float(west), float(south), float(east), float(north)]
    return {"bbox": box, "start_ms": int(start), "end_ms": int(end)}


class RedisStore:
    LIST_CHUNK = 5000  # a long listing is read this many uuids at a time, other requests answered in between
    SEARCH_BUDGET = 20000  # members of a `stac` set one search call tests inside Redis (a few ms)
    GEO_CANDIDATES = 1000  # a bbox search reads the geo set when it finds at most this many items there

    def __init__(self, url: str, prefix: str = "odx:"):
        self.url = url
        self.prefix = prefix
        self.redis: aioredis.Redis | None = None
        self._reserve = self._settle = self._lease = None
        self._put_task = self._delete_task = self._reindex = self._drop_ghost = self._after = None
        self._put_facts = self._search = None

    def k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    @property
    def r(self) -> aioredis.Redis:
        assert self.redis is not None, "store is not open"
        return self.redis

    async def open(self) -> None:
        # after Redis restarts, every pooled connection is dead: try a command again on a new one (a few
        # times, briefly) instead of answering 503 once per stale connection
        self.redis = aioredis.from_url(self.url, decode_responses=True, socket_timeout=5,
                                       socket_connect_timeout=5, health_check_interval=10,
                                       retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
                                       retry_on_error=[RedisConnectionError])
        self._reserve = self.redis.register_script(_RESERVE)
        self._settle = self.redis.register_script(_SETTLE)
        self._lease = self.redis.register_script(_LEASE)
        self._put_task = self.redis.register_script(_PUT_TASK)
        self._delete_task = self.redis.register_script(_DELETE_TASK)
        self._reindex = self.redis.register_script(_REINDEX)
        self._drop_ghost = self.redis.register_script(_DROP_GHOST)
        self._after = self.redis.register_script(_AFTER)
        self._put_facts = self.redis.register_script(_PUT_FACTS)
        self._search = self.redis.register_script(_SEARCH)
        await self.redis.ping()
        if await self.redis.get(self.k("schema")) != SCHEMA:
            await self.build_indexes()

    async def build_indexes(self) -> None:
        """Index every stored task (listed and open), for a store written before those indexes existed.
        Replicas starting together may both do it: indexing a record as it is now is idempotent. Completed tasks
        without result facts (a store from before them) are marked due, for the backfill; thumbnails kept here
        before schema 6 are deleted (they live in the results store now, made again from the zip when asked)."""
        completed: list[str] = []
        for stage in _STAGES:
            uuids = await self.r.zrange(self.k("stage", stage), 0, -1)
            for first in range(0, len(uuids), REINDEX_BATCH):
                batch = uuids[first:first + REINDEX_BATCH]
                args: list[str] = []
                for uuid, raw in zip(batch, await self.r.mget([self.k("task", u) for u in batch])):
                    if raw:
                        task = TaskRecord.from_json(json.loads(raw))
                        status, meta = self._list_meta(task)
                        args += [uuid, hashlib.sha1(raw.encode()).hexdigest(), status, meta]
                        if stage == Stage.ON_NODE.value and status == str(COMPLETED):
                            completed.append(uuid)
                await self._reindex(args=[self.prefix, ",".join(s.value for s in ON_NODE_STAGES), *args])
        for kind, members in (("resv", "resvnodes"), ("nodeinfo", "nodeinfonodes")):  # once, at upgrade
            nodes = [key.rsplit(":", 1)[1] async for key in self.r.scan_iter(match=self.k(kind, "*"), count=1000)]
            if nodes:
                await self.r.sadd(self.k(members), *nodes)
        await self.drop_old_thumbnails()
        for first in range(0, len(completed), REINDEX_BATCH):
            batch = completed[first:first + REINDEX_BATCH]
            have = await self.r.mget([self.k("facts", u) for u in batch])
            due = {u: 0 for u, facts in zip(batch, have) if facts is None}
            if due:
                await self.r.zadd(self.k("factsdue"), due, nx=True)
        await self.r.set(self.k("schema"), SCHEMA)

    async def drop_old_thumbnails(self) -> None:
        """The thumb:<uuid> keys of a store from before schema 6, unlinked a batch at a time (once, at upgrade)."""
        batch: list[str] = []
        async for key in self.r.scan_iter(match=self.k("thumb", "*"), count=1000):
            batch.append(key)
            if len(batch) >= REINDEX_BATCH:
                await self.r.unlink(*batch)
                batch = []
        if batch:
            await self.r.unlink(*batch)

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
            self.redis = None

    # --- tasks ----------------------------------------------------------------------------
    async def put_task(self, task: TaskRecord) -> None:
        """The record and every index of it, in one step (one round trip, as before the indexes)."""
        assert self._put_task is not None, "store is not open"
        await self._put_task(args=[self.prefix, task.uuid, json.dumps(task.to_json()), task.stage.value,
                                   task.created_ms, task.owner, "1" if listed(task) else "",
                                   open_on(task) or "", *self._list_meta(task), *_STAGES])

    @staticmethod
    def _list_meta(task: TaskRecord) -> tuple[str, str]:
        """The task's status code and its `lmeta` entry, as strings for the scripts."""
        fields = list_fields(task)
        return str(fields[0]), json.dumps([task.created_ms, *fields], separators=(",", ":"))

    async def get_task(self, uuid: str) -> TaskRecord | None:
        raw = await self.r.get(self.k("task", uuid))
        return TaskRecord.from_json(json.loads(raw)) if raw else None

    async def delete_task(self, uuid: str) -> None:
        assert self._delete_task is not None, "store is not open"
        await self._delete_task(args=[self.prefix, uuid, *_STAGES])

    async def _tasks(self, uuids: list[str]) -> list[TaskRecord]:
        if not uuids:
            return []
        raws = await self.r.mget([self.k("task", u) for u in uuids])
        return [TaskRecord.from_json(json.loads(raw)) for raw in raws if raw]

    async def list_tasks(self, owner: str | None = None) -> list[TaskRecord]:
        if owner is not None:
            return await self._tasks(await self.r.zrange(self.k("owner", owner), 0, -1))
        return sorted(await self.tasks_in(*Stage), key=lambda t: t.created_ms)

    async def tasks_in(self, *stages: Stage) -> list[TaskRecord]:
        scored: list[tuple[float, str]] = []
        for stage in stages:
            scored += [(score, uuid) for uuid, score in
                       await self.r.zrange(self.k("stage", stage.value), 0, -1, withscores=True)]
        return await self._tasks([uuid for _, uuid in sorted(scored)])

    async def open_tasks_on(self, node_id: str) -> list[TaskRecord]:
        """The node's unfinished tasks, oldest first: its set, then those records only."""
        tasks = await self._tasks(list(await self.r.smembers(self.k("open", node_id))))
        return sorted((t for t in tasks if open_on(t) == node_id), key=lambda t: (t.created_ms, t.uuid))

    async def nodes_with_open_tasks(self) -> set[str]:
        return set(await self.r.hvals(self.k("opentasks")))

    async def listed_uuids(self, owner: str, offset: int = 0, limit: int | None = None) -> list[str]:
        """The owner's committed tasks' uuids, oldest first (ties by uuid), `limit` of them from `offset`.
        Read LIST_CHUNK at a time (the client decodes each piece: 50,000 at once would hold up the event loop),
        each piece after the last member read, so that a task removed meanwhile shifts nothing."""
        assert self._after is not None, "store is not open"
        key = self.k("listed", owner)

        def wanted(have: int) -> int:
            return self.LIST_CHUNK if limit is None else min(self.LIST_CHUNK, limit - have)

        if wanted(0) <= 0:
            return []
        piece = await self.r.zrange(key, offset, offset + wanted(0) - 1)
        out = list(piece)
        while len(piece) == self.LIST_CHUNK and wanted(len(out)) > 0:
            await asyncio.sleep(0)
            piece = await self._after(keys=[key], args=[out[-1], wanted(len(out))])
            if piece is None:  # the last one read was removed meanwhile: on from where it stood
                piece = await self.r.zrange(key, offset + len(out) - 1, offset + len(out) + wanted(len(out)) - 2)
            out += piece
        return out

    async def query_uuids(self, owner: str, query: ListQuery, offset: int = 0,
                          limit: int | None = None) -> list[str]:
        """The owner's committed tasks that `query` keeps, in its order, `limit` of them from `offset`.

        By creation time with at most a status and a created range (what a client following its tasks asks,
        `status=40&sort=created.desc&limit=10`): from the sorted sets alone, the first offset + limit of each
        status's set (by score, then uuid: Redis's own order), merged. Any other filter or order reads the
        owner's `lmeta` hash (a few MB at 50,000 tasks), in pieces, and filters and sorts it here."""
        want = None if limit is None else offset + limit
        if want == 0:
            return []
        if query.sort == "created" and not query.name and query.min_duration is None and query.max_duration is None:
            keys = [self.k("lstatus", owner, str(code)) for code in query.statuses] or [self.k("listed", owner)]
            low = "-inf" if query.created_after is None else str(query.created_after)
            high = "+inf" if query.created_before is None else f"({query.created_before}"
            pipe = self.r.pipeline(transaction=False)
            for key in keys:
                if query.desc:
                    pipe.zrevrangebyscore(key, high, low, start=0 if want else None, num=want, withscores=True)
                else:
                    pipe.zrangebyscore(key, low, high, start=0 if want else None, num=want, withscores=True)
            pieces = await pipe.execute()
            merged = heapq.merge(*([(score, uuid) for uuid, score in piece] for piece in pieces),
                                 reverse=query.desc)
            return [uuid for _, uuid in list(merged)[offset:want]]
        kept: list[tuple[tuple, str]] = []
        async for uuid, raw in self.r.hscan_iter(self.k("lmeta", owner), count=self.LIST_CHUNK):
            created, *rest = json.loads(raw)
            fields = (rest[0], rest[1], rest[2], rest[3])
            if query.matches(created, fields):
                kept.append((query.key(created, uuid, fields), uuid))
        kept.sort(reverse=query.desc)
        return [uuid for _, uuid in kept[offset:want]]

    # --- ghosts ---------------------------------------------------------------------------------
    async def add_ghost(self, node_id: str, uuid: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.sadd(self.k("ghosts", node_id), uuid)
        pipe.sadd(self.k("ghostnodes"), node_id)
        await pipe.execute()

    async def ghosts(self, node_id: str) -> list[str]:
        return sorted(await self.r.smembers(self.k("ghosts", node_id)))

    async def ghost_nodes(self) -> set[str]:
        return set(await self.r.smembers(self.k("ghostnodes")))

    async def drop_ghost(self, node_id: str, uuid: str) -> None:
        assert self._drop_ghost is not None, "store is not open"
        await self._drop_ghost(keys=[self.k("ghosts", node_id), self.k("ghostnodes")], args=[uuid, node_id])

    async def drop_ghosts(self, node_id: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self.k("ghosts", node_id))
        pipe.srem(self.k("ghostnodes"), node_id)
        await pipe.execute()

    # --- nodes and users --------------------------------------------------------------------
    async def put_node(self, node: NodeRecord) -> None:
        await self.r.hset(self.k("nodes"), node.id, json.dumps(node.to_json()))

    async def delete_node(self, node_id: str) -> None:
        await self.r.hdel(self.k("nodes"), node_id)

    async def list_nodes(self) -> list[NodeRecord]:
        return [NodeRecord.from_json(json.loads(v)) for v in (await self.r.hgetall(self.k("nodes"))).values()]

    async def put_user(self, user: UserRecord) -> None:
        old = await self.get_user(user.username)
        pipe = self.r.pipeline(transaction=True)
        if old is not None:
            pipe.delete(self.k("usertoken", old.token_hash))
        pipe.set(self.k("user", user.username), json.dumps(user.to_json()))
        pipe.set(self.k("usertoken", user.token_hash), user.username)
        await pipe.execute()

    async def get_user(self, username: str) -> UserRecord | None:
        raw = await self.r.get(self.k("user", username))
        return UserRecord.from_json(json.loads(raw)) if raw else None

    async def user_by_token_hash(self, token_hash: str) -> UserRecord | None:
        name = await self.r.get(self.k("usertoken", token_hash))
        return await self.get_user(name) if name else None

    # --- reservations, shared node info, leases --------------------------------------------------
    async def reserve(self, node_id: str, uuid: str, memory_mb: int, free_slots: int, headroom_mb: int | None,
                      info_asked_at: float | None = None) -> bool:
        """Reserve a slot if, counting every replica's reservations, the node still has one free."""
        ok = await self._reserve(keys=[self.k("resv", node_id), self.k("settled", node_id), self.k("resvnodes")],
                                 args=[uuid, memory_mb, free_slots, -1 if headroom_mb is None else headroom_mb,
                                       -1 if info_asked_at is None else repr(info_asked_at), node_id])
        return bool(ok)

    async def commit_reservation(self, uuid: str, at: float) -> None:
        for key in await self._resv_keys():
            raw = await self.r.hget(key, uuid)
            if raw:
                await self.r.hset(key, uuid, json.dumps([json.loads(raw)[0], at]))

    async def drop_reservation(self, uuid: str) -> None:
        keys = await self._resv_keys()
        if keys:
            pipe = self.r.pipeline(transaction=False)
            for key in keys:
                pipe.hdel(key, uuid)
            await pipe.execute()

    async def settle_reservations(self, node_id: str, asked_at: float) -> None:
        await self._settle(keys=[self.k("resv", node_id), self.k("settled", node_id)], args=[repr(asked_at)])

    async def reservations(self) -> dict[str, dict[str, tuple[int, float | None]]]:
        keys = await self._resv_keys()
        pipe = self.r.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        held = await pipe.execute() if keys else []
        return {key.rsplit(":", 1)[1]: {u: tuple(json.loads(v)) for u, v in tasks.items()}
                for key, tasks in zip(keys, held) if tasks}

    async def _resv_keys(self) -> list[str]:
        return [self.k("resv", node_id) for node_id in sorted(await self.r.smembers(self.k("resvnodes")))]

    async def put_node_info(self, node_id: str, state: dict) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.set(self.k("nodeinfo", node_id), json.dumps(state))
        pipe.sadd(self.k("nodeinfonodes"), node_id)
        await pipe.execute()

    async def node_infos(self) -> dict[str, dict]:
        nodes = sorted(await self.r.smembers(self.k("nodeinfonodes")))
        raws = await self.r.mget([self.k("nodeinfo", n) for n in nodes]) if nodes else []
        return {node: json.loads(raw) for node, raw in zip(nodes, raws) if raw}

    async def lease(self, name: str, holder: str, seconds: float) -> bool:
        """True if `holder` may run job `name` for the next `seconds` (once per interval across replicas);
        a holder asking again extends its lease, so it keeps the job while it lives."""
        return bool(await self._lease(keys=[self.k("lease", name)], args=[holder, max(1, int(seconds * 1000))]))

    async def claim_once(self, uuid: str, what: str) -> bool:
        """True for the first caller only, across replicas (HSETNX), until the task is deleted."""
        return bool(await self.r.hsetnx(self.k("once", uuid), what, int(time.time())))

    # --- result facts ------------------------------------------------------------------------------
    async def put_facts(self, uuid: str, owner: str, facts: dict) -> None:
        """A task's facts, its place in the owner's search set and extent; no longer due: one step."""
        assert self._put_facts is not None, "store is not open"
        box = [repr(float(v)) for v in facts["bbox"]] if facts.get("bbox") else ["", "", "", ""]
        start, end = int(facts.get("start_ms", 0)), int(facts.get("end_ms", 0))
        entry = " ".join([*(box if box[0] else ["-", "-", "-", "-"]), str(start), str(end)])
        await self._put_facts(keys=[self.k("facts", uuid), self.k("stac", owner), self.k("stacext", owner),
                                    self.k("factsdue"), self.k("factstries"), self.k("stacbox", owner),
                                    self.k("stacgeo", owner)],
                              args=[uuid, json.dumps({"owner": owner, **facts}), start, *box, end, entry])

    async def get_facts(self, uuid: str) -> dict | None:
        raw = await self.r.get(self.k("facts", uuid))
        return self._facts(raw) if raw else None

    @staticmethod
    def _facts(raw: str) -> dict:
        facts = json.loads(raw)
        facts.pop("owner", None)
        return facts

    async def mark_facts_due(self, uuid: str, not_before: float = 0.0) -> None:
        """The task (just completed, again perhaps) is to be described: facts of an earlier run go."""
        raw = await self.r.get(self.k("facts", uuid))
        pipe = self.r.pipeline(transaction=True)
        if raw:
            owner = json.loads(raw).get("owner", "")
            pipe.zrem(self.k("stac", owner), uuid)
            pipe.hdel(self.k("stacbox", owner), uuid)
            pipe.zrem(self.k("stacgeo", owner), uuid)
            pipe.delete(self.k("facts", uuid))
        pipe.zadd(self.k("factsdue"), {uuid: not_before})
        pipe.hdel(self.k("factstries"), uuid)
        await pipe.execute()

    async def due_facts(self, now: float, limit: int) -> list[str]:
        return await self.r.zrangebyscore(self.k("factsdue"), "-inf", now, start=0, num=limit)

    async def retry_facts(self, uuid: str, now: float, delay: float) -> int:
        """One more failed try: the next after `delay` seconds, doubled with each try. The tries so far."""
        tries = await self.r.hincrby(self.k("factstries"), uuid, 1)
        await self.r.zadd(self.k("factsdue"), {uuid: now + delay * 2 ** (tries - 1)}, xx=True)
        return tries

    async def drop_facts_due(self, uuid: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.zrem(self.k("factsdue"), uuid)
        pipe.hdel(self.k("factstries"), uuid)
        await pipe.execute()

    async def search_facts(self, owner: str, query: FactsQuery, limit: int) -> list[tuple[str, dict]]:
        """The owner's completed tasks' facts that `query` keeps, newest capture first.

        The bbox and time tests run inside Redis (`_SEARCH`: the owner's `stac` set from the newest start the query
        allows down, each member's `stacbox` entry), SEARCH_BUDGET members per call so that no call holds Redis up
        for long, until `limit` hits; only the hits' facts and list status are read here (a task restarted since
        it was described is not completed any more: left out). With `ids`, those members alone, tested here."""
        assert self._search is not None, "store is not open"
        key, boxes, kept = self.k("stac", owner), self.k("stacbox", owner), []
        if query.ids:
            return await self._tested(owner, list(query.ids), query, limit)
        near = await self._near(owner, query.bbox) if query.bbox else None
        if near is not None:
            return await self._tested(owner, near, query, limit)
        top = query.end_ms if query.end_ms is not None else "+inf"
        if query.after is not None:
            top = query.after[0] if top == "+inf" else min(top, query.after[0])
        box = [repr(v) for v in query.bbox] if query.bbox else ["", "", "", ""]
        after = [str(query.after[0]), query.after[1]] if query.after else ["", ""]
        offset, budget = 0, max(4 * limit, 256)  # small first: an unfiltered page stops after a few members
        while len(kept) < limit:
            want = limit - len(kept)
            scanned, hits = await self._search(keys=[key, boxes], args=[
                top, offset, budget, want, *box, "" if query.start_ms is None else query.start_ms, *after])
            offset += scanned
            kept += await self._completed(owner, hits)
            if scanned < budget and len(hits) < want:
                break  # the set is exhausted (a call that stopped early for enough hits did not)
            budget = min(budget * 4, self.SEARCH_BUDGET)
            await asyncio.sleep(0)
        return kept[:limit]

    async def _near(self, owner: str, bbox: tuple[float, float, float, float]) -> list[str] | None:
        """The owner's items whose bbox may meet `bbox`, from the geo set (each item's centre, the box grown by
        the largest item's half size); None when the box is not small enough for that to pay (more than
        GEO_CANDIDATES such items), or crosses the antimeridian: then the search walks by time."""
        west, south, east, north = bbox
        halfw, halfh = (float(v or 0) for v in await self.r.hmget(self.k("stacext", owner), "halfw", "halfh"))
        # the geo set holds centres within ±85° (Redis's limit; clamped when added): the box is clamped alike
        west, east = west - halfw, east + halfw
        south, north = min(max(south - halfh, -85.0), 85.0), max(min(north + halfh, 85.0), -85.0)
        if west > east or west < -180 or east > 180:
            return None
        equator_most = 0.0 if south <= 0 <= north else min(abs(south), abs(north))
        km = 111.4  # a degree of latitude, a little more than Redis's (its sphere: 6372.8 km)
        width = (east - west) * km * math.cos(math.radians(equator_most)) + 1
        found = await self.r.geosearch(self.k("stacgeo", owner), longitude=(west + east) / 2,
                                       latitude=(south + north) / 2, width=width, height=(north - south) * km + 1,
                                       unit="km", count=self.GEO_CANDIDATES + 1, any=True)
        return None if len(found) > self.GEO_CANDIDATES else list(found)

    async def _tested(self, owner: str, uuids: list[str], query: FactsQuery, limit: int) -> list[tuple[str, dict]]:
        """Those of `uuids` that `query` keeps and are completed, newest capture first, `limit` at most."""
        entries = await self.r.hmget(self.k("stacbox", owner), uuids) if uuids else []
        tested = [(_box_facts(box), uuid) for uuid, box in zip(uuids, entries) if box]
        hits = sorted(((box["start_ms"], uuid) for box, uuid in tested if query.matches(uuid, box)), reverse=True)
        kept: list[tuple[str, dict]] = []
        for first in range(0, len(hits), limit):
            kept += await self._completed(owner, [uuid for _, uuid in hits[first:first + limit]])
            if len(kept) >= limit:
                break
        return kept[:limit]

    async def _completed(self, owner: str, uuids: list[str]) -> list[tuple[str, dict]]:
        """The facts of those tasks that are completed now (their list status), in the same order."""
        if not uuids:
            return []
        pipe = self.r.pipeline(transaction=False)
        pipe.mget([self.k("facts", u) for u in uuids])
        pipe.hmget(self.k("lmeta", owner), uuids)
        raws, metas = await pipe.execute()
        return [(uuid, self._facts(raw)) for uuid, raw, meta in zip(uuids, raws, metas)
                if raw and meta and json.loads(meta)[1] == COMPLETED]

    async def facts_extent(self, owner: str) -> dict | None:
        ext = await self.r.hgetall(self.k("stacext", owner))
        if "start" not in ext:
            return None
        box = [float(ext[k]) for k in ("west", "south", "east", "north")] if "west" in ext else None
        return {"bbox": box, "start_ms": int(float(ext["start"])), "end_ms": int(float(ext["end"]))}

    async def shared_secret(self) -> bytes:
        """One webhook-signing key for every replica: the first to start makes it."""
        await self.r.set(self.k("secret"), secrets.token_hex(32), nx=True)
        return bytes.fromhex(await self.r.get(self.k("secret")))
