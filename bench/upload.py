"""2. Large upload: many big files streamed (init, 4 parallel streamed uploads, commit), relay vs direct.

Files of random bytes are written once under var/bench/ and reused. The shared client streams each
file from disk (requests-toolbelt), as the plugin does. The relay's resident memory is sampled every
20 ms while it carries the upload: streaming with bounded chunks must keep it flat, whatever the size.
The commit is timed on its own too: when the relay forwards each file while it arrives, committing
through it costs about what it costs on the node.
Bars: throughput through the relay >= 0.90 x direct; relay peak RSS < 150 MB.
"""
from __future__ import annotations

from pathlib import Path

import requests

from shared import Node

from .context import Context
from .report import Bar, Row, Section, median
from .stack import MB, CPUTime, PeakRSS, clock, interleaved, random_files, stack

SIZES = {"full": {"files": 100, "mb": 8, "repetitions": 4}, "quick": {"files": 4, "mb": 8, "repetitions": 1}}
#: slow processing, so a committed task never gets to building outputs from random bytes before removal
NODE_FLAGS = {"slots": 4, "seconds_per_image": 2, "memory_gb": 64}


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
    files = random_files(ctx.cache / f"random-{size['mb']}mb", size["files"], size["mb"] * MB)
    total_mb = size["files"] * size["mb"]
    commits: dict[str, list[float]] = {"relay": [], "direct": []}
    with stack(ctx.scratch / "upload", NODE_FLAGS) as servers:
        receiver = {"relay": servers.relay.process.pid, "direct": servers.node.process.pid}
        rss = {target: PeakRSS(pid) for target, pid in receiver.items()}
        cpu = {target: CPUTime(pid) for target, pid in receiver.items()}
        idle_mb = rss["relay"].now() / MB

        def measure(target: str) -> float:
            with rss[target], cpu[target]:  # the process that receives this upload, only while it does
                return one_upload(servers.url(target), files, commits[target])

        times = interleaved(size["repetitions"], measure)
        peak_mb, node_peak_mb = rss["relay"].peak / MB, rss["direct"].peak / MB
    relay_mbps = total_mb / median(times["relay"])
    direct_mbps = total_mb / median(times["direct"])
    section.rows.append(Row("throughput (median)", relay_mbps, direct_mbps, "MB/s"))
    moved_mb = total_mb * size["repetitions"]
    cpu_ms = {target: cpu[target].seconds * 1000 / moved_mb for target in cpu}
    section.rows.append(Row("CPU per MB (receiving process)", cpu_ms["relay"], cpu_ms["direct"], "ms"))
    section.rows.append(Row("commit (median)", median(commits["relay"]), median(commits["direct"]), "s"))
    section.rows.append(Row("peak RSS of the receiving process", peak_mb, node_peak_mb, "MB"))
    section.bars.append(Bar("upload: relay / direct throughput", relay_mbps / direct_mbps, ">=", 0.90))
    section.bars.append(Bar("upload: relay peak RSS", peak_mb, "<", 150, "MB"))
    section.details = {"files": size["files"], "file_mb": size["mb"], "repetitions": size["repetitions"],
                       "seconds": times, "relay_rss_idle_mb": idle_mb, "relay_rss_peak_mb": peak_mb,
                       "node_rss_peak_mb": node_peak_mb, "cpu_ms_per_mb": cpu_ms,
                       "commit_seconds": commits, "node_flags": NODE_FLAGS}
    return section

