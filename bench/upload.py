"""2. Large upload: many big files streamed (init, 4 parallel streamed uploads, commit), relay vs direct.

Files of random bytes are written once under var/bench/ and reused. The shared client streams each
file from disk (requests-toolbelt), as the plugin does. It is sent, in one interleaved loop, to each
kind of node (the development node, a real NodeODX in test mode) directly and through a relay in front
of it. The receiving process's resident memory is sampled every 20 ms while it carries the upload:
streaming with bounded chunks must keep the relay's flat, whatever the size. The commit is timed on its
own too: when the relay forwards each file while it arrives, committing through it costs about what it
costs on the node.
Bars, for each kind of node: throughput through the relay >= 0.90 x direct; relay peak RSS < 150 MB.
"""
from __future__ import annotations

from pathlib import Path

import requests

from shared import Node

from .context import Context
from .report import Bar, Row, Section, median
from .stack import MB, SIDES, CPUTime, PeakRSS, clock, interleaved_stacks, kind_problem, random_files, stacks

SIZES = {"full": {"files": 100, "mb": 8, "repetitions": 4}, "quick": {"files": 4, "mb": 8, "repetitions": 1}}
#: slow processing, so a committed task never gets to building outputs from random bytes before removal
NODE_FLAGS = {"devnode": {"slots": 4, "seconds_per_image": 2, "memory_gb": 64},
              "nodeodx": {"parallel_queue_processing": 4, "test_seconds": 3600}}


def one_upload(url: str, files: list[Path], commits: list[float]) -> float:
    """Seconds from init to commit (the commit's own seconds go to `commits`); the task is removed after."""

    def time_commit(response: requests.Response, *args: object, **kwargs: object) -> None:
        if "/task/new/commit/" in response.url:
            commits.append(response.elapsed.total_seconds())

    with requests.Session() as session:
        session.hooks["response"].append(time_commit)
        node = Node.from_url(url, timeout=120, session=session)
        start = clock()
        task = node.create_task(files, name="bench upload", parallel_uploads=4)
        elapsed = clock() - start
        task.remove()
    return elapsed


def run(ctx: Context) -> Section:
    size = SIZES[ctx.mode]
    section = Section("upload", f"Large upload: {size['files']} files of {size['mb']} MB, streamed")
    problems = [p for p in (kind_problem(k) for k in ctx.nodes) if p]
    kinds = tuple(k for k in ctx.nodes if not kind_problem(k))
    files = random_files(ctx.cache / f"random-{size['mb']}mb", size["files"], size["mb"] * MB)
    total_mb = size["files"] * size["mb"]
    commits = {kind: {side: [] for side in SIDES} for kind in kinds}
    with stacks(ctx.scratch / "upload", NODE_FLAGS, kinds) as servers:
        rss = {kind: {side: PeakRSS(servers[kind].pid(side)) for side in SIDES} for kind in kinds}
        cpu = {kind: {side: CPUTime(servers[kind].pid(side)) for side in SIDES} for kind in kinds}
        idle_mb = {kind: rss[kind]["relay"].now() / MB for kind in kinds}
        labels = {kind: servers[kind].label for kind in kinds}

        def measure(kind: str, side: str) -> float:
            with rss[kind][side], cpu[kind][side]:  # the process that receives this upload, only while it does
                return one_upload(servers[kind].url(side), files, commits[kind][side])

        times = interleaved_stacks(size["repetitions"], kinds, measure)
    moved_mb = total_mb * size["repetitions"]
    details = {}
    for kind in kinds:
        label = labels[kind]
        mbps = {side: total_mb / median(times[kind][side]) for side in SIDES}
        peak_mb = {side: rss[kind][side].peak / MB for side in SIDES}
        cpu_ms = {side: cpu[kind][side].seconds * 1000 / moved_mb for side in SIDES}
        section.rows.append(Row("throughput (median)", mbps["relay"], mbps["direct"], "MB/s", label))
        section.rows.append(Row("CPU per MB (receiving process)", cpu_ms["relay"], cpu_ms["direct"], "ms", label))
        section.rows.append(Row("commit (median)", median(commits[kind]["relay"]), median(commits[kind]["direct"]),
                                "s", label))
        section.rows.append(Row("peak RSS of the receiving process", peak_mb["relay"], peak_mb["direct"], "MB", label))
        section.bars.append(Bar("upload: relay / direct throughput", mbps["relay"] / mbps["direct"], ">=", 0.90,
                                node=label))
        section.bars.append(Bar("upload: relay peak RSS", peak_mb["relay"], "<", 150, "MB", node=label))
        details[kind] = {"seconds": times[kind], "relay_rss_idle_mb": idle_mb[kind],
                         "relay_rss_peak_mb": peak_mb["relay"], "node_rss_peak_mb": peak_mb["direct"],
                         "cpu_ms_per_mb": cpu_ms, "commit_seconds": commits[kind], "node_flags": NODE_FLAGS[kind]}
    section.error = "; ".join(problems)
    section.details = {"files": size["files"], "file_mb": size["mb"], "repetitions": size["repetitions"], **details}
    return section
