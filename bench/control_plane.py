"""6. The relay's control plane with many stored tasks: `/info` while a node is offline, and `/task/list`.

50,000 task records (2,000 in --quick) are written straight into the relay's store before it starts,
as a relay that has run for months holds them: most ended long ago on one of two nodes, a few still
running on each, a few failed or canceled in the relay, a tenth of them another owner's. The relay then
starts in front of one online development node and one node that is offline (a closed port), with
`--failover-after 1` and `--check-interval 0.5`, so every health round runs with a node offline past the
grace period: its failover, and whatever else a round reads, must not hold up the event loop.

Measured, for the SQLite store and for the Redis store:
- `/info`, asked every 50 ms for 60 s (3 s in --quick) by one client: max and p99 latency, beside the
  online node's own `/info` asked the same way at the same time ("direct": what the machine allows);
- `/task/list?limit=100&offset=...` pages at offsets spread over the whole list, and the whole list
  (no parameters, as NodeODX clients ask), with `/info` still sampled meanwhile;
- `/task/list?status=40&sort=created.desc&limit=10` (the ten newest completed tasks, a filtered listing),
  checked against the records.
Bars (absolute, as the issue words them): `/info` max < 100 ms; a `/task/list` page (the slowest) < 50 ms; the
filtered listing (the slowest) < 50 ms.
"""
from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import requests

from proxy.models import Stage, TaskRecord
from proxy.nodes import parse_node_url
from testkit.devnode import start_devnode
from testkit.relay import start_redis, start_relay
from testkit.servers import free_port

from .context import Context
from .report import Bar, Row, Section, median, percentile
from .stack import clock

SIZES = {"full": {"tasks": 50_000, "sample_seconds": 60.0, "pages": 40, "whole": 5, "filtered": 20},
         "quick": {"tasks": 2_000, "sample_seconds": 3.0, "pages": 5, "whole": 1, "filtered": 5}}
FILTERED = {"status": 40, "sort": "created.desc", "limit": 10}  # the bar: the ten newest completed
BACKENDS = {"sqlite": "SQLite", "redis": "Redis"}
SAMPLE_EVERY = 0.05
PAGE = 100
OPEN_PER_NODE = 20        # still running on each node when the relay starts
RELAY_FLAGS = {"check_interval": 0.5, "failover_after": 1, "node_timeout": 5, "log_level": "WARNING"}
NODE = "devnode"
OTHER_OWNER = "token:someone-else"
INFO_MAX_MS, PAGE_MAX_MS, FILTERED_MAX_MS = 100.0, 50.0, 50.0
SLOW = 0.05


def seed_records(count: int, online: str, offline: str) -> list[TaskRecord]:
    """`count` records as a long-running relay holds them, oldest first (see the module's words)."""
    start_ms = int(time.time() * 1000) - count * 1000
    options = {"dsm": True, "dtm": True, "orthophoto-resolution": 5, "feature-quality": "high"}
    records = []
    for i in range(count):
        node = online if i % 2 else offline
        task = TaskRecord(uuid=f"{i:08d}-0000-4000-8000-{i:012d}", owner=OTHER_OWNER if i % 10 == 3 else "",
                          name=f"survey {i}", created_ms=start_ms + i * 1000, stage=Stage.ON_NODE, node_id=node,
                          image_count=120, options=dict(options))
        running = i >= count - 2 * OPEN_PER_NODE  # the newest ones still run
        code = 20 if running else 40
        task.last_info = {"uuid": task.uuid, "name": task.name, "dateCreated": task.created_ms,
                          "processingTime": 3_600_000, "status": {"code": code},
                          "options": [{"name": k, "value": v} for k, v in options.items()],
                          "imagesCount": 120, "progress": 50 if running else 100}
        if not running:
            task.ended_ms = task.created_ms + 3_600_000
            if i % 50 == 7:
                task.stage, task.node_id, task.error = Stage.FAILED, None, "No node could take it"
                task.last_info = None
            elif i % 50 == 8:
                task.stage, task.node_id, task.last_info = Stage.CANCELED, None, None
        records.append(task)
    return records


