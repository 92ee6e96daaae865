"""What the stores guarantee replicas beyond the shared contract (tests/test_store_contract.py): a slot is
never granted on numbers older than those that settled a reservation, and a lease stays with a live holder.
The `store` fixture (tests/conftest.py) gives each test both backends."""
from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.slow


def test_a_slot_asked_on_numbers_older_than_a_settlement_is_refused(store) -> None:
    run, s = store
    assert run(s.reserve("n1", "t1", 0, free_slots=1, headroom_mb=None, info_asked_at=9.0))
    run(s.commit_reservation("t1", 10.0))
    run(s.settle_reservations("n1", 11.0))  # an /info asked at 11 shows t1 in the node's queue: settled
    # a replica whose /info is from 10.5 still counts the node's queue without t1: one free slot, it thinks
    assert not run(s.reserve("n1", "t2", 0, free_slots=1, headroom_mb=None, info_asked_at=10.5))
    assert run(s.reserve("n1", "t2", 0, free_slots=1, headroom_mb=None, info_asked_at=11.0))


def test_a_lease_stays_with_a_live_holder_and_passes_on_when_it_lapses(store) -> None:
    run, s = store
    if type(s).__name__ == "SQLiteStore":
        assert run(s.lease("job", "a", 0.3)) and run(s.lease("job", "b", 0.3))  # one process: no rivals
        return
    assert run(s.lease("job", "a", 0.3)) and not run(s.lease("job", "b", 0.3))
    for _ in range(3):  # `a` asks again every 0.2 s: it keeps the job past its first 0.3 s
        time.sleep(0.2)
        assert run(s.lease("job", "a", 0.3)) and not run(s.lease("job", "b", 0.3))
    time.sleep(0.4)
    assert run(s.lease("job", "b", 0.3)) and not run(s.lease("job", "a", 0.3))
