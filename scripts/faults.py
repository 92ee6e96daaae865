"""The fault suite (`make faults`, or `python -m scripts.faults [--quick]`): a real cluster per scenario —
`redis-server`, two relay replicas sharing one staging folder, development nodes, a round-robin balancer
in front (or a lone relay on SQLite, the default deployment) — clients creating tasks through the
balancer while something breaks, and a table:

    scenario | submitted | completed | failed with a clear error | lost | overbooked | ran twice |
    duplicate files | kills

A task is *completed* when it ends COMPLETED and its all.zip downloads whole; *failed with a clear error*
when it ends FAILED with an error message, or the relay refused it with one; *lost* otherwise (it
vanished, it hangs, a commit went unanswered for good, or the relay refused a commit that a node has in
fact taken). *overbooked* is the most tasks any node held beyond its slots (its /info, asked every 50 ms):
the relay's queue must hold them instead, so it must be 0.

The last columns are counted on the nodes, not taken from the relay: at the end, once no node queues or
runs anything, each development node's journal of ended runs (`runs.jsonl` in its data folder), the
tasks it still holds and their files say *ran twice* (tasks that ran to completion more than once, on
one node or on several: a ghost copy a node resumed, a commit sent twice) and *duplicate files* (tasks a
node made from a file it received twice, which it renames `name_.ext`, or from more photos than the
client sent). A copy that was canceled and removed before it completed does not count. *kills* is how
many times a replica died at its kill point (the scenarios named after a point of `proxy.crashpoints`:
replicas run with `ODX_FAULT_CRASH_AT=<point>:<n>` and are started again as soon as they die, armed
again until the scenario's kills are spent). The exit status is 1 if any task is lost, a node was
overbooked, a task ran twice or had duplicate files.

Each client behaves as a careful user would: one connection per request (pyodx's way, so init, uploads
and commit land on different replicas), and a request that got no answer or a 503 is sent again; except
that every other client, when a commit's answer is lost, first looks for the task with its info for
LOOK_FIRST seconds and commits again only if the relay still does not know it (so the relay must settle a
commit that reached a node by itself, not only when the client sends it twice).
Everything runs on 127.0.0.1 in a temporary folder, removed at the end unless `--keep`.
"""
from __future__ import annotations

import argparse
import contextlib
import fnmatch
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
from testkit.cluster import Client, Cluster, CrashPlan, NodeAudit, Outcome, audit_nodes, start_cluster
from testkit.servers import ServerGroup

Fault = Callable[[Cluster, threading.Event], None]
#: How long every other client looks for a task with its info, when its commit's answer was lost, before it
#: commits again: a killed replica is back in a second or two and must know by then what its commit did.
LOOK_FIRST = 6.0


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


def revive_crashed(cluster: Cluster, stop: threading.Event) -> None:
    """The kill points' supervisor: a replica that died is started again as soon as it is seen dead (armed
    again while the scenario's kills last)."""
    while not stop.wait(0.05):
        cluster.revive_crashed()


#: How long a returning node stays frozen: past --offline-after checks of --node-timeout each, then past
#: --failover-after, so that its tasks are sent elsewhere (about 6 s with the flags below) and usually done.
FROZEN_SECONDS = 9.0


def node_returns(cluster: Cluster, stop: threading.Event) -> None:
    """Node 0 frozen (SIGSTOP) while it runs tasks, long enough that the relay sends them to node 1, then
    resumed (SIGCONT) with its old copies half run: the relay must cancel and remove those copies before
    they complete. The node is slow (2 s an image), so that each copy has seconds of work left when it comes
    back: time for the relay's next checks. The thaw is never cut short: the audit at the end waits for what
    the node does then."""
    node = cluster.nodes[0]
    deadline, first = time.monotonic() + 30, None
    held = 0
    while not stop.is_set() and time.monotonic() < deadline and held < 2:  # its two slots busy, or soon after one
        with contextlib.suppress(requests.RequestException, ValueError, KeyError, TypeError):
            held = int(requests.get(node.api("/info"), timeout=2).json()["taskQueueCount"])
        first = first or (time.monotonic() if held else None)
        if first and time.monotonic() - first > 1.5:
            break
        time.sleep(0.05)
    if not held:
        cluster.problems.append("node 0 never ran a task: nothing to freeze")
        return
    time.sleep(0.2)  # into the run
    cluster.freeze_node(0)
    time.sleep(FROZEN_SECONDS)
    cluster.thaw_node(0)
    cluster.notes.append(f"node 0 frozen {FROZEN_SECONDS:.0f} s while it held {held} task(s), then resumed")


