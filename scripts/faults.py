"""The fault suite (`make faults`, or `python -m scripts.faults [--quick]`): a real cluster per scenario —
`redis-server`, two relay replicas sharing one staging folder, development nodes, a round-robin balancer
in front — clients creating tasks through the balancer while something breaks, and a table:

    scenario | submitted | completed | failed with a clear error | lost | overbooked

A task is *completed* when it ends COMPLETED and its all.zip downloads whole; *failed with a clear error*
when it ends FAILED with an error message, or the relay refused it with one; *lost* otherwise (it
vanished, it hangs, a commit went unanswered for good). *overbooked* is the most tasks any node held
beyond its slots (its /info, asked every 50 ms): the relay's queue must hold them instead, so it must be 0.
The exit status is 1 if any task is lost or any node overbooked.

Each client behaves as a careful user would: one connection per request (pyodx's way, so init, uploads
and commit land on different replicas), and a request that got no answer or a 503 is sent again.
Everything runs on 127.0.0.1 in a temporary folder, removed at the end unless `--keep`.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import requests

from devnode.samples import make_samples
from testkit.cluster import Client, Cluster, Outcome, start_cluster
from testkit.servers import ServerGroup

Fault = Callable[[Cluster, threading.Event], None]


def after(seconds: float, stop: threading.Event) -> bool:
    """Sleep `seconds` unless the run ends first; True if it is still going."""
    return not stop.wait(seconds)


def kill_and_restart_replicas(cluster: Cluster, stop: threading.Event) -> None:
    """Replica 0 killed -9 while tasks are uploaded, back 1.5 s later; then replica 1, while tasks run."""
    for index, at in ((0, 0.8), (1, 1.5)):
        if not after(at, stop):
            return
        cluster.kill_replica(index)
        after(1.5, stop)
        cluster.restart_replica(index)


def kill_and_restart_redis(cluster: Cluster, stop: threading.Event) -> None:
    """Redis killed -9 while tasks are uploaded and run, back (same port, same append-only file) 2 s later."""
    if after(1.0, stop):
        cluster.kill_redis()
        after(2.0, stop)
        cluster.restart_redis()


def everything(cluster: Cluster, stop: threading.Event) -> None:
    """A replica and Redis killed and restarted, on a cluster whose nodes die and drop uploads."""
    if after(0.8, stop):
        cluster.kill_replica(0)
        after(1.0, stop)
        cluster.kill_redis()
        after(1.5, stop)
        cluster.restart_redis()
        cluster.restart_replica(0)


@dataclass
class Scenario:
    name: str
    nodes: list[dict[str, Any]]
    fault: Fault | None = None
    relay_flags: dict[str, Any] = field(default_factory=dict)
    what: str = ""


SCENARIOS = [
    Scenario("baseline", [{}, {}], what="nothing breaks: the yardstick"),
    Scenario("nodes killed", [{"die_after": 2, "seconds_per_image": 0.3}, {"die_after": 3, "seconds_per_image": 0.3},
                              {"slots": 2}],
             what="two of three nodes exit half way through their 2nd/3rd task (--die-after); their tasks "
                  "are sent again after --failover-after (a task done just before its node died has its "
                  "outputs gone with it: the relay refuses all.zip with the reason)"),
    Scenario("nodes slowed", [{"seconds_per_image": 0.5}, {"seconds_per_image": 0.25}, {}],
             what="nodes 10x and 5x slower than the third"),
    Scenario("uploads dropped", [{"drop_uploads": 0.3}, {"drop_uploads": 0.6}],
             what="nodes answer 30 % and 60 % of uploads with HTTP 500 (--drop-uploads)"),
    Scenario("tasks failing", [{"fail_tasks": True}, {}],
             what="one node fails every task half way (--fail-tasks): those must fail with a clear error"),
    Scenario("replica killed", [{}, {"slots": 2}], kill_and_restart_replicas,
             what="each relay replica in turn killed -9 and started again"),
    Scenario("redis killed", [{}, {"slots": 2}], kill_and_restart_redis,
             what="redis-server killed -9 and started again on its append-only file"),
    Scenario("all at once", [{"die_after": 3, "seconds_per_image": 0.3}, {"drop_uploads": 0.3}, {"slots": 2}],
             everything,
             what="a node dies, another drops uploads, a replica and Redis are killed and restarted"),
]


@dataclass
class Row:
    scenario: str
    outcomes: list[Outcome]
    seconds: float
    retries: int
    overbooked: int = 0
    problems: list[str] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(1 for o in self.outcomes if o.kind == kind)


def run_scenario(scenario: Scenario, root: Path, images: list[Path], tasks: int, gap: float,
                 timeout: float) -> Row:
    """Start the cluster, let `tasks` clients create a task each (one every `gap` seconds) while the
    fault runs, follow each task to its end, stop everything."""
    started = time.monotonic()
    group = ServerGroup(root)
    cluster = start_cluster(root, group, [{"seconds_per_image": 0.05, **n} for n in scenario.nodes], replicas=2,
                            **scenario.relay_flags)
    stop = threading.Event()
    clients = [Client(cluster.url) for _ in range(tasks)]
    problems: list[str] = []

    def break_things() -> None:
        try:
            scenario.fault(cluster, stop)
        except Exception as exc:  # noqa: BLE001 (a restart that failed must show in the report, not vanish)
            problems.append(f"the fault itself failed: {type(exc).__name__}: {str(exc)[:300]}")

    fault = threading.Thread(target=break_things, daemon=True) if scenario.fault else None
    excess = [0]  # most tasks any node held beyond its slots: the relay must never overbook a node
    watcher = threading.Thread(target=watch_slots, args=(cluster, stop, excess), daemon=True)
    try:
        watcher.start()
        if fault:
            fault.start()

        def one(i: int) -> Outcome:
            time.sleep(i * gap)
            return clients[i].run(images[: 2 + i % 3], timeout)

        with ThreadPoolExecutor(tasks) as pool:
            outcomes = list(pool.map(one, range(tasks)))
    finally:
        stop.set()
        if fault:
            fault.join(30)
        watcher.join(10)
        cluster.close()
    return Row(scenario.name, outcomes, time.monotonic() - started, sum(c.retries for c in clients), excess[0],
               problems)


def watch_slots(cluster: Cluster, stop: threading.Event, excess: list[int]) -> None:
    """Ask every live node's /info every 50 ms; keep the largest taskQueueCount - maxParallelTasks seen."""
    while not stop.wait(0.05):
        for node in cluster.nodes:
            with contextlib.suppress(requests.RequestException, ValueError, KeyError, TypeError):
                info = requests.get(node.api("/info"), timeout=2).json()
                excess[0] = max(excess[0], int(info["taskQueueCount"]) - int(info["maxParallelTasks"]))


