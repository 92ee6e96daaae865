"""5. Placement in simulation: the relay's own `proxy.scheduler.place` against ClusterODX and WebODM.

A discrete-event simulation of a heterogeneous cluster (4 nodes with different slots, memory and
`maxImages`) fed a seeded mixed workload (200 tasks of 20 to 3000 images, log-uniform sizes, Poisson
arrivals). A task's work grows with its image count; a node runs up to `slots` tasks at once, in the
order they were queued on it, and reports what a node reports (queue count = queued + running,
available memory = total minus the estimates of what runs, by `shared.memory.estimate_memory_mb`).

- relay: every task waits in the relay's queue and runs only once `place()` puts it on a node, oldest
  first with backfill, re-tried at every arrival and every end (as `proxy.dispatch` does);
- clusterodx / webodm: each task is pushed into one node's queue on arrival (`bench.baselines`).

A memory overcommit (the estimates of a node's running tasks add up to more than its memory) is
counted at each task start that causes it. Its cost is modelled charitably for the baselines: a real
ODM process that lacks memory thrashes in swap or is killed by the OOM killer ("exited with code
137"); here an overcommitted node merely does the work of one task at a time (its n running tasks
each progress at 1/n speed) until it is within its memory again, and every task completes. The
details also give the makespans as if overcommits cost nothing at all (the baselines' best case).
Bars: zero overcommits for the relay; its makespan shorter than each baseline's.
"""
from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from proxy.scheduler import NodeState, Outcome, TaskNeeds, place
from shared.memory import MB_PER_GB, estimate_memory_mb

from .baselines import BASELINES
from .context import Context
from .report import Bar, Row, Section

#: (id, slots, memory GB, maxImages or None)
CLUSTER: tuple[tuple[str, int, int, int | None], ...] = (
    ("small", 4, 32, 400),
    ("medium", 3, 64, 1500),
    ("large", 2, 128, 2500),
    ("huge", 2, 192, None),
)
TASKS, MIN_IMAGES, MAX_IMAGES = 200, 20, 3000
SECONDS_PER_IMAGE, TASK_OVERHEAD_S = 2.0, 30.0
MEAN_ARRIVAL_GAP_S = 60.0
SEEDS = {"full": 10, "quick": 3}
EPSILON = 1e-6


@dataclass(frozen=True)
class SimTask:
    id: int
    arrival: float
    images: int
    memory_mb: int

    @property
    def work(self) -> float:
        return TASK_OVERHEAD_S + SECONDS_PER_IMAGE * self.images


def workload(seed: int, count: int = TASKS) -> list[SimTask]:
    rng = random.Random(seed)
    tasks, clock = [], 0.0
    for i in range(count):
        images = int(round(math.exp(rng.uniform(math.log(MIN_IMAGES), math.log(MAX_IMAGES)))))
        tasks.append(SimTask(i, clock, images, estimate_memory_mb(images)))
        clock += rng.expovariate(1 / MEAN_ARRIVAL_GAP_S)
    return tasks


@dataclass
class SimNode:
    id: str
    slots: int
    memory_mb: int
    max_images: int | None
    queue: deque = field(default_factory=deque)
    running: dict[int, float] = field(default_factory=dict)  # task id -> work left (seconds at full speed)
    committed_mb: int = 0

    def rate(self, overcommit_costs: bool) -> float:
        """Speed of each running task: 1, or 1/n on a node whose n tasks need more than its memory."""
        if overcommit_costs and self.committed_mb > self.memory_mb:
            return 1.0 / len(self.running)
        return 1.0

    def state(self) -> NodeState:
        return NodeState(id=self.id, slots=self.slots, queue=len(self.running) + len(self.queue),
                         max_images=self.max_images, total_mb=self.memory_mb,
                         available_mb=max(0, self.memory_mb - self.committed_mb))


@dataclass
class SimResult:
    policy: str
    makespan: float = 0.0
    overcommits: int = 0
    overcommitted_node_seconds: float = 0.0
    refused: int = 0
    finished: dict[int, float] = field(default_factory=dict)
    mean_turnaround: float = 0.0