#: The split-merge scenario's tasks: photos each, and photos per submodel (development nodes play ODM).
SPLIT_PHOTOS, SPLIT = 24, 8


def node_dies_in_submodel(cluster: Cluster, stop: threading.Event) -> None:
    """The first node seen running a submodel (a task of fewer photos than the clients' split tasks), and no
    client's task, is killed -9: its submodel must be sent elsewhere (failover) or taken back by ODM on the
    parent's node, and the parent complete."""
    deadline = time.monotonic() + 60
    while not stop.is_set() and time.monotonic() < deadline:
        for node in cluster.nodes:
            with contextlib.suppress(requests.RequestException, ValueError, KeyError, TypeError):
                infos = [requests.get(node.api(f"/task/{t['uuid']}/info"), timeout=2).json()
                         for t in requests.get(node.api("/task/list"), timeout=2).json()]
                running = [i for i in infos if (i.get("status") or {}).get("code") == 20]
                if running and all(i.get("imagesCount", SPLIT_PHOTOS) < SPLIT_PHOTOS for i in infos):
                    node.process.kill()  # at once: a submodel's round lasts a few seconds
                    node.process.wait(10)
                    cluster.notes.append(f"{node.name} killed -9 while it ran submodel(s) "
                                         f"{', '.join(i['uuid'] for i in running)}")
                    return
        time.sleep(0.1)
    cluster.problems.append("no node ever ran a submodel alone: nothing to kill")


@dataclass
class Scenario:
    name: str
    nodes: list[dict[str, Any]]
    fault: Fault | None = None
    relay_flags: dict[str, Any] = field(default_factory=dict)
    what: str = ""
    fields: dict[str, str] = field(default_factory=dict)  # the clients' init fields (options)
    photos: int = 0  # photos per task (0: 2 to 4 small ones)
    tasks: int | None = None  # tasks per scenario, if not the suite's
    submodels: bool = False  # the nodes make tasks of their own (split-merge): no client committed those
    kill_point: str | None = None  # a point of proxy.crashpoints: replicas die there (see `revive_crashed`)
    nth: int = 1  # ... the nth time a process reaches it
    kills: int = 3  # ... until this many armed starts were spent, per 5 tasks (--quick: 3; 12 tasks: 7)
    redis: bool = True  # two replicas on Redis; False: one relay with its state in SQLite
    ci: bool = True  # run by tests/scale/test_faults.py (all run under `make faults`)

    def crash_plan(self, tasks: int = 5) -> CrashPlan | None:
        kills = max(1, round(self.kills * tasks / 5))
        return CrashPlan(self.kill_point, self.nth, kills) if self.kill_point else None


def kill_point(point: str, nth: int, nodes: list[dict[str, Any]], what: str, redis: bool = True) -> Scenario:
    """A scenario where replicas die at `point` (each process the `nth` time it gets there), 3 times per 5 tasks.
    CI runs every point on two replicas, and on a lone relay the points where a node's answer is at stake."""
    deployment = "two replicas on Redis" if redis else "a lone relay on SQLite"
    return Scenario(f"kill {point}" + ("" if redis else " sqlite"), nodes, kill_point=point, nth=nth, redis=redis,
                    ci=redis or point in SQLITE_IN_CI,
                    what=f"{deployment}, killed -9 {what} (each process the {ordinal(nth)} time it gets there, "
                         f"3 kills per 5 tasks), started again at once")


def ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 < 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


