"""Placement tables for proxy.scheduler: pure data in, a decision out (no servers, no I/O)."""
from __future__ import annotations

import pytest

from proxy.scheduler import Decision, NodeState, Outcome, Reservations, TaskNeeds, place, refusal
from shared.memory import estimate_memory_mb

GB = 1024


def node(id: str, **kw) -> NodeState:
    kw.setdefault("slots", 1)
    kw.setdefault("total_mb", 16 * GB)
    kw.setdefault("available_mb", 14 * GB)
    return NodeState(id=id, **kw)


def needs(images: int | None, memory_gb: float = 2) -> TaskNeeds:
    return TaskNeeds(images, int(memory_gb * GB))


# --- hard limits --------------------------------------------------------------------------------
@pytest.mark.parametrize("nodes,task,expected", [
    # online, unlocked: the only candidate wins whatever its score
    ([node("a", online=False), node("b")], needs(10), "b"),
    ([node("a", locked=True), node("b", queue=0)], needs(10), "b"),
    # maxImages: a node that takes fewer images is no candidate; None means no limit
    ([node("a", max_images=5, slots=4), node("b", max_images=50)], needs(10), "b"),
    ([node("a", max_images=10), node("b", max_images=None, queue=0, slots=2)], needs(10), "a"),
    ([node("a", max_images=5), node("b", max_images=None)], needs(500), "b"),
    # at init the image count is unknown: maxImages does not rule a node out yet
    ([node("a", max_images=5, slots=2), node("b", max_images=500)], needs(None, 0), "a"),
    # memory: the estimate must fit the node's available memory (less what is reserved)
    ([node("a", available_mb=3 * GB, slots=4), node("b", available_mb=10 * GB)], needs(100, 8), "b"),
    ([node("a", available_mb=10 * GB, reserved_mb=4 * GB, slots=4), node("b", available_mb=7 * GB)],
     needs(100, 7), "b"),
    # a node that does not report memory is not limited by it
    ([node("a", total_mb=None, available_mb=None, slots=2), node("b", available_mb=1 * GB)], needs(100, 8), "a"),
])
def test_hard_limits(nodes: list[NodeState], task: TaskNeeds, expected: str) -> None:
    assert place(task, nodes) == Decision(Outcome.PLACE, node_id=expected)


# --- score and tie-break --------------------------------------------------------------------------
@pytest.mark.parametrize("nodes,expected", [
    # the larger share of free slots first
    ([node("a", slots=2, queue=1), node("b", slots=2, queue=0)], "b"),
    ([node("a", slots=4, queue=3), node("b", slots=1, queue=0)], "b"),
    ([node("a", slots=4, queue=0), node("b", slots=4, queue=0, reserved_tasks=1)], "a"),
    # same share: the shorter queue (queue plus in-flight reservations)
    ([node("a", slots=4, queue=2), node("b", slots=2, queue=1)], "b"),
    # same share and queue: more memory to spare after the task
    ([node("a", available_mb=8 * GB), node("b", available_mb=12 * GB)], "b"),
    ([node("a", available_mb=12 * GB, reserved_mb=6 * GB), node("b", available_mb=8 * GB)], "b"),
    # all equal: the node id decides, never the list order (stable across replicas)
    ([node("b"), node("a")], "a"),
])
def test_score(nodes: list[NodeState], expected: str) -> None:
    assert place(needs(20), nodes).node_id == expected


@pytest.mark.parametrize("last_assigned,expected", [
    ({}, "a"),
    ({"a": 10.0}, "b"),                 # b never had one: b
    ({"a": 10.0, "b": 20.0}, "a"),      # a had one longest ago: a
    ({"a": 30.0, "b": 20.0}, "b"),
    ({"a": 10.0, "b": 20.0, "c": 5.0}, "a"),  # c is not a candidate (busy)
])
def test_fair_tie_break(last_assigned: dict, expected: str) -> None:
    nodes = [node("a"), node("b"), node("c", queue=1)]
    assert place(needs(20), nodes, last_assigned).node_id == expected


