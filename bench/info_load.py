"""3. `/task/{uuid}/info` under 50 concurrent clients: requests per second and p99 latency, relay vs direct.

What clients poll is running tasks, so that is what is measured: 10 tasks are started directly on the
node and 10 through the relay (they run on the same node, which has a slot for each and processes
slowly, so all stay RUNNING and every relay answer is fetched from the node). 50 client coroutines
share one aiohttp session (50 connections), client i polling task i mod 10, until the round's count
is reached; rounds alternate between relay and direct and their latencies are pooled.
Bar: p99 through the relay < 2 x p99 direct.
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from shared import Node, TaskStatus

from .context import Context
from .report import Bar, Row, Section, median, percentile
from .stack import CPUTime, clock, interleaved, samples, stack

CLIENTS = 50
TASKS = 10
SIZES = {"full": {"requests": 1000, "rounds": 10}, "quick": {"requests": 300, "rounds": 1}}
NODE = "devnode"  # the kind of node behind the relay, as the table names it
#: a slot and memory for every task, and 3 photos x 200 s: all stay RUNNING while the benchmark lasts
NODE_FLAGS = {"slots": 2 * TASKS, "seconds_per_image": 200, "memory_gb": 64}


async def _load(urls: list[str], requests: int, latencies: list[float]) -> float:
    """Send `requests` GETs from CLIENTS concurrent clients, client i to urls[i % len(urls)]; seconds taken."""
    remaining = [requests]
    errors: list[str] = []

    async def client(session: aiohttp.ClientSession, url: str) -> None:
        while remaining[0] > 0 and not errors:
            remaining[0] -= 1
            start = clock()
            async with session.get(url) as response:
                body = await response.json()
            latencies.append(clock() - start)
            if response.status != 200 or "error" in body or body["status"]["code"] != TaskStatus.RUNNING:
                errors.append(f"HTTP {response.status}: {body}")

    connector = aiohttp.TCPConnector(limit=CLIENTS)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        start = clock()
        await asyncio.gather(*(client(session, urls[i % len(urls)]) for i in range(CLIENTS)))
        elapsed = clock() - start
    if errors:
        raise RuntimeError(f"/info load on {urls[0]} failed: {errors[0]}")
    return elapsed


def running_tasks(url: str, photos: list[Path], timeout: float = 30) -> list[str]:
    """Info URLs of TASKS tasks, each RUNNING on the node once this returns."""
    node = Node.from_url(url)
    tasks = [node.create_task(photos, name=f"bench info {i}") for i in range(TASKS)]
    deadline = time.monotonic() + timeout
    for task in tasks:
        while (status := task.info().status) != TaskStatus.RUNNING:
            if time.monotonic() > deadline:
                raise RuntimeError(f"task {task.uuid} on {url} is {status.name}, not RUNNING, after {timeout:g} s")
            time.sleep(0.05)
    node.session.close()
    return [f"{url}/task/{task.uuid}/info" for task in tasks]


def run(ctx: Context) -> Section:
    size = SIZES[ctx.mode]
    section = Section("info", f"/task/{{uuid}}/info at {CLIENTS} concurrent clients")
    photos = samples(ctx.cache, 3)
    latencies: dict[str, list[float]] = {"relay": [], "direct": []}
    with stack(ctx.scratch / "info", NODE_FLAGS) as servers:
        urls = {target: running_tasks(servers.url(target), photos) for target in ("relay", "direct")}
        for task_urls in urls.values():  # warm-up: connections, the relay's first info record of each task
            asyncio.run(_load(task_urls, CLIENTS * 2, []))
        cpu = {"relay": CPUTime(servers.relay.process.pid), "direct": CPUTime(servers.node.process.pid)}

        def measure(target: str) -> float:
            with cpu[target]:  # the process that the clients talk to
                return asyncio.run(_load(urls[target], size["requests"], latencies[target]))

        seconds = interleaved(size["rounds"], measure)
    rate = {t: size["requests"] * size["rounds"] / sum(seconds[t]) for t in seconds}
    p99 = {t: percentile(latencies[t], 99) * 1000 for t in latencies}
    p50 = {t: median(latencies[t]) * 1000 for t in latencies}
    section.rows.append(Row("requests per second", rate["relay"], rate["direct"], "req/s", node=NODE))
    section.rows.append(Row("p50 latency", p50["relay"], p50["direct"], "ms", node=NODE))
    section.rows.append(Row("p99 latency", p99["relay"], p99["direct"], "ms", node=NODE))
    cpu_ms = {t: cpu[t].seconds * 1000 / (size["requests"] * size["rounds"]) for t in cpu}
    section.rows.append(Row("CPU per request (answering process)", cpu_ms["relay"], cpu_ms["direct"], "ms",
                            node=NODE))
    section.bars.append(Bar("info: relay / direct p99 latency", p99["relay"] / p99["direct"], "<", 2.0, node=NODE))
    section.details = {"clients": CLIENTS, "requests_per_round": size["requests"], "rounds": size["rounds"],
                       "round_seconds": seconds, "p99_ms": p99, "p50_ms": p50, "requests_per_second": rate,
                       "max_ms": {t: max(latencies[t]) * 1000 for t in latencies},
                       "cpu_ms_per_request": cpu_ms}
    return section
