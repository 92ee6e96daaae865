"""10. Split-merge across the cluster (issue 12): one large task's makespan on 4 nodes through the relay, split
into one submodel per node, against the same task on one node.

Development nodes play ODM's part: the parent's node splits the photos by position, sends submodels back
through the relay's `sm-cluster` (pyodx, as ODM's LocalRemoteExecutor does), processes one itself at a time
and merges. A node's processing time is proportional to its photos (`--seconds-per-image`), so the ideal
ratio is 1/4 plus the merge, the two rounds' round trips and the uploads of submodels through the relay.
Makespan: from the start of the upload to COMPLETED, each run once on fresh nodes. Full mode gives a node
0.5 s a photo (the one-node run lasts about 3.5 minutes): real ODM takes seconds a photo, and the development
node's output building (real rasters, CPU time that does not shrink with the simulated time and that the
four nodes share this machine's cores for) must stay small beside it, as the uploads and the relay's own
costs stay small beside real processing. The bar: split-merge / one node ≤ 0.35.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import requests

from testkit.devnode import start_devnode
from testkit.relay import start_relay
from testkit.servers import ServerGroup

from .context import Context
from .report import Bar, Row, Section
from .stack import samples

NODES = 4
SIZES = {"full": (400, 0.5), "quick": (24, 0.05)}  # photos, seconds per photo on a node
GOAL = 0.35
UPLOAD_BATCH = 20


def makespan(url: str, photos: list[Path], options: dict[str, Any], timeout: float) -> tuple[float, dict]:
    """init, upload (in batches), commit, then poll until the task ends: seconds, and its last info (with
    every submodel node the relay named while it ran, under `nodes_seen`)."""
    started = time.monotonic()
    fields = {"name": (None, "bench split-merge"),
              "options": (None, json.dumps([{"name": k, "value": v} for k, v in options.items()]))}
    uuid = requests.post(f"{url}/task/new/init", files=fields, timeout=60).json()["uuid"]
    for first in range(0, len(photos), UPLOAD_BATCH):
        batch = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in photos[first:first + UPLOAD_BATCH]]
        assert requests.post(f"{url}/task/new/upload/{uuid}", files=batch, timeout=120).json() == {"success": True}
    assert requests.post(f"{url}/task/new/commit/{uuid}", timeout=120).json() == {"uuid": uuid}
    seen: set[str] = set()
    while time.monotonic() - started < timeout:
        info = requests.get(f"{url}/task/{uuid}/info", timeout=30).json()
        seen |= {s["node"] for s in info.get("relaySubmodels", []) if s.get("node")}
        if info["status"]["code"] in (30, 40, 50):
            return time.monotonic() - started, {**info, "nodes_seen": sorted(seen)}
        time.sleep(0.2)
    raise TimeoutError(f"task {uuid} did not end within {timeout:.0f} s")


def run(ctx: Context) -> Section:
    count, seconds_per_image = SIZES[ctx.mode]
    photos = samples(ctx.cache, count)
    flags = {"seconds_per_image": seconds_per_image, "sm_retry_seconds": 1}
    timeout = 60 + 4 * count * seconds_per_image
    split = {"split": -(-count // NODES), "split-overlap": 30}
    for folder in ("splitmerge", "splitmerge-one"):
        (ctx.scratch / folder).mkdir(parents=True, exist_ok=True)
    with ServerGroup(ctx.scratch / "splitmerge") as group:
        nodes = [group.start(start_devnode, **flags) for _ in range(NODES)]
        relay = group.add(start_relay(group.tmp_path, [n.url for n in nodes], check_interval=0.5))
        split_seconds, split_info = makespan(relay.url, photos, split, timeout)
    with ServerGroup(ctx.scratch / "splitmerge-one") as group:
        one_seconds, one_info = makespan(group.start(start_devnode, **flags).url, photos, {}, timeout)
    for what, info in (("split-merge", split_info), ("one node", one_info)):
        if info["status"]["code"] != 40:
            raise RuntimeError(f"the {what} task did not complete: {json.dumps(info)[:300]}")
    ratio = split_seconds / one_seconds
    return Section("splitmerge", f"split-merge: {count} photos on {NODES} nodes through the relay vs one node", rows=[
        Row(f"makespan, {count} photos (split {split['split']})", round(split_seconds, 2), round(one_seconds, 2),
            "s", node="devnode")],
        bars=[Bar("split-merge makespan / one node", round(ratio, 3), "<=", GOAL, node="devnode")],
        details={"photos": count, "nodes": NODES, "seconds_per_image": seconds_per_image, "split": split,
                 "split_merge_seconds": round(split_seconds, 2), "one_node_seconds": round(one_seconds, 2),
                 "ideal_ratio": 1 / NODES, "submodel_nodes_seen": len(split_info["nodes_seen"])})