def test_round_robin_over_equal_nodes() -> None:
    nodes = [node(n, slots=8) for n in "abc"]
    last: dict[str, float] = {}
    order = []
    for clock in range(6):
        chosen = place(needs(20), nodes, last).node_id
        last[chosen] = float(clock + 1)
        order.append(chosen)
    assert order == ["a", "b", "c", "a", "b", "c"]


# --- refusal: no node could ever take it ---------------------------------------------------------
def test_refused_by_max_images_names_the_limit() -> None:
    decision = place(needs(120), [node("a", max_images=100), node("b", max_images=50)])
    assert decision.outcome == Outcome.REFUSE and decision.node_id is None
    assert "maxImages" in decision.reason and "120 images" in decision.reason and "100" in decision.reason


def test_refused_by_memory_names_the_limit() -> None:
    memory = estimate_memory_mb(1500)  # 64 GB by the model
    decision = place(TaskNeeds(1500, memory), [node("a", total_mb=32 * GB, available_mb=30 * GB),
                                               node("b", total_mb=48 * GB, available_mb=40 * GB)])
    assert decision.outcome == Outcome.REFUSE
    assert "totalMemory" in decision.reason and "64.0 GB" in decision.reason and "48.0 GB" in decision.reason


def test_refusal_counts_offline_and_locked_nodes_as_able() -> None:
    """A task that only a node that is away could take waits for it instead of being refused."""
    big = node("big", total_mb=128 * GB, available_mb=120 * GB, online=False)
    small = node("small", total_mb=8 * GB, available_mb=7 * GB)
    decision = place(needs(1000, 60), [big, small])
    assert decision.outcome == Outcome.WAIT
    assert place(needs(1000, 60), [NodeState(**{**big.__dict__, "online": True, "locked": True}), small]).outcome \
        == Outcome.WAIT


def test_refused_when_each_node_fails_a_different_limit() -> None:
    """One node has the memory but too small a maxImages, the other the reverse: the reason must
    name both limits, not claim the largest node has more memory than the task needs."""
    roomy_but_limited = node("a", max_images=50, total_mb=64 * GB, available_mb=60 * GB)
    unlimited_but_small = node("b", max_images=None, total_mb=8 * GB, available_mb=7 * GB)
    reason = refusal(needs(300, 20), [roomy_but_limited, unlimited_but_small])
    assert reason is not None
    assert "maxImages" in reason and "totalMemory" in reason
    assert "8.0 GB" in reason and "64.0 GB" not in reason


@pytest.mark.parametrize("nodes", [
    [],                                                  # no nodes yet: wait for one
    [node("a", max_images=None)],
    [node("a", max_images=200, total_mb=None)],
])
def test_not_refused(nodes: list[NodeState]) -> None:
    assert refusal(needs(150, 12), nodes) is None


def test_unknown_image_count_is_never_refused_by_max_images() -> None:
    assert refusal(needs(None, 0), [node("a", max_images=1)]) is None


# --- wait: it fits, but nobody has room now ------------------------------------------------------
@pytest.mark.parametrize("nodes,why", [
    ([node("a", queue=1), node("b", slots=2, queue=2)], "busy"),
    ([node("a", reserved_tasks=1)], "busy"),
    ([node("a", queue=3)], "busy"),                                      # a node's own queue beyond its slots
    ([node("a", available_mb=1 * GB)], "busy"),                          # the memory is in use now
    ([node("a", available_mb=8 * GB, reserved_mb=7 * GB)], "busy"),
    ([node("a", max_images=5), node("b", queue=1)], "busy"),             # the only node that fits is busy
    ([node("a", online=False)], "no node is online"),
    ([node("a", locked=True), node("b", online=False)], "no node is online"),
    ([], "no node is online"),
])
def test_wait_when_busy(nodes: list[NodeState], why: str) -> None:
    decision = place(needs(20, 2), nodes)
    assert decision.outcome == Outcome.WAIT and decision.node_id is None
    assert why in decision.reason