def table(rows: list[Row]) -> str:
    head = f"{'scenario':<16} {'submitted':>9} {'completed':>9} {'failed (clear error)':>20} {'lost':>4} " \
           f"{'overbooked':>10} {'retries':>7} {'seconds':>7}"
    lines = [head, "-" * len(head)]
    for row in rows:
        lines.append(f"{row.scenario:<16} {len(row.outcomes):>9} {row.count('completed'):>9} "
                     f"{row.count('failed'):>20} {row.count('lost'):>4} {row.overbooked:>10} {row.retries:>7} "
                     f"{row.seconds:>7.1f}")
    lines += [f"{row.scenario}: {problem}" for row in rows for problem in row.problems]
    miscounted = [f"{row.scenario} ({sum(o.miscounted for o in row.outcomes)})" for row in rows
                  if any(o.miscounted for o in row.outcomes)]
    if miscounted:
        lines.append("tasks whose node counted another number of images than was sent: " + ", ".join(miscounted))
    return "\n".join(lines)


def details(rows: list[Row]) -> str:
    """The errors behind 'failed' and 'lost', each distinct message once with its count."""
    lines = []
    for row in rows:
        messages = Counter(f"{o.kind}: {o.error}" for o in row.outcomes if o.kind != "completed")
        for message, count in sorted(messages.items()):
            lines.append(f"  {row.scenario}: {count} x {message[:300]}")
    return "\n".join(lines)


def run(quick: bool = False, only: list[str] | None = None, root: Path | None = None, keep: bool = False,
        out=sys.stdout) -> list[Row]:
    tasks, gap, timeout = (5, 0.35, 60.0) if quick else (12, 0.3, 120.0)
    base = Path(root or tempfile.mkdtemp(prefix="odx-faults-"))
    base.mkdir(parents=True, exist_ok=True)
    images = make_samples(base / "samples", count=4)
    rows = []
    try:
        for number, scenario in enumerate(s for s in SCENARIOS if not only or s.name in only):
            print(f"... {scenario.name}: {scenario.what}", file=out, flush=True)
            rows.append(run_scenario(scenario, base / f"{number}-{scenario.name.replace(' ', '-')}", images,
                                     tasks, gap, timeout))
    finally:
        bad = any(r.count("lost") or r.overbooked for r in rows)
        if not keep and not bad:
            shutil.rmtree(base, ignore_errors=True)
    print("\n" + table(rows), file=out)
    if any(r.count("failed") or r.count("lost") for r in rows):
        print("\nwhy tasks did not complete:\n" + details(rows), file=out)
    if bad:
        print(f"\nLOST TASKS OR OVERBOOKED NODES: logs and state kept in {base}", file=out)
    out.flush()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.faults",
        description="The fault suite: for each scenario, a real cluster (redis-server, two relay replicas, "
                    "development nodes, a balancer) that clients use while something breaks; prints tasks "
                    "submitted, completed, failed with a clear error, lost. Exits 1 if a task is lost or a node "
                    "was overbooked.")
    parser.add_argument("--quick", action="store_true", help="5 tasks per scenario instead of 12 (for CI)")
    parser.add_argument("--only", action="append", metavar="SCENARIO",
                        help="run only this scenario (repeatable): " + ", ".join(s.name for s in SCENARIOS))
    parser.add_argument("--dir", type=Path, help="where to put the clusters' data and logs (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the data and logs even when nothing is lost")
    args = parser.parse_args(argv)
    rows = run(args.quick, args.only, args.dir, args.keep)
    return 1 if any(r.count("lost") or r.overbooked for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
