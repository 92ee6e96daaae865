"""One client run in a process of its own, for `bench.client`: `python -m bench.client_worker JOB CLIENT URL ...`.

JOB is `upload` (create a task from the files, commit, remove it), `download` (download_zip of a task
into a folder) or `asset` (its orthophoto alone: ours by name, pyodx out of all.zip); CLIENT is `ours`
(`shared.Node`) or `pyodx` (pyodx's `Node`). It imports nothing but the client measured, so the process's
peak RSS is that client's: it prints one JSON line, the seconds the call took, the peak resident memory
(VmHWM) of the whole process and its CPU seconds (user + system), start-up included.
"""
from __future__ import annotations

import json
import resource
import sys
import time
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


def peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def node_for(client: str, url: str):
    if client == "ours":
        from shared import Node
        return Node.from_url(url, timeout=120)
    from pyodx import Node
    parts = urlsplit(url)
    return Node(parts.hostname, parts.port, parse_qs(parts.query).get("token", [""])[0], timeout=120)


def main(argv: list[str]) -> int:
    job, client, url, *rest = argv
    node = node_for(client, url)
    progress: list[float] = []
    size = 0
    if job == "upload":
        files = [str(Path(f)) for f in rest]
        started = time.perf_counter()
        task = node.create_task(files, name=f"bench client {client}", progress_callback=progress.append)
        seconds = time.perf_counter() - started
        task.remove()
    elif job == "download":
        uuid, destination = rest
        task = node.get_task(uuid)
        started = time.perf_counter()
        path = task.download_zip(destination, progress_callback=progress.append)
        seconds = time.perf_counter() - started
        size = Path(path).stat().st_size
        Path(path).unlink()
    elif job == "asset":  # the orthophoto alone: ours asks for it by name; pyodx has all.zip, and takes it out
        uuid, destination = rest
        task = node.get_task(uuid)
        started = time.perf_counter()
        if client == "ours":
            path = task.download_asset("orthophoto.tif", destination, progress_callback=progress.append)
        else:
            zip_path = task.download_zip(destination, progress_callback=progress.append)
            with zipfile.ZipFile(zip_path) as archive:
                path = archive.extract("odm_orthophoto/odm_orthophoto.tif", destination)
            Path(zip_path).unlink()
        seconds = time.perf_counter() - started
        size = Path(path).stat().st_size
        Path(path).unlink()
    else:
        raise SystemExit(f"unknown job {job!r}")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "cpu_seconds": usage.ru_utime + usage.ru_stime,
                      "bytes": size, "progress_calls": len(progress),
                      "last_progress": progress[-1] if progress else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