#: The kill points CI also runs on a lone relay on SQLite (the default deployment).
SQLITE_IN_CI = ("in-commit", "mid-dispatch")
#: Where each kill point lands, and the nodes that make the relay go through it.
KILL_POINTS = [
    ("after-init", 2, [{"slots": 2}, {"slots": 2}],
     "once a task is recorded and open on its node, before the client hears its uuid"),
    ("mid-upload", 3, [{"slots": 3}, {"slots": 3}],  # free slots at init: files go on to the node as they come
     "once a file went on to the task's node, before the relay notes it"),
    ("in-commit", 2, [{"slots": 3}, {"slots": 3}],  # free slots at commit: committed where the files went
     "once the node committed a forwarded task, before the relay's record says so"),
    ("mid-dispatch", 2, [{"slots": 1, "seconds_per_image": 0.4}, {"slots": 1, "seconds_per_image": 0.4}],
     "once a file from the relay's queue reached a node, before the relay notes it (one slot per node, "
     "slow tasks: most tasks wait in the relay's queue)"),
    ("at-task-end", 2, [{"slots": 2}, {"slots": 2}],
     "once it hears a task ended, before its slot is freed, the client told and the end recorded"),
]


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
    *(kill_point(point, nth, nodes, what) for point, nth, nodes, what in KILL_POINTS),
    *(kill_point(point, nth, nodes, what, redis=False) for point, nth, nodes, what in KILL_POINTS),
    Scenario("node returns", [{"slots": 2, "seconds_per_image": 2.0}, {"slots": 2}], node_returns,
             relay_flags={"node_timeout": 1.5},
             what=f"a node frozen (SIGSTOP) {FROZEN_SECONDS:.0f} s while it runs tasks, so that the relay sends "
                  "them to the other node, then resumed (SIGCONT): its old copies must be canceled and removed "
                  "before they complete"),
    Scenario("submodel node dies", [{"seconds_per_image": 0.6, "sm_retry_seconds": 1} for _ in range(4)],
             node_dies_in_submodel, redis=False, tasks=2, photos=SPLIT_PHOTOS, submodels=True,
             fields={"options": f'[{{"name": "split", "value": {SPLIT}}}, {{"name": "split-overlap", "value": 30}}]'},
             what=f"split-merge tasks ({SPLIT_PHOTOS} photos, split {SPLIT}) on a lone relay in front of 4 nodes that "
                  "play ODM; the first node seen running only submodels is killed -9: the parents must complete"),
]


@dataclass
class Row:
    scenario: str
    outcomes: list[Outcome]
    seconds: float
    retries: int
    overbooked: int = 0
    problems: list[str] = field(default_factory=list)
    ran_twice: dict[str, list[str]] = field(default_factory=dict)  # uuid -> node of each completed run
    duplicates: dict[str, str] = field(default_factory=dict)  # uuid -> which node had which extra files
    kills: int | None = None  # replicas killed at the scenario's kill point (None: not a kill-point scenario)
    notes: list[str] = field(default_factory=list)  # worth knowing, not counted as a failure

    def count(self, kind: str) -> int:
        return sum(1 for o in self.outcomes if o.kind == kind)

    @property
    def bad(self) -> bool:
        """What makes the suite exit 1: a task lost, a node overbooked, a task run twice or fed a file twice."""
        return bool(self.count("lost") or self.overbooked or self.ran_twice or self.duplicates)


