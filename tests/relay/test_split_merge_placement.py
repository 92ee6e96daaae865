"""Split-merge's placement rules and credential, as pure functions (no servers), then the rule that parents
never take every slot, through a real relay: a second parent waits while the first one's submodels have
somewhere to go, and nothing deadlocks."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from proxy.models import Stage, TaskRecord
from proxy.scheduler import NodeState, Outcome, TaskNeeds, leaves_free, place
from proxy.split_merge import (
    alive,
    child_owner,
    credential,
    credential_parent,
    dispatch_order,
    is_parent,
    owns,
    parent_of_owner,
    rewrite_options,
)
from tests.relay.relay_helpers import COMPLETED, QUEUED, RUNNING, submit, task_info, wait_status

SECRET = b"k" * 32
PARENT = "0b5f3a0e-3c1a-4c1e-9d1e-0a2b3c4d5e6f"
TOKEN = "split-merge-owner"


def nodes(*free: int) -> list[NodeState]:
    return [NodeState(id=f"n{i}", slots=1, queue=1 - room) for i, room in enumerate(free)]


@pytest.mark.parametrize("free,keep,outcome", [
    ((1, 1), 0, Outcome.PLACE),
    ((1, 1), 1, Outcome.PLACE),   # one left for submodels once it takes the other
    ((1, 0), 1, Outcome.WAIT),    # the last free slot: kept for the submodels of the parent running
    ((1, 0), 0, Outcome.PLACE),   # no parent running: the first parent always gets a slot
    ((0, 0), 0, Outcome.WAIT),
])
def test_keep_free(free: tuple[int, ...], keep: int, outcome: Outcome) -> None:
    decision = place(TaskNeeds(10, 1024), nodes(*free), keep_free=keep)
    assert decision.outcome == outcome
    if outcome == Outcome.WAIT and keep:
        assert "split-merge" in decision.reason


def test_locked_and_offline_slots_are_not_spare() -> None:
    states = [NodeState(id="a"), NodeState(id="b", locked=True), NodeState(id="c", online=False)]
    assert not leaves_free(states, 1)
    assert leaves_free([NodeState(id="a", slots=2)], 1)


def test_submodels_go_first_then_oldest() -> None:
    old = TaskRecord(uuid="a", created_ms=1)
    child = TaskRecord(uuid="b", created_ms=5, parent_uuid=PARENT)
    new = TaskRecord(uuid="c", created_ms=3)
    assert [t.uuid for t in sorted([new, old, child], key=dispatch_order)] == ["b", "a", "c"]


@pytest.mark.parametrize("options,images,parent_uuid,expected", [
    ({"split": 10}, 40, None, True),
    ({"split": "10"}, 0, None, True),      # image count not known yet
    ({"split": 50}, 40, None, False),      # ODM does not split a dataset smaller than a submodel
    ({"split": 10}, 40, PARENT, False),    # a submodel is never a parent
    ({}, 40, None, False),
    ({"split": "lots"}, 40, None, False),
])
def test_is_parent(options: dict, images: int, parent_uuid: str | None, expected: bool) -> None:
    assert is_parent(TaskRecord(uuid="x", options=options, image_count=images, parent_uuid=parent_uuid)) is expected


def relay_with(no_split_merge: bool = False):
    config = SimpleNamespace(no_split_merge=no_split_merge, callback_base="https://relay.example")
    return SimpleNamespace(config=config, secret=SECRET)


def test_rewrite_options() -> None:
    task = TaskRecord(uuid=PARENT)
    given = {"split": 10, "sm-cluster": "http://elsewhere/", "dsm": True}
    rewritten = rewrite_options(relay_with(), task, given)
    assert rewritten["sm-cluster"] == f"https://relay.example/?token={credential(SECRET, PARENT)}"
    assert rewritten["dsm"] is True and given["sm-cluster"] == "http://elsewhere/"  # the client's dict untouched
    assert "sm-cluster" not in rewrite_options(relay_with(no_split_merge=True), task, given)
    assert "sm-cluster" not in rewrite_options(relay_with(), task, {"sm-cluster": "http://elsewhere/"})
    child = TaskRecord(uuid="c", parent_uuid=PARENT)
    assert "sm-cluster" not in rewrite_options(relay_with(), child, given)


def test_credential() -> None:
    token = credential(SECRET, PARENT)
    assert credential_parent(SECRET, token) == PARENT
    assert credential_parent(b"other" * 8, token) is None
    assert credential_parent(SECRET, token[:-1] + ("0" if token[-1] != "0" else "1")) is None
    assert credential_parent(SECRET, "sm.not-a-uuid." + token.rsplit(".", 1)[1]) is None
    assert credential_parent(SECRET, "sm.") is None
    running = TaskRecord(uuid=PARENT, stage=Stage.ON_NODE)
    assert alive(running) and alive(TaskRecord(uuid=PARENT, stage=Stage.QUEUED))
    assert not alive(TaskRecord(uuid=PARENT, stage=Stage.ON_NODE, ended_ms=1))
    assert not alive(TaskRecord(uuid=PARENT, stage=Stage.CANCELED)) and not alive(None)
    assert not alive(TaskRecord(uuid=PARENT, stage=Stage.UPLOADING))


def test_owners() -> None:
    owner = child_owner("user:ann", PARENT)
    assert parent_of_owner(owner) == PARENT and parent_of_owner("user:ann") is None
    child = TaskRecord(uuid="c", owner=owner, parent_uuid=PARENT)
    assert owns("user:ann", child) and owns(owner, child)
    assert not owns("user:bob", child) and not owns(child_owner("user:bob", PARENT), child)
    assert parent_of_owner(child_owner("", PARENT)) == PARENT  # a relay without tokens


def test_a_second_parent_leaves_the_last_slot_to_the_first_ones_submodels(relay_factory, devnode_factory,
                                                                          sample_images) -> None:
    """Two one-slot nodes. Parent A runs; parent B, submitted next, would take the last slot and leave A's
    submodels none: it waits in the relay's queue; an ordinary task does not wait; B runs once A ends."""
    node_a, node_b = devnode_factory(seconds_per_image=1.5), devnode_factory(seconds_per_image=0.3)
    relay = relay_factory([node_a, node_b], token=TOKEN, public_url="http://127.0.0.1:9")  # parents split alone
    split = {"options": json.dumps([{"name": "split", "value": 2}])}
    first = submit(relay, sample_images[:4], {**split, "name": "A"}, token=TOKEN)
    wait_status(relay, first, (RUNNING,), token=TOKEN)
    second = submit(relay, sample_images[:4], {**split, "name": "B"}, token=TOKEN)
    ordinary = submit(relay, sample_images[:2], {"name": "plain"}, token=TOKEN)
    wait_status(relay, ordinary, (COMPLETED,), token=TOKEN)  # it used the slot B may not take
    assert task_info(relay, second, token=TOKEN)["status"]["code"] == QUEUED
    assert all("error" in task_info(node, second) for node in (node_a, node_b))  # on no node: the relay's queue
    wait_status(relay, first, (COMPLETED,), token=TOKEN)
    wait_status(relay, second, (COMPLETED,), timeout=40, token=TOKEN)
