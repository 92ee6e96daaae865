"""7. Many uploads at once: the relay's resident memory while 200 multipart uploads are in flight together.

Each upload is one task (init through the relay, then one `/task/new/upload/{uuid}` POST of one file of a
few MB, never committed). A raw asyncio client opens every connection and sends each request's headers
and first piece, waits until all of them have, then sends the rest piece by piece with a pause between
pieces (each upload starting at a random point of the pause), so the relay holds every upload open at
the same time, each with data arriving now and then, as when many slow clients upload together. All
together the pieces come faster than the relay can carry them on a small machine (200 x 256 KB every
0.4 s), so it falls behind and each upload's buffers fill as far as the relay lets them: what is
measured is that bound, times 200.

The relay's RSS is sampled every 20 ms while the uploads last (peak), and once more a moment after the
last one was answered (after). Two ways the relay handles an upload, each with a relay of its own:
`forwarding` (a node with free slots is chosen at init, so each file goes to it while it is written to
the staging folder; one run per kind of node) and `staging` (the relay's only node is offline, so files
are only staged). Bar, for each: the relay's peak RSS < 150 MB.
"""
from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
from dataclasses import dataclass

import requests

from testkit.relay import Relay, start_relay
from testkit.servers import free_port

from .context import Context
from .report import Bar, Row, Section
from .stack import MB, PeakRSS, clock, kind_problem, random_files, stack

SIZES = {"full": {"uploads": 200, "mb": 4, "piece_kb": 256, "pause": 0.4},
         "quick": {"uploads": 40, "mb": 2, "piece_kb": 256, "pause": 0.2}}
KEY = "concurrent"
PEAK_LIMIT_MB = 150
SETTLE_SECONDS = 3.0  # after the last answer, before "RSS after" is read
#: every upload is a task of its own, all from one client: 200 of them open at once
RELAY_FLAGS = {"max_open_uploads": 0}
#: processing never starts (nothing is committed); free slots, so that the relay forwards while it stages
NODE_FLAGS = {"devnode": {"slots": 4, "memory_gb": 64}, "nodeodx": {"parallel_queue_processing": 4}}


@dataclass
class Outcome:
    """One upload as the client saw it."""

    started: float  # headers sent
    ended: float    # answer read
    problem: str    # "" when the relay answered {"success": true}


class Upload:
    """One multipart body of one file, sent over a raw connection piece by piece."""

    def __init__(self, port: int, uuid: str, payload: memoryview, piece: int, index: int):
        boundary = secrets.token_hex(12)
        self.head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"images\"; "
                     f"filename=\"upload-{index:04d}.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
        self.tail = f"\r\n--{boundary}--\r\n".encode()
        length = len(self.head) + len(payload) + len(self.tail)
        self.request = (f"POST /task/new/upload/{uuid} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {length}\r\n"
                        f"Connection: close\r\n\r\n").encode()
        self.port, self.payload, self.piece = port, payload, piece

    async def send(self, all_started: asyncio.Event, started: list[int], total: int, pause: float) -> Outcome:
        began = clock()
        writer = None
        try:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(self.request + self.head)
                writer.write(self.payload[:self.piece])
                await writer.drain()
                began = clock()
            finally:  # counted even when it failed, so that the others do not wait for it for ever
                started[0] += 1
                if started[0] == total:
                    all_started.set()
            await all_started.wait()
            await asyncio.sleep(random.uniform(0, pause))
            for offset in range(self.piece, len(self.payload), self.piece):
                writer.write(self.payload[offset:offset + self.piece])
                await writer.drain()
                await asyncio.sleep(pause)
            writer.write(self.tail)
            await writer.drain()
            answer = await reader.read()
            return Outcome(began, clock(), problem(answer))
        except (OSError, asyncio.IncompleteReadError) as exc:
            return Outcome(began, clock(), f"{type(exc).__name__}: {exc}")
        finally:
            if writer is not None:
                writer.close()


