"""Per-task locks exclude each other and leave nothing behind once released."""
from __future__ import annotations

import asyncio

from proxy.state import TaskLocks


def test_locks_exclude_and_are_forgotten_when_free() -> None:
    async def scenario() -> tuple[list[str], int, int]:
        locks, order = TaskLocks(), []

        async def work(name: str, uuid: str) -> None:
            async with locks.hold(uuid):
                order.append(f"{name} in")
                await asyncio.sleep(0.01)
                order.append(f"{name} out")

        await asyncio.gather(work("a", "u1"), work("b", "u1"), *(work(f"t{i}", f"x{i}") for i in range(1000)))
        busy_inside = 0
        async with locks.hold("u2"):
            busy_inside = locks.busy("u2")
        return [step for step in order if step[0] in "ab"], busy_inside, len(locks)

    same_task, busy, left = asyncio.run(scenario())
    assert same_task == ["a in", "a out", "b in", "b out"]  # one at a time on one uuid
    assert busy and not TaskLocks().busy("u2")
    assert left == 0  # 1,003 uuids held once: nothing kept
