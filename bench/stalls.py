"""4. Streamed multipart uploads: 1000 of them through the relay, how many took over 5 s.

ClusterODX stalls on a share of streamed multipart uploads. Here each upload is one photo sent as
`multipart/form-data` with `Transfer-Encoding: chunked` (the body is a generator yielding 16 KB
pieces, so no Content-Length is known in advance), the way streaming clients send. Several tasks are
uploaded at once, each with several files in flight, then committed and removed; the same load is
run directly against the node for comparison. A request that fails or times out counts as stalled.
Bar: no upload through the relay over 5 s.
"""
from __future__ import annotations

import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from .context import Context
from .report import Bar, Row, Section, median, percentile
from .stack import clock, samples, stack

STALL_SECONDS = 5.0
FILES_PER_TASK = 10
TASKS_AT_ONCE = 4
UPLOADS_PER_TASK_AT_ONCE = 4
PIECE = 16 * 1024
SIZES = {"full": {"uploads": 1000}, "quick": {"uploads": 80}}
NODE = "devnode"  # the kind of node behind the relay, as the table names it
#: slow processing: committed tasks stay "running" until removed, so the node does no output work
NODE_FLAGS = {"slots": TASKS_AT_ONCE, "seconds_per_image": 5}


def chunked_multipart(path: Path, boundary: str) -> Iterator[bytes]:
    """The multipart body of one `images` file, produced piece by piece (sent chunked by requests)."""
    yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"images\"; filename=\"{path.name}\"\r\n"
           f"Content-Type: image/jpeg\r\n\r\n").encode()
    with open(path, "rb") as handle:
        while piece := handle.read(PIECE):
            yield piece
    yield f"\r\n--{boundary}--\r\n".encode()


def upload_one(session: requests.Session, url: str, uuid: str, path: Path) -> tuple[float, str]:
    """(seconds, error or "") for one streamed upload."""
    boundary = secrets.token_hex(12)
    start = clock()
    try:
        response = session.post(f"{url}/task/new/upload/{uuid}", data=chunked_multipart(path, boundary),
                                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
                                timeout=(5, 4 * STALL_SECONDS))
        body = response.json()
        problem = "" if response.ok and body.get("success") else f"HTTP {response.status_code}: {body}"
    except (requests.RequestException, ValueError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    return clock() - start, problem


def one_task(url: str, photos: list[Path]) -> list[tuple[float, str]]:
    with requests.Session() as session:
        # form-data: NodeODX reads init with multer().none() and drops url-encoded fields
        uuid = session.post(f"{url}/task/new/init", files={"name": (None, "bench stalls")}, timeout=30).json()["uuid"]
        with ThreadPoolExecutor(UPLOADS_PER_TASK_AT_ONCE) as pool:
            results = list(pool.map(lambda p: upload_one(session, url, uuid, p), photos))
        session.post(f"{url}/task/new/commit/{uuid}", timeout=30).raise_for_status()
        session.post(f"{url}/task/remove", data={"uuid": uuid}, timeout=30).raise_for_status()
    return results


def load(url: str, photos: list[Path], uploads: int) -> list[tuple[float, str]]:
    tasks = max(1, uploads // len(photos))
    with ThreadPoolExecutor(TASKS_AT_ONCE) as pool:
        return [r for results in pool.map(lambda _: one_task(url, photos), range(tasks)) for r in results]


def run(ctx: Context) -> Section:
    uploads = SIZES[ctx.mode]["uploads"]
    section = Section("stalls", f"{uploads} streamed (chunked) multipart uploads")
    photos = samples(ctx.cache, FILES_PER_TASK)
    results = {}
    with stack(ctx.scratch / "stalls", NODE_FLAGS) as servers:
        for target in ("relay", "direct"):
            results[target] = load(servers.url(target), photos, uploads)
    seconds = {t: [s for s, _ in r] for t, r in results.items()}
    stalled = {t: sum(1 for s, problem in r if problem or s > STALL_SECONDS) for t, r in results.items()}
    failed = {t: [problem for _, problem in r if problem] for t, r in results.items()}
    section.rows.append(Row("uploads over 5 s or failed", stalled["relay"], stalled["direct"], node=NODE))
    section.rows.append(Row("median upload", median(seconds["relay"]) * 1000, median(seconds["direct"]) * 1000, "ms",
                            node=NODE))
    section.rows.append(Row("p99 upload", percentile(seconds["relay"], 99) * 1000,
                            percentile(seconds["direct"], 99) * 1000, "ms", node=NODE))
    section.rows.append(Row("slowest upload", max(seconds["relay"]) * 1000, max(seconds["direct"]) * 1000, "ms",
                            node=NODE))
    section.bars.append(Bar(f"stalls: relay uploads over 5 s (of {len(results['relay'])})",
                            stalled["relay"], "==", 0, "", node=NODE))
    section.details = {"uploads": {t: len(r) for t, r in results.items()}, "stalled": stalled,
                       "files_per_task": FILES_PER_TASK, "tasks_at_once": TASKS_AT_ONCE,
                       "uploads_per_task_at_once": UPLOADS_PER_TASK_AT_ONCE, "piece_bytes": PIECE,
                       "first_errors": {t: f[:3] for t, f in failed.items()}}
    return section