def problem(answer: bytes) -> str:
    """"" when an HTTP answer says the upload succeeded, else what it says (shortened)."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].decode("latin-1")
    try:
        ok = " 200 " in status + " " and json.loads(body).get("success") is True
    except (ValueError, AttributeError):
        ok = False
    return "" if ok else f"{status}: {body[:200]!r}"


async def upload_all(port: int, uuids: list[str], payload: bytes, piece: int, pause: float) -> list[Outcome]:
    view = memoryview(payload)
    all_started, started = asyncio.Event(), [0]
    uploads = [Upload(port, uuid, view, piece, i) for i, uuid in enumerate(uuids)]
    return await asyncio.gather(*(u.send(all_started, started, len(uploads), pause) for u in uploads))


def most_at_once(outcomes: list[Outcome]) -> int:
    """The largest number of uploads that were open (headers sent, answer not yet read) at one moment."""
    events = sorted([(o.started, 1) for o in outcomes] + [(o.ended, -1) for o in outcomes])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def init_tasks(url: str, count: int) -> list[str]:
    with requests.Session() as session:
        # form-data: NodeODX reads init with multer().none() and drops url-encoded fields
        return [session.post(f"{url}/task/new/init", files={"name": (None, f"bench memory {i}")},
                             timeout=60).json()["uuid"] for i in range(count)]


def forwarded(relay: Relay, uuids: list[str]) -> int:
    """How many of these tasks' files the relay marked as held by a node (sent while staged)."""
    staging = relay.data_dir / "staging"
    return sum(1 for uuid in uuids for _ in (staging / uuid / ".forwarded").glob("*/*"))


def measure(relay: Relay, payload: bytes, size: dict) -> dict:
    uuids = init_tasks(relay.url, size["uploads"])
    sampler = PeakRSS(relay.process.pid)
    idle = sampler.now()
    start = clock()
    with sampler:
        outcomes = asyncio.run(upload_all(relay.port, uuids, payload, size["piece_kb"] * 1024, size["pause"]))
    seconds = clock() - start
    time.sleep(SETTLE_SECONDS)
    failed = [o.problem for o in outcomes if o.problem]
    return {"idle_mb": idle / MB, "peak_mb": sampler.peak / MB, "after_mb": sampler.now() / MB,
            "seconds": seconds, "at_once": most_at_once(outcomes), "failed": len(failed),
            "first_errors": failed[:3], "forwarded": forwarded(relay, uuids), "samples": sampler.samples}


def add_rows(section: Section, result: dict, label: str, how: str, uploads: int) -> None:
    section.rows.append(Row(f"RSS idle, {how}", result["idle_mb"], unit="MB", node=label))
    section.rows.append(Row(f"peak RSS, {uploads} uploads, {how}", result["peak_mb"], unit="MB", node=label))
    section.rows.append(Row(f"RSS {SETTLE_SECONDS:g} s after, {how}", result["after_mb"], unit="MB", node=label))
    section.rows.append(Row(f"uploads in flight at once, {how}", result["at_once"], node=label))
    section.rows.append(Row(f"files forwarded to the node, {how}", result["forwarded"], node=label))
    section.rows.append(Row(f"uploads failed, {how}", result["failed"], node=label))
    section.bars.append(Bar(f"{uploads} uploads, {how}: relay peak RSS", result["peak_mb"], "<", PEAK_LIMIT_MB, "MB",
                            node=label))


def run(ctx: Context) -> Section:
    size = SIZES[ctx.mode]
    uploads = size["uploads"]
    section = Section(KEY, f"{uploads} uploads of {size['mb']} MB in flight at once: relay RSS")
    problems = [p for p in (kind_problem(k) for k in ctx.nodes) if p]
    kinds = tuple(k for k in ctx.nodes if not kind_problem(k))
    payload = random_files(ctx.cache / f"random-{size['mb']}mb", 1, size["mb"] * MB)[0].read_bytes()
    runs: dict[str, dict] = {}
    for kind in kinds:
        with stack(ctx.scratch / KEY / kind, NODE_FLAGS[kind], dict(RELAY_FLAGS), kind) as servers:
            result = measure(servers.relay, payload, size)
        add_rows(section, result, servers.label, "forwarding", uploads)
        runs[f"forwarding {kind}"] = result
        if result["forwarded"] < uploads - result["failed"]:
            problems.append(f"forwarding {kind}: only {result['forwarded']} of {uploads} files were forwarded")
    offline = f"http://127.0.0.1:{free_port()}"  # nobody listens there: the relay's only node is offline
    relay = start_relay(ctx.scratch / KEY / "staging", [offline], **RELAY_FLAGS)
    try:
        result = measure(relay, payload, size)
    finally:
        relay.stop()
    add_rows(section, result, "", "staging only", uploads)
    runs["staging only (node offline)"] = result
    for how, result in runs.items():
        if result["failed"]:
            problems.append(f"{how}: {result['failed']} upload(s) failed, e.g. {result['first_errors'][0]}")
    section.error = "; ".join(problems)
    section.details = {**size, "runs": runs}
    return section