# --- reservations ---------------------------------------------------------------------------------
def test_reservations_spread_parallel_submissions() -> None:
    """Four tasks placed before any node's /info shows them: two per two-slot node, then wait."""
    nodes = {n: node(n, slots=2) for n in "ab"}
    held = Reservations()
    placed = []
    for i in range(5):
        decision = place(needs(20, 2), [held.apply(s) for s in nodes.values()])
        if decision.outcome != Outcome.PLACE:
            placed.append(None)
            continue
        held.add(decision.node_id, f"t{i}", 2 * GB)
        placed.append(decision.node_id)
    assert sorted(p for p in placed if p) == ["a", "a", "b", "b"] and placed[-1] is None


def test_reservations_count_slots_and_memory() -> None:
    held = Reservations()
    held.add("a", "t1", 3 * GB)
    held.add("a", "t2", 1 * GB)
    held.add("b", "t3", 5 * GB)
    a = held.apply(node("a", slots=4, queue=1, available_mb=10 * GB))
    assert a.reserved_tasks == 2 and a.reserved_mb == 4 * GB
    assert a.free_slots == 1 and a.headroom_mb == 6 * GB
    assert held.apply(node("c")).reserved_tasks == 0
    # memory reserved elsewhere does not count here; memory reserved here does
    assert place(needs(20, 7), [a, held.apply(node("b", slots=2, available_mb=14 * GB))]).node_id == "b"


def test_reservations_settle_only_with_info_asked_after_commit() -> None:
    held = Reservations()
    held.add("a", "t1", GB)
    held.settle("a", 100.0)  # not committed yet: an /info cannot show it
    assert held.apply(node("a")).reserved_tasks == 1
    held.committed("t1", 50.0)
    held.settle("a", 40.0)  # an /info asked before the commit reached the node
    assert held.apply(node("a")).reserved_tasks == 1
    held.settle("b", 60.0)  # another node's /info
    assert held.apply(node("a")).reserved_tasks == 1
    held.settle("a", 60.0)  # the node's own queue count now includes it
    assert held.apply(node("a")).reserved_tasks == 0


def test_reservations_drop() -> None:
    held = Reservations()
    held.add("a", "t1", GB)
    held.add("a", "t2", GB)
    held.drop("t1")
    held.drop("unknown")
    assert held.apply(node("a")).reserved_tasks == 1
    held.add("b", "t2", 2 * GB)  # the same task moved on (re-reserved elsewhere) after a drop
    held.drop("t2")
    assert held.apply(node("a")).reserved_tasks == 0 and held.apply(node("b")).reserved_tasks == 0


def test_place_is_pure() -> None:
    nodes = [node("a", slots=2), node("b")]
    copy = list(nodes)
    last = {"a": 1.0}
    first = place(needs(20), nodes, last)
    assert place(needs(20), nodes, last) == first and nodes == copy and last == {"a": 1.0}


def test_forward_target_counts_uploads_heading_to_a_node_but_holds_nothing() -> None:
    from proxy.scheduler import forward_target
    a, b = NodeState("a", slots=2), NodeState("b", slots=2)
    assert forward_target([a, b], {}) == "a"
    assert forward_target([a, b], {"a": 1}) == "b"            # a has one upload on its way already
    assert forward_target([a, b], {"a": 2, "b": 1}) == "b"
    assert forward_target([a, b], {"a": 3, "b": 2}) == "b"     # uploads that may never commit hold nothing
    busy = NodeState("c", slots=1, queue=1)
    assert forward_target([busy], {}) is None
    assert forward_target([NodeState("d", locked=True), NodeState("e", online=False)], {}) is None
    assert forward_target([a, b], {}, {"a": 5.0, "b": 1.0}) == "b"  # tie: the one given work longest ago
