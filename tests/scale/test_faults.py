"""The fault suite (`python -m scripts.faults`) in its quick mode: for every scenario, no task is lost, no
node holds more tasks than it has slots, and, counted on the nodes themselves, no task runs to completion
twice and no node makes a task from a file it received twice; the kill-point scenarios kill replicas at
each step of the task protocol, and the returning node comes back after its tasks were sent elsewhere."""
from __future__ import annotations

from pathlib import Path

import pytest

from scripts.faults import SCENARIOS, Scenario, details, run_scenario, table

pytestmark = pytest.mark.slow


IN_CI = [s for s in SCENARIOS if s.ci and (s.fault or s.kill_point or s.nodes != [{}, {}])]  # not the baseline


@pytest.mark.parametrize("scenario", IN_CI, ids=lambda s: s.name)
def test_no_task_is_lost(scenario: Scenario, tmp_path: Path, sample_images: list[Path]) -> None:
    row = run_scenario(scenario, tmp_path, sample_images[:4], tasks=5, gap=0.35, timeout=60)
    print("\n" + table([row]))
    assert row.count("lost") == 0, details([row])
    assert len(row.ran_twice) == 0, table([row])
    assert len(row.duplicates) == 0, table([row])
    assert not row.problems and row.overbooked == 0, table([row])
    expected = []  # the only clear errors a scenario may end a task with
    if any(n.get("fail_tasks") for n in scenario.nodes):
        expected.append("Cannot process dataset")
    if any(n.get("die_after") for n in scenario.nodes):  # done just before its node died, outputs gone with it
        expected.append("completed, but all.zip refused: node http://127.0.0.1:")
    failed = [o.error for o in row.outcomes if o.kind == "failed"]
    assert all(any(e in error for e in expected) for error in failed), details([row])
    if expected == ["Cannot process dataset"]:
        assert failed, "the node that fails every task failed none"
    if scenario.kill_point:
        assert row.kills, "no replica was killed at the kill point"