async def _seed(backend: str, where: str | Path, records: list[TaskRecord]) -> None:
    """Write the records with the store's own code (whichever version of it is being measured)."""
    if backend == "sqlite":
        from proxy.store import SQLiteStore

        store = SQLiteStore(Path(where))
        await store.open()
        assert store.db is not None
        store.db.execute("BEGIN")  # one transaction: 50,000 commits would take minutes
        for task in records:
            await store.put_task(task)
        store.db.execute("COMMIT")
    else:
        from proxy.redis_store import RedisStore

        store = RedisStore(str(where))
        await store.open()
        for first in range(0, len(records), 50):
            await asyncio.gather(*(store.put_task(t) for t in records[first:first + 50]))
    await store.close()


class Sampler:
    """`/info` every SAMPLE_EVERY seconds in a thread of its own; latencies in seconds, by phase, and when (s
    after the start) each answer slower than SLOW came."""

    def __init__(self, url: str):
        self.url = url
        self.phase = "idle"
        self.latencies: dict[str, list[float]] = {}
        self.slow: list[tuple[float, float]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with requests.Session() as session:
            next_at = began = clock()
            while not self._stop.is_set():
                phase = self.phase
                start = clock()
                try:
                    response = session.get(self.url, timeout=30)
                    if response.status_code != 200 or "error" in response.json():
                        self.errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
                except (requests.RequestException, ValueError) as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                self.latencies.setdefault(phase, []).append(clock() - start)
                if clock() - start > SLOW:
                    self.slow.append((round(start - began, 2), round((clock() - start) * 1000, 1)))
                next_at += SAMPLE_EVERY
                self._stop.wait(max(0.0, next_at - clock()))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


def timed_get(session: requests.Session, url: str) -> tuple[float, Any]:
    """Seconds until the whole answer is in (not counting this client's JSON decoding), and the answer."""
    start = clock()
    response = session.get(url, timeout=60)
    response.content  # noqa: B018  (read the body now, inside the timing)
    elapsed = clock() - start
    body = response.json()
    if response.status_code != 200 or isinstance(body, dict):
        raise RuntimeError(f"{url}: HTTP {response.status_code}: {str(body)[:300]}")
    return elapsed, body


def measure(backend: str, workdir: Path, size: dict[str, Any]) -> dict[str, Any]:
    """Seed, start the node and the relay, sample and time; every server stopped on the way out."""
    workdir.mkdir(parents=True, exist_ok=True)
    started = []
    try:
        node = start_devnode(workdir, seconds_per_image=0.05)
        started.append(node)
        offline_url = f"http://127.0.0.1:{free_port()}"  # nobody listens there
        online_id, offline_id = parse_node_url(node.url).id, parse_node_url(offline_url).id
        records = seed_records(size["tasks"], online_id, offline_id)
        flags: dict[str, Any] = dict(RELAY_FLAGS)
        data_dir = workdir / f"relay-{backend}"
        seed_started = clock()
        if backend == "redis":
            redis_server = start_redis(workdir)
            started.append(redis_server)
            flags["redis"] = redis_server.url
            asyncio.run(_seed(backend, redis_server.url, records))
        else:
            asyncio.run(_seed(backend, data_dir / "relay.sqlite3", records))
        seed_seconds = clock() - seed_started
        relay_started = clock()
        relay = start_relay(workdir, [node.url, offline_url], data_dir=data_dir, **flags)
        started.append(relay)
        start_seconds = clock() - relay_started
        listed = sum(1 for t in records if t.owner == "")
        offsets = [round(i * (listed - PAGE) / max(1, size["pages"] - 1)) for i in range(size["pages"])]
        pages: list[float] = []
        whole: list[float] = []
        filtered: list[float] = []
        newest_done = [t.uuid for t in sorted(records, key=lambda t: (t.created_ms, t.uuid), reverse=True)
                       if t.owner == "" and t.stage == Stage.ON_NODE and (t.last_info or {}).get("status", {}).get(
                           "code") == 40][:FILTERED["limit"]]
        page_items = whole_items = 0
        # the node's own /info asked alongside: how slow this machine is meanwhile (the relay's /info bar is
        # absolute, and two busy cores can delay any answer)
        with Sampler(relay.api("/info")) as sampler, Sampler(node.api("/info")) as direct, \
                requests.Session() as session:
            sampler.phase = direct.phase = "offline node"
            time.sleep(size["sample_seconds"])
            sampler.phase = direct.phase = "listing"
            for offset in offsets:
                seconds, body = timed_get(session, relay.api("/task/list", limit=PAGE, offset=offset))
                pages.append(seconds)
                page_items = max(page_items, len(body))
            for _ in range(size["whole"]):
                seconds, body = timed_get(session, relay.api("/task/list"))
                whole.append(seconds)
                whole_items = len(body)
            for _ in range(size["filtered"]):
                seconds, body = timed_get(session, relay.api("/task/list", **FILTERED))
                filtered.append(seconds)
                if [t["uuid"] for t in body] != newest_done:
                    raise RuntimeError(f"/task/list?{FILTERED}: {body[:3]}..., not the newest completed tasks")
        if sampler.errors or direct.errors:
            raise RuntimeError(f"/info failed {len(sampler.errors + direct.errors)} time(s), first: "
                               f"{(sampler.errors + direct.errors)[0]}")
        info = sampler.latencies.get("offline node", [])
        node_info = direct.latencies.get("offline node", [])
        during_list = sampler.latencies.get("listing", [])
        return {"info_max_ms": max(info) * 1000, "info_p99_ms": percentile(info, 99) * 1000,
                "info_p50_ms": median(info) * 1000, "info_samples": len(info),
                "info_over_50ms": sum(1 for x in info if x > SLOW), "info_slow_at": sampler.slow[:20],
                "direct_info_max_ms": max(node_info) * 1000, "direct_info_p99_ms": percentile(node_info, 99) * 1000,
                "direct_info_over_50ms": sum(1 for x in node_info if x > SLOW), "direct_slow_at": direct.slow[:20],
                "info_max_while_listing_ms": max(during_list) * 1000 if during_list else None,  # none asked
                "page_max_ms": max(pages) * 1000, "page_median_ms": median(pages) * 1000,
                "page_items": page_items, "whole_median_ms": median(whole) * 1000,
                "whole_max_ms": max(whole) * 1000, "whole_items": whole_items, "listed_expected": listed,
                "filtered_max_ms": max(filtered) * 1000, "filtered_median_ms": median(filtered) * 1000,
                "seed_seconds": round(seed_seconds, 1), "relay_start_seconds": round(start_seconds, 1)}
    finally:
        for server in reversed(started):
            server.stop()


def run(ctx: Context) -> Section:
    size = SIZES[ctx.mode]
    section = Section("control", f"control plane at {size['tasks']:,} stored tasks, one node offline")
    results = {}
    for backend, label in BACKENDS.items():
        got = results[backend] = measure(backend, ctx.scratch / "control" / backend, size)
        section.rows += [
            Row(f"{label}: /info max (node offline)", got["info_max_ms"], got["direct_info_max_ms"], "ms", NODE),
            Row(f"{label}: /info p99 (node offline)", got["info_p99_ms"], got["direct_info_p99_ms"], "ms", NODE),
            Row(f"{label}: /info answers over 50 ms", got["info_over_50ms"], got["direct_info_over_50ms"], "",
                NODE),
            Row(f"{label}: /task/list page, slowest", got["page_max_ms"], unit="ms", node=NODE),
            Row(f"{label}: /task/list page, median", got["page_median_ms"], unit="ms", node=NODE),
            Row(f"{label}: /task/list whole, median", got["whole_median_ms"], unit="ms", node=NODE),
            Row(f"{label}: /task/list?status=40&sort=created.desc&limit=10, slowest", got["filtered_max_ms"],
                unit="ms", node=NODE),
            Row(f"{label}: /info max while listing", got["info_max_while_listing_ms"], unit="ms", node=NODE),
        ]
        section.bars += [
            Bar(f"control: {label} /info max, node offline", got["info_max_ms"], "<", INFO_MAX_MS, "ms", node=NODE),
            Bar(f"control: {label} /task/list page, slowest", got["page_max_ms"], "<", PAGE_MAX_MS, "ms",
                node=NODE),
            Bar(f"control: {label} /task/list?status=40&sort=created.desc&limit=10, slowest", got["filtered_max_ms"],
                "<", FILTERED_MAX_MS, "ms", node=NODE),
        ]
    section.details = {"tasks": size["tasks"], "sample_seconds": size["sample_seconds"],
                       "sample_every_seconds": SAMPLE_EVERY, "page": PAGE, "relay_flags": RELAY_FLAGS,
                       "results": results}
    return section
