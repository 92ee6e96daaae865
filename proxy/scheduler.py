"""Placement: a pure function from a task's needs and the nodes' states to a decision. No I/O.

Order of concerns: hard limits (online, unlocked, maxImages, estimated memory within what the node
has), then a score (free slots, queue count, memory headroom), then a fair tie-break (the node that was
given a task longest ago). In-flight reservations count against a node until its own `taskQueueCount`
shows the task, so parallel submissions spread out instead of piling onto the first free node. A task may
also be asked to leave slots free in the cluster (`keep_free`): split-merge keeps one for the submodels of
the parents running (see split_merge.py).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum


@dataclass(frozen=True)
class NodeState:
    """What placement knows of one node. Memory in MB; None means the node did not say."""

    id: str
    online: bool = True
    locked: bool = False
    slots: int = 1
    queue: int = 0
    max_images: int | None = None
    total_mb: int | None = None
    available_mb: int | None = None
    reserved_tasks: int = 0
    reserved_mb: int = 0

    @property
    def free_slots(self) -> int:
        return self.slots - self.queue - self.reserved_tasks

    @property
    def headroom_mb(self) -> int | None:
        return None if self.available_mb is None else self.available_mb - self.reserved_mb


@dataclass(frozen=True)
class TaskNeeds:
    """What a task asks of a node. `images` is None while the count is not known yet (at init)."""

    images: int | None
    memory_mb: int = 0


class Outcome(str, Enum):
    PLACE = "place"      # send it to `node_id` now
    WAIT = "wait"        # it fits somewhere, but nobody has room now: keep it in the relay's queue
    REFUSE = "refuse"    # no node could ever take it: tell the client why


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    node_id: str | None = None
    reason: str = ""


def _could_ever_fit(node: NodeState, needs: TaskNeeds) -> bool:
    if needs.images is not None and node.max_images is not None and needs.images > node.max_images:
        return False
    return node.total_mb is None or needs.memory_mb <= node.total_mb


def _fits_now(node: NodeState, needs: TaskNeeds) -> bool:
    headroom = node.headroom_mb
    return (node.online and not node.locked and node.free_slots > 0 and _could_ever_fit(node, needs)
            and (headroom is None or needs.memory_mb <= headroom))


def refusal(needs: TaskNeeds, nodes: Sequence[NodeState]) -> str | None:
    """Why no registered node could ever take this task, or None if one could."""
    if not nodes or any(_could_ever_fit(n, needs) for n in nodes):
        return None
    takes_images = [n for n in nodes if needs.images is None or n.max_images is None or needs.images <= n.max_images]
    if not takes_images:
        limit = max(n.max_images for n in nodes if n.max_images is not None)
        return (f"{needs.images} images is more than any node accepts "
                f"(maxImages: the largest node takes {limit})")
    largest = max(n.total_mb or 0 for n in takes_images)
    which = "the largest node has" if len(takes_images) == len(nodes) else \
        f"the largest node that accepts {needs.images} images (maxImages) has"
    return (f"this task needs about {needs.memory_mb / 1024:.1f} GB of memory for {needs.images} images, "
            f"but {which} {largest / 1024:.1f} GB (totalMemory)")


def leaves_free(nodes: Sequence[NodeState], keep_free: int) -> bool:
    """Whether the cluster (online, unlocked nodes; reservations counted) still has `keep_free` free slots once
    one more task has taken one."""
    return sum(max(n.free_slots, 0) for n in nodes if n.online and not n.locked) - 1 >= keep_free


def place(needs: TaskNeeds, nodes: Sequence[NodeState],
          last_assigned: Mapping[str, float] | None = None, keep_free: int = 0) -> Decision:
    """Choose a node for a task now, or say it must wait, or say it can never run here. With `keep_free`, the
    cluster must still have that many free slots once the task has one."""
    reason = refusal(needs, nodes)
    if reason:
        return Decision(Outcome.REFUSE, reason=reason)
    candidates = [n for n in nodes if _fits_now(n, needs)]
    if not candidates:
        usable = [n for n in nodes if n.online and not n.locked]
        why = "no node is online and unlocked" if not usable else "every node that fits is busy"
        return Decision(Outcome.WAIT, reason=why)
    if keep_free and not leaves_free(nodes, keep_free):
        return Decision(Outcome.WAIT, reason=f"{keep_free} slot(s) kept free for split-merge submodels")
    last = last_assigned or {}

    def score(node: NodeState) -> tuple:
        free_ratio = node.free_slots / max(node.slots, 1)
        headroom = node.headroom_mb if node.headroom_mb is not None else 0
        spare_mb = headroom - needs.memory_mb
        return (-free_ratio, node.queue + node.reserved_tasks, -spare_mb, last.get(node.id, 0.0), node.id)

    best = min(candidates, key=score)
    return Decision(Outcome.PLACE, node_id=best.id)


def forward_target(nodes: Sequence[NodeState], uploads_open: Mapping[str, int],
                   last_assigned: Mapping[str, float] | None = None) -> str | None:
    """The node an upload's files should stream to while they arrive (None: stage them only).

    Nothing is held: an upload that is never committed costs a node nothing, as on NodeODX. So that
    parallel uploads spread out all the same, those already heading to a node count against its free
    slots when choosing among the nodes that have a free slot now."""
    last = last_assigned or {}

    def room(node: NodeState) -> int:
        return node.free_slots - uploads_open.get(node.id, 0)

    candidates = [n for n in nodes if n.online and not n.locked and n.free_slots > 0]
    if not candidates:
        return None
    return min(candidates, key=lambda n: (-room(n) / max(n.slots, 1), n.queue + n.reserved_tasks,
                                          last.get(n.id, 0.0), n.id)).id


@dataclass
class Reservations:
    """In-flight placements per node, counted against it until its own queue count shows them.

    A reservation is taken when a task is sent to a node and settled by the first `/info` of that node
    that was asked for after the task's commit reached it."""

    held: dict[str, dict[str, tuple[int, float | None]]] = field(default_factory=dict)

    def add(self, node_id: str, uuid: str, memory_mb: int) -> None:
        self.held.setdefault(node_id, {})[uuid] = (memory_mb, None)

    def committed(self, uuid: str, at: float) -> None:
        for tasks in self.held.values():
            if uuid in tasks:
                tasks[uuid] = (tasks[uuid][0], at)

    def drop(self, uuid: str) -> None:
        for tasks in self.held.values():
            tasks.pop(uuid, None)

    def settle(self, node_id: str, info_asked_at: float) -> None:
        tasks = self.held.get(node_id, {})
        for uuid, (_, at) in list(tasks.items()):
            if at is not None and at <= info_asked_at:
                del tasks[uuid]

    def apply(self, node: NodeState) -> NodeState:
        tasks = self.held.get(node.id, {})
        return NodeState(**{**node.__dict__, "reserved_tasks": len(tasks),
                            "reserved_mb": sum(mb for mb, _ in tasks.values())})