def judge(row: Row, audit: NodeAudit, submodels: bool = False) -> None:
    """Fill the row's node-side counts from the audit of the nodes, and hold the clients' outcomes against it.
    With `submodels`, tasks no client committed are the split-merge parents' own (counted in a note)."""
    sent = {uuid: o.sent for o in row.outcomes for uuid in o.uuids}
    row.ran_twice = audit.ran_twice()
    row.duplicates = audit.duplicate_files(sent)
    for outcome in row.outcomes:  # a commit the relay refused while a node took it: a task nobody can follow
        if outcome.error.startswith("commit refused") and any(audit.ran(u) for u in outcome.uuids):
            outcome.error = f"lost: the relay answered '{outcome.error}', yet a node has the task"
    orphans = sorted(set(audit.completions()) - set(sent))
    if orphans and submodels:
        row.notes.append(f"{len(orphans)} submodel task(s) ran to completion on the nodes")
    elif orphans:
        row.problems.append(f"ran to completion though no client committed it: {', '.join(orphans)}")
    if audit.unsettled:
        row.problems.append("still queued or running on a node after every client saw its end: "
                            + "; ".join(audit.unsettled))
    staged = audit.duplicate_files(sent, uploads=True)
    if staged:
        row.notes.append(f"{len(staged)} upload(s) a node got a file twice for, never committed there: "
                         + "; ".join(f"{u}: {why}" for u, why in sorted(staged.items())))
    left = {uuid: nodes for uuid, nodes in audit.held_by().items() if len(nodes) > 1}
    if left:
        row.notes.append(f"{len(left)} task(s) still held by more than one node at the end: "
                         + "; ".join(f"{u}: {', '.join(n)}" for u, n in sorted(left.items())))


def run_scenario(scenario: Scenario, root: Path, images: list[Path], tasks: int, gap: float,
                 timeout: float) -> Row:
    tasks = scenario.tasks or tasks
    if scenario.photos:
        images = make_samples(root / "photos", count=scenario.photos)
    """Start the cluster, let `tasks` clients create a task each (one every `gap` seconds) while the
    fault runs, follow each task to its end, stop everything."""
    started = time.monotonic()
    group = ServerGroup(root)
    crash = scenario.crash_plan(tasks)
    cluster = start_cluster(root, group, [{"seconds_per_image": 0.05, **n} for n in scenario.nodes],
                            replicas=2 if scenario.redis else 1, with_redis=scenario.redis, crash=crash,
                            **scenario.relay_flags)
    stop = threading.Event()
    clients = [Client(cluster.url, look_first=LOOK_FIRST if i % 2 else 0.0) for i in range(tasks)]
    problems: list[str] = []
    action = scenario.fault or (revive_crashed if crash else None)

    def break_things() -> None:
        try:
            action(cluster, stop)
        except Exception as exc:  # noqa: BLE001 (a restart that failed must show in the report, not vanish)
            problems.append(f"the fault itself failed: {type(exc).__name__}: {str(exc)[:300]}")

    fault = threading.Thread(target=break_things, daemon=True) if action else None
    excess = [0]  # most tasks any node held beyond its slots: the relay must never overbook a node
    watchers = [threading.Thread(target=watch_slots, args=(node, stop, excess), daemon=True) for node in cluster.nodes]
    audit = NodeAudit()
    try:
        for watcher in watchers:
            watcher.start()
        if fault:
            fault.start()

        def one(i: int) -> Outcome:
            time.sleep(i * gap)
            return clients[i].run(images if scenario.photos else images[: 2 + i % 3], timeout, scenario.fields)

        with ThreadPoolExecutor(tasks) as pool:
            outcomes = list(pool.map(one, range(tasks)))
        stop.set()
        if fault:
            fault.join(60)
        if crash:
            cluster.revive_crashed(arm=False)  # every replica up while the nodes settle (a ghost to cancel)
        audit = audit_nodes(cluster.nodes)
    finally:
        stop.set()
        if fault:
            fault.join(30)
        for watcher in watchers:
            watcher.join(10)
        cluster.close()
    row = Row(scenario.name, outcomes, time.monotonic() - started, sum(c.retries for c in clients), excess[0],
              problems + cluster.problems, kills=cluster.kills if crash else None, notes=list(cluster.notes))
    judge(row, audit, scenario.submodels)
    if crash and not cluster.kills:
        row.problems.append(f"no replica ever reached {crash.point} {crash.nth} times: the scenario tested nothing")
    return row


def watch_slots(node: Any, stop: threading.Event, excess: list[int]) -> None:
    """Ask a live node's /info every 50 ms; keep the largest taskQueueCount - maxParallelTasks seen (a thread
    per node: a frozen node does not hold up the others' watch)."""
    while not stop.wait(0.05):
        with contextlib.suppress(requests.RequestException, ValueError, KeyError, TypeError):
            info = requests.get(node.api("/info"), timeout=2).json()
            excess[0] = max(excess[0], int(info["taskQueueCount"]) - int(info["maxParallelTasks"]))


