"""1. Task cycle: init, upload 3 small photos, commit, wait for completion, download all.zip.

The whole cycle a QGIS user waits for, timed end to end with the shared client (the plugin's own
client), through the relay and directly against the node behind it, for each kind of node (the
development node, a real NodeODX in test mode), all four in one interleaved loop. Status is polled
every 20 ms on every side, so polling granularity is small against the cycle (~0.5 s on the
development node, ~0.2 s on NodeODX in test mode).

Each request's own latency is recorded too (from sending it to its answer's headers, `requests`'
`elapsed`), by step: the client's check (`/options`, `/info`), init, each upload, commit, each info
poll, and the download of all.zip (whole, wall clock). So the table says where the relay's extra time
goes, not only how much there is. So does the CPU each cycle costs the relay and the node (with the
node's child processes): unlike times, CPU seconds hardly move with the machine's other load.
Bar, for each kind of node: median through the relay <= 1.10 x median direct.
"""
from __future__ import annotations

import os
import re
from contextlib import nullcontext
from pathlib import Path

import requests

from shared import Node

from .context import Context
from .report import Bar, Row, Section, median
from .stack import SIDES, CPUTime, clock, interleaved_stacks, kind_problem, samples, stacks

REPETITIONS = {"full": 24, "quick": 3}
PHOTOS = 3
POLL_SECONDS = 0.02
NODE_FLAGS = {"devnode": {"slots": 2, "seconds_per_image": 0.02},
              # test mode: no engine, the node copies its test outputs and zips them (~0.1 s)
              "nodeodx": {"parallel_queue_processing": 2}}
#: request path -> step, first match wins
STEP_PATHS = (("poll", re.compile(r"/task/[^/]+/info$")), ("check", re.compile(r"/(info|options)$")),
              ("init", re.compile(r"/task/new/init$")), ("upload", re.compile(r"/task/new/upload/")),
              ("commit", re.compile(r"/task/new/commit/")), ("remove", re.compile(r"/task/remove$")))
#: rows of the table: step, what the row says, unit scale
STEP_ROWS = (("check", "step: /options + /info check, each", "ms"), ("init", "step: init", "ms"),
             ("upload", "step: upload, each photo", "ms"), ("commit", "step: commit", "ms"),
             ("poll", "step: info poll, each", "ms"), ("download", "step: download all.zip (whole)", "ms"))


def step_of(url: str) -> str:
    path = url.split("?", 1)[0]
    return next((step for step, pattern in STEP_PATHS if pattern.search(path)), "other")


def one_cycle(url: str, photos: list[Path], downloads: Path, steps: dict[str, list[float]] | None = None) -> float:
    """Seconds from init to all.zip on disk. Each request's latency goes to `steps[step]`, and the
    cycle's phases (create, wait, download) and its number of polls to `steps["phase:..."]`."""
    steps = {} if steps is None else steps

    def record(response: requests.Response, *args: object, **kwargs: object) -> None:
        if not kwargs.get("stream"):  # a streamed download's `elapsed` is its headers only: timed whole below
            steps.setdefault(step_of(response.url), []).append(response.elapsed.total_seconds())

    with requests.Session() as session:
        session.hooks["response"].append(record)
        node = Node.from_url(url, timeout=60, session=session)
        start = clock()
        task = node.create_task(photos, name="bench cycle")
        created = clock()
        polls = len(steps.get("poll", ()))
        task.wait_for_completion(interval=POLL_SECONDS)
        done = clock()
        zip_path = task.download_zip(downloads)
        downloaded = clock()
        steps.setdefault("download", []).append(downloaded - done)
        steps.setdefault("phase:polls", []).append(len(steps.get("poll", ())) - polls)
        for phase, seconds in (("create", created - start), ("wait", done - created)):
            steps.setdefault(f"phase:{phase}", []).append(seconds)
        os.remove(zip_path)
        task.remove()
    return downloaded - start


def run(ctx: Context) -> Section:
    section = Section("cycle", "Task cycle: init, upload 3 photos, commit, wait, download all.zip")
    problems = [p for p in (kind_problem(k) for k in ctx.nodes) if p]
    kinds = tuple(k for k in ctx.nodes if not kind_problem(k))
    photos = samples(ctx.cache, PHOTOS)
    steps: dict[str, dict[str, dict[str, list[float]]]] = {k: {side: {} for side in SIDES} for k in kinds}
    with stacks(ctx.scratch / "cycle", NODE_FLAGS, kinds) as servers:
        for kind in kinds:  # warm-up: first connections, first cache dirs, the node's first task
            for side in SIDES:
                one_cycle(servers[kind].url(side), photos, ctx.scratch)
        relay_cpu = {kind: CPUTime(servers[kind].pid("relay")) for kind in kinds}
        node_cpu = {kind: {side: CPUTime(servers[kind].pid("direct"), children=True) for side in SIDES}
                    for kind in kinds}

        def measure(kind: str, side: str) -> float:
            with relay_cpu[kind] if side == "relay" else nullcontext(), node_cpu[kind][side]:
                return one_cycle(servers[kind].url(side), photos, ctx.scratch, steps[kind][side])

        times = interleaved_stacks(REPETITIONS[ctx.mode], kinds, measure)
        labels = {kind: servers[kind].label for kind in kinds}
    for kind in kinds:
        label, took, step = labels[kind], times[kind], steps[kind]
        relay, direct = median(took["relay"]), median(took["direct"])
        section.rows.append(Row("median cycle", relay, direct, "s", label))
        section.rows.append(Row("fastest cycle", min(took["relay"]), min(took["direct"]), "s", label))
        for name, metric, unit in STEP_ROWS:
            section.rows.append(Row(metric, median(step["relay"].get(name, ())) * 1000,
                                    median(step["direct"].get(name, ())) * 1000, unit, label))
        reps = REPETITIONS[ctx.mode]
        section.rows.append(Row("CPU per cycle: relay process", relay_cpu[kind].seconds * 1000 / reps, None, "ms",
                                label))
        section.rows.append(Row("CPU per cycle: node and its children", node_cpu[kind]["relay"].seconds * 1000 / reps,
                                node_cpu[kind]["direct"].seconds * 1000 / reps, "ms", label))
        section.bars.append(Bar("cycle: relay / direct (ratio of medians)", relay / direct, "<=", 1.10, node=label))
    section.error = "; ".join(problems)
    section.details = {
        "repetitions": REPETITIONS[ctx.mode], "photos": PHOTOS, "poll_seconds": POLL_SECONDS,
        "node_flags": {k: NODE_FLAGS[k] for k in kinds}, "seconds": times,
        "step_ms": {k: {side: {name: round(median(values) * 1000, 3) for name, values in steps[k][side].items()
                               if not name.startswith("phase:")} for side in SIDES} for k in kinds},
        "requests_per_cycle": {k: {side: {name: len(values) / REPETITIONS[ctx.mode]
                                          for name, values in steps[k][side].items() if not name.startswith("phase:")}
                                   for side in SIDES} for k in kinds},
        "phases_s": {k: {side: {name.removeprefix("phase:"): median(values) for name, values in steps[k][side].items()
                                if name.startswith("phase:")} for side in SIDES} for k in kinds}}
    return section
