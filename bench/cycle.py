"""1. Task cycle: init, upload 3 small photos, commit, wait for completion, download all.zip.

The whole cycle a QGIS user waits for, timed end to end with the shared client (the plugin's own
client), through the relay and directly against the node behind it, in alternating order. Status is
polled every 20 ms on both sides, so polling granularity is small against the ~0.5 s cycle.
Bar: median through the relay <= 1.10 x median direct.
"""
from __future__ import annotations

import os
from pathlib import Path

from shared import Node

from .context import Context
from .report import Bar, Row, Section, median
from .stack import clock, interleaved, samples, stack

REPETITIONS = {"full": 24, "quick": 3}
PHOTOS = 3
POLL_SECONDS = 0.02
NODE_FLAGS = {"slots": 2, "seconds_per_image": 0.02}


def one_cycle(url: str, photos: list[Path], downloads: Path) -> float:
    node = Node.from_url(url, timeout=60)
    with node.session:
        start = clock()
        task = node.create_task(photos, name="bench cycle")
        task.wait_for_completion(interval=POLL_SECONDS)
        zip_path = task.download_zip(downloads)
        elapsed = clock() - start
        os.remove(zip_path)
        task.remove()
    return elapsed


def run(ctx: Context) -> Section:
    section = Section("cycle", "Task cycle: init, upload 3 photos, commit, wait, download all.zip")
    photos = samples(ctx.cache, PHOTOS)
    with stack(ctx.scratch / "cycle", NODE_FLAGS) as servers:
        one_cycle(servers.url("relay"), photos, ctx.scratch)  # warm-up: first connections, first cache dirs
        one_cycle(servers.url("direct"), photos, ctx.scratch)
        times = interleaved(REPETITIONS[ctx.mode], lambda target: one_cycle(servers.url(target), photos, ctx.scratch))
    relay, direct = median(times["relay"]), median(times["direct"])
    section.rows.append(Row("median cycle", relay, direct, "s"))
    section.rows.append(Row("fastest cycle", min(times["relay"]), min(times["direct"]), "s"))
    section.bars.append(Bar("cycle: relay / direct (ratio of medians)", relay / direct, "<=", 1.10))
    section.details = {"repetitions": REPETITIONS[ctx.mode], "photos": PHOTOS, "poll_seconds": POLL_SECONDS,
                       "node_flags": NODE_FLAGS, "seconds": times}
    return section