def table(rows: list[Row]) -> str:
    head = f"{'scenario':<25} {'submitted':>9} {'completed':>9} {'failed (clear error)':>20} {'lost':>4} " \
           f"{'overbooked':>10} {'ran twice':>9} {'duplicate files':>15} {'kills':>5} {'retries':>7} {'seconds':>7}"
    lines = [head, "-" * len(head)]
    for row in rows:
        kills = "-" if row.kills is None else row.kills
        lines.append(f"{row.scenario:<25} {len(row.outcomes):>9} {row.count('completed'):>9} "
                     f"{row.count('failed'):>20} {row.count('lost'):>4} {row.overbooked:>10} "
                     f"{len(row.ran_twice):>9} {len(row.duplicates):>15} {kills:>5} {row.retries:>7} "
                     f"{row.seconds:>7.1f}")
    lines += [f"{row.scenario}: {problem}" for row in rows for problem in row.problems]
    lines += [f"{row.scenario}: ran twice: {uuid} completed on {', '.join(nodes)}"
              for row in rows for uuid, nodes in sorted(row.ran_twice.items())]
    lines += [f"{row.scenario}: duplicate files: {uuid} on {why}"
              for row in rows for uuid, why in sorted(row.duplicates.items())]
    lines += [f"{row.scenario}: note: {note}" for row in rows for note in row.notes]
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
    chosen = [s for s in SCENARIOS if not only or any(fnmatch.fnmatchcase(s.name, name) for name in only)]
    if not chosen:
        raise SystemExit(f"no scenario matches {only}; scenarios: {', '.join(s.name for s in SCENARIOS)}")
    base = Path(root or tempfile.mkdtemp(prefix="odx-faults-"))
    base.mkdir(parents=True, exist_ok=True)
    images = make_samples(base / "samples", count=4)
    rows = []
    try:
        for number, scenario in enumerate(chosen):
            print(f"... {scenario.name}: {scenario.what}", file=out, flush=True)
            rows.append(run_scenario(scenario, base / f"{number}-{scenario.name.replace(' ', '-')}", images,
                                     tasks, gap, timeout))
    finally:
        bad = any(r.bad for r in rows)
        if not keep and not bad:
            shutil.rmtree(base, ignore_errors=True)
    print("\n" + table(rows), file=out)
    if any(r.count("failed") or r.count("lost") for r in rows):
        print("\nwhy tasks did not complete:\n" + details(rows), file=out)
    if bad:
        print(f"\nLOST TASKS, OVERBOOKED NODES, TASKS RUN TWICE OR FED A FILE TWICE: logs and state kept in {base}",
              file=out)
    out.flush()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.faults",
        description="The fault suite: for each scenario, a real cluster (redis-server, two relay replicas, "
                    "development nodes, a balancer; or a lone relay on SQLite) that clients use while something "
                    "breaks (nodes, Redis, replicas killed -9, also at each step of the task protocol; a node "
                    "frozen, then back); prints tasks submitted, completed, failed with a clear error, lost, "
                    "and, counted on the nodes, tasks that ran twice or got a file twice. Exits 1 if a task is "
                    "lost, a node was overbooked, a task ran twice or got a file twice.")
    parser.add_argument("--quick", action="store_true", help="5 tasks per scenario instead of 12 (for CI)")
    parser.add_argument("--only", action="append", metavar="SCENARIO",
                        help="run only this scenario (repeatable; shell-style wildcards: 'kill *' runs every "
                             "kill point): " + ", ".join(s.name for s in SCENARIOS))
    parser.add_argument("--dir", type=Path, help="where to put the clusters' data and logs (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the data and logs even when nothing is lost")
    args = parser.parse_args(argv)
    rows = run(args.quick, args.only, args.dir, args.keep)
    return 1 if any(r.bad for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