class Simulation:
    """One policy on one workload. `choose` is None for the relay (placement by `place()`);
    `overcommit_costs` False makes an overcommit free (the node runs at full speed anyway)."""

    def __init__(self, policy: str, tasks: Sequence[SimTask],
                 choose: Callable[[int, Sequence[NodeState]], str | None] | None, overcommit_costs: bool = True):
        self.nodes = {n: SimNode(n, slots, gb * MB_PER_GB, limit) for n, slots, gb, limit in CLUSTER}
        self.tasks = {t.id: t for t in tasks}
        self.arrivals = deque(sorted(tasks, key=lambda t: t.arrival))
        self.choose = choose
        self.overcommit_costs = overcommit_costs
        self.waiting: list[SimTask] = []  # the relay's own queue
        self.last_assigned: dict[str, float] = {}
        self.now = 0.0
        self.result = SimResult(policy)

    def run(self) -> SimResult:
        while self.arrivals or self.waiting or any(n.running or n.queue for n in self.nodes.values()):
            upcoming = [self.arrivals[0].arrival] if self.arrivals else []
            upcoming += [self.now + left / n.rate(self.overcommit_costs)
                         for n in self.nodes.values() for left in n.running.values()]
            if not upcoming:
                raise RuntimeError(f"{self.result.policy}: {len(self.waiting)} task(s) wait that no node will run")
            self._advance(min(upcoming))
            while self.arrivals and self.arrivals[0].arrival <= self.now + EPSILON:
                self._submit(self.arrivals.popleft())
            self._dispatch()
        finished = self.result.finished
        self.result.makespan = max(finished.values()) - min(t.arrival for t in self.tasks.values())
        self.result.mean_turnaround = sum(finished[i] - self.tasks[i].arrival for i in finished) / len(finished)
        return self.result

    def _advance(self, until: float) -> None:
        step = until - self.now
        for node in self.nodes.values():
            rate = node.rate(self.overcommit_costs)
            if node.committed_mb > node.memory_mb:
                self.result.overcommitted_node_seconds += step
            for task_id in list(node.running):
                node.running[task_id] -= step * rate
                if node.running[task_id] <= EPSILON:
                    del node.running[task_id]
                    node.committed_mb -= self.tasks[task_id].memory_mb
                    self.result.finished[task_id] = until
        self.now = until

    def _submit(self, task: SimTask) -> None:
        if self.choose is None:
            self.waiting.append(task)
            return
        node_id = self.choose(task.images, [n.state() for n in self.nodes.values()])
        if node_id is None:
            self.result.refused += 1
        else:
            self.nodes[node_id].queue.append(task)

    def _dispatch(self) -> None:
        for task in list(self.waiting):  # oldest first; one that must wait does not block the rest
            states = [n.state() for n in self.nodes.values()]
            decision = place(TaskNeeds(task.images, task.memory_mb), states, self.last_assigned)
            if decision.outcome == Outcome.WAIT:
                continue
            self.waiting.remove(task)
            if decision.outcome == Outcome.REFUSE:
                self.result.refused += 1
                continue
            self.last_assigned[decision.node_id] = self.now + len(self.last_assigned) * EPSILON
            self.nodes[decision.node_id].queue.append(task)
            self._start_queued(self.nodes[decision.node_id])
        for node in self.nodes.values():
            self._start_queued(node)

    def _start_queued(self, node: SimNode) -> None:
        """A node starts what it holds, first in first out, while it has a free slot (memory unseen)."""
        while node.queue and len(node.running) < node.slots:
            task = node.queue.popleft()
            node.running[task.id] = task.work
            node.committed_mb += task.memory_mb
            if node.committed_mb > node.memory_mb:
                self.result.overcommits += 1


def simulate(policy: str, tasks: Sequence[SimTask], overcommit_costs: bool = True) -> SimResult:
    return Simulation(policy, tasks, None if policy == "relay" else BASELINES[policy], overcommit_costs).run()


def run(ctx: Context) -> Section:
    """Pure computation: no servers, no files."""
    section = Section("placement", f"Placement simulation: {len(CLUSTER)} nodes, {TASKS} tasks of "
                                   f"{MIN_IMAGES}-{MAX_IMAGES} images")
    policies = ("relay", *BASELINES)
    by_seed = {seed: {p: simulate(p, workload(seed)) for p in policies} for seed in range(SEEDS[ctx.mode])}
    free = {p: simulate(p, workload(0), overcommit_costs=False) for p in policies}
    main = by_seed[0]
    relay = main["relay"]
    hours = 3600.0
    for name in BASELINES:
        section.rows.append(Row(f"makespan vs {name}", relay.makespan / hours, main[name].makespan / hours, "h"))
    for name in BASELINES:
        section.rows.append(Row(f"mean turnaround vs {name}", relay.mean_turnaround / hours,
                                main[name].mean_turnaround / hours, "h"))
    for name in BASELINES:
        section.rows.append(Row(f"memory overcommits vs {name}", relay.overcommits, main[name].overcommits))
    section.bars.append(Bar("placement: relay memory overcommits", relay.overcommits, "==", 0, ""))
    for name in BASELINES:
        section.bars.append(Bar(f"placement: relay / {name} makespan", relay.makespan / main[name].makespan, "<", 1.0))
    wins = {name: sum(1 for runs in by_seed.values() if runs["relay"].makespan < runs[name].makespan)
            for name in BASELINES}

    def summary(result: SimResult) -> dict:
        return {"makespan_h": result.makespan / hours, "mean_turnaround_h": result.mean_turnaround / hours,
                "overcommits": result.overcommits, "refused": result.refused,
                "overcommitted_node_hours": result.overcommitted_node_seconds / hours}

    section.details = {
        "cluster": [dict(zip(("id", "slots", "memory_gb", "max_images"), n)) for n in CLUSTER],
        "model": {"tasks": TASKS, "images": [MIN_IMAGES, MAX_IMAGES], "sizes": "log-uniform",
                  "work_seconds": f"{TASK_OVERHEAD_S:g} + {SECONDS_PER_IMAGE:g} * images",
                  "mean_arrival_gap_seconds": MEAN_ARRIVAL_GAP_S,
                  "overcommit_cost": "an overcommitted node's n running tasks each progress at 1/n speed"},
        "seeds": {seed: {p: summary(r) for p, r in runs.items()} for seed, runs in by_seed.items()},
        "relay_shorter_makespan_in_seeds": {name: f"{won}/{len(by_seed)}" for name, won in wins.items()},
        "relay_overcommits_all_seeds": sum(runs["relay"].overcommits for runs in by_seed.values()),
        "seed0_if_overcommits_were_free": {p: summary(r) for p, r in free.items()},
    }
    return section
