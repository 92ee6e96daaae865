"""Named points in the task protocol where the fault suite kills the relay, as `kill -9` would, at the worst
moment rather than at a random one.

Off unless the environment says `ODX_FAULT_CRASH_AT=<point>[:<n>]`: the process then kills itself with
SIGKILL at the n-th time (default the first) it reaches that point. Nothing is flushed or closed, exactly
as with an operator's `kill -9` or the OOM killer. Only `scripts/faults.py` and tests set it.
"""
from __future__ import annotations

import os
import signal

ENV = "ODX_FAULT_CRASH_AT"
POINTS = {
    "after-init": "the task is recorded and open on its node; the client has no answer yet",
    "mid-upload": "a file reached the forward node; the relay has not noted that the node holds it",
    "in-commit": "the node committed the task; the relay's record does not say so yet",
    "mid-dispatch": "a file from the relay's disk reached the node; the relay has not noted it",
    "at-task-end": "the relay hears a task ended; its slot is not freed, the client not told, the end not recorded",
    "mid-archive": "a completed task's all.zip is copied from its node; it is not in the results store yet",
}
_hits: dict[str, int] = {}


def _wanted() -> tuple[str, int] | None:
    spec = os.environ.get(ENV, "")
    if not spec:
        return None
    name, _, count = spec.partition(":")
    if name not in POINTS:
        raise ValueError(f"{ENV}={spec!r}: unknown point; known: {', '.join(POINTS)}")
    return name, int(count or 1)


def crash_point(name: str) -> None:
    """Die here, now, if the environment asks for this point (and this is its n-th hit)."""
    assert name in POINTS, name
    wanted = _wanted()
    if wanted is None or wanted[0] != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == wanted[1]:
        os.kill(os.getpid(), signal.SIGKILL)
