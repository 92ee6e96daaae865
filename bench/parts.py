"""8. Many parts in one upload: time per part of one multipart POST of 1,000, 3,000 and 10,000 small photos.

With `--max-images` and `--max-upload-mb` set, each part is checked against what the task holds already;
the relay once counted that again for every part, so a 3,000-part upload took 88 s and 10,000 parts did not
finish in 600 s. Each size here is one task (init, then one `/task/new/upload/{uuid}` POST holding every
part, never committed) on a relay with both limits set whose only node is offline, so only the relay's own
work is timed: reading, checking and staging each part. The sizes are sent in turns (smallest to largest,
then back), and the median of each size's runs is taken. Bar: the time per part at the largest size over
that at the smallest <= 2 (linear: per-part work does not grow with the parts before it).
"""
from __future__ import annotations

import os
import secrets
import statistics

import requests

from testkit.relay import start_relay
from testkit.servers import free_port

from .context import Context
from .report import Bar, Row, Section
from .stack import clock

SIZES = {"full": {"parts": (1000, 3000, 10000), "repetitions": 3},
         "quick": {"parts": (200, 600, 2000), "repetitions": 2}}
PART_BYTES = 1024  # each part a small "photo": the per-part work is what is measured, not the bytes
RATIO_LIMIT = 2.0
#: both limits on (what made per-part work grow), far above what is sent; one task per upload, none committed
RELAY_FLAGS = {"max_images": 100_000, "max_upload_mb": 10_240, "max_open_uploads": 0}


def multipart(parts: int) -> tuple[bytes, str]:
    """One multipart body with `parts` files named IMG_00000.JPG, ... and its Content-Type."""
    boundary = secrets.token_hex(12)
    content = os.urandom(PART_BYTES)
    pieces = []
    for i in range(parts):
        pieces.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"images\"; filename=\"IMG_{i:05d}.JPG\""
                      f"\r\nContent-Type: image/jpeg\r\n\r\n".encode())
        pieces.append(content)
        pieces.append(b"\r\n")
    pieces.append(f"--{boundary}--\r\n".encode())
    return b"".join(pieces), f"multipart/form-data; boundary={boundary}"


def upload(session: requests.Session, url: str, body: bytes, content_type: str) -> float:
    """Seconds for one upload of `body` to a new task; raises if the relay does not take every part."""
    uuid = session.post(f"{url}/task/new/init", files={"name": (None, "bench parts")}, timeout=60).json()["uuid"]
    start = clock()
    response = session.post(f"{url}/task/new/upload/{uuid}", data=body, headers={"Content-Type": content_type},
                            timeout=900)
    elapsed = clock() - start
    answer = response.json()
    if not answer.get("success"):
        raise RuntimeError(f"the relay refused the upload: HTTP {response.status_code} {answer}")
    return elapsed


def run(ctx: Context) -> Section:
    size = SIZES[ctx.mode]
    counts = size["parts"]
    section = Section("parts", f"One multipart upload of {', '.join(f'{n:,}' for n in counts)} parts, limits set")
    bodies = {n: multipart(n) for n in counts}
    seconds: dict[int, list[float]] = {n: [] for n in counts}
    offline = f"http://127.0.0.1:{free_port()}"  # nobody listens there: files are only staged
    relay = start_relay(ctx.scratch / "parts", [offline], **RELAY_FLAGS)
    try:
        with requests.Session() as session:
            for rep in range(size["repetitions"]):
                for n in (counts if rep % 2 == 0 else counts[::-1]):
                    seconds[n].append(upload(session, relay.url, *bodies[n]))
    finally:
        relay.stop()
    per_part_us = {n: statistics.median(seconds[n]) / n * 1e6 for n in counts}
    for n in counts:
        section.rows.append(Row(f"time per part, {n:,} parts", per_part_us[n], unit="us"))
        section.rows.append(Row(f"whole upload, {n:,} parts", statistics.median(seconds[n]), unit="s"))
    smallest, largest = counts[0], counts[-1]
    section.bars.append(Bar(f"parts: per-part time {largest:,} / {smallest:,} parts",
                            per_part_us[largest] / per_part_us[smallest], "<=", RATIO_LIMIT))
    section.details = {"part_bytes": PART_BYTES, "relay_flags": RELAY_FLAGS, "seconds": seconds,
                       "per_part_us": per_part_us, "repetitions": size["repetitions"]}
    return section
