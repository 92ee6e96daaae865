"""`Task.track()`: a wait that follows a task through a relay killed and restarted, and that ends at once,
with the server's words, when waiting cannot help (a removed task, a wrong token). Real relays, real
development nodes, a real NodeODX."""
from __future__ import annotations

import threading
import time
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from shared import Node, NodeConnectionError, NodeResponseError, TaskInfo, TaskStatus
from testkit.relay import Relay, start_redis, start_relay

pytestmark = pytest.mark.slow

TOKEN = "track-t0ken-s3cret"
QUICK = {"interval": 0.2, "max_backoff": 0.5}


def wait_until(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def in_order(infos: list[TaskInfo]) -> list[TaskStatus]:
    """The statuses seen, each once in a row; they must only move forwards."""
    statuses: list[TaskStatus] = []
    for info in infos:
        if not statuses or statuses[-1] != info.status:
            statuses.append(info.status)
    return statuses


@pytest.fixture
def relay_and_node(servers, devnode_factory):
    """A relay with a token before one development node that takes about 2 s per photo."""
    devnode = devnode_factory(seconds_per_image=2)
    flags = dict(token=TOKEN, check_interval=0.3)
    relay = servers.add(start_relay(servers.tmp_path, [devnode.url], **flags))
    assert isinstance(relay, Relay)

    def restart() -> Relay:
        again = servers.add(start_relay(servers.tmp_path, [devnode.url], port=relay.port,
                                        data_dir=relay.data_dir, **flags))
        assert isinstance(again, Relay)
        return again

    return relay, restart


def test_track_follows_a_task_through_a_relay_killed_and_restarted(relay_and_node, sample_images: list[Path]):
    relay, restart = relay_and_node
    client = Node.from_url(relay.url, token=TOKEN, timeout=10)
    task = client.create_task(sample_images[:4], name="through a restart")
    seen: list[TaskInfo] = []
    lost: list[tuple[str, float]] = []
    errors: list[BaseException] = []

    def follow() -> None:
        try:
            for info in task.track(give_up_after=60, on_lost=lambda said, waited: lost.append((said, waited)),
                                   **QUICK):
                seen.append(info)
        except BaseException as exc:  # noqa: BLE001  asserted below, in the test's thread
            errors.append(exc)

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    wait_until(lambda: any(i.status == TaskStatus.RUNNING for i in seen), 30, "the task to run")
    relay.process.kill()  # kill -9: no shutdown handler runs
    relay.process.wait(10)
    wait_until(lambda: len(lost) >= 3, 10, "the follower to notice the relay is gone")
    restart()
    follower.join(60)
    assert not follower.is_alive() and errors == []
    assert seen[-1].status == TaskStatus.COMPLETED and seen[-1].progress == 100
    statuses = in_order(seen)
    assert statuses[-1] == TaskStatus.COMPLETED and TaskStatus.RUNNING in statuses
    assert statuses == sorted(statuses) and len(set(statuses)) == len(statuses)
    # only changes are reported: no two infos in a row say the same
    assert all((a.status, a.progress) != (b.status, b.progress) for a, b in zip(seen, seen[1:], strict=False))
    assert lost == sorted(lost, key=lambda said_waited: said_waited[1])
    assert all(TOKEN not in said for said, _ in lost)


def test_track_waits_out_503_answers_while_the_relays_redis_restarts(servers, devnode_factory,
                                                                    sample_images: list[Path]):
    """A relay whose Redis is away answers 503 ("try again shortly") for every task: waited out."""
    redis_server = servers.add(start_redis(servers.tmp_path))
    devnode = devnode_factory(seconds_per_image=2)
    relay = servers.add(start_relay(servers.tmp_path, [devnode.url], token=TOKEN, redis=redis_server.url,
                                    check_interval=0.3))
    task = Node.from_url(relay.url, token=TOKEN, timeout=10).create_task(sample_images[:3])
    lost: list[str] = []
    following = task.track(give_up_after=60, on_lost=lambda said, waited: lost.append(said), **QUICK)
    seen = [next(following)]
    redis.Redis.from_url(redis_server.url).save()  # its dump.rdb is read again when it restarts
    redis_server.process.kill()
    redis_server.process.wait(10)
    returns = threading.Timer(3, lambda: servers.add(start_redis(servers.tmp_path, port=redis_server.port)))
    returns.start()
    try:
        seen += following
    finally:
        returns.join()
    assert seen[-1].status == TaskStatus.COMPLETED
    assert in_order(seen) == sorted(in_order(seen))
    assert any("HTTP 503" in said and "Redis" in said for said in lost), lost


def test_track_gives_up_after_give_up_after_when_the_relay_never_returns(relay_and_node,
                                                                        sample_images: list[Path]):
    relay, _ = relay_and_node
    task = Node.from_url(relay.url, token=TOKEN, timeout=10).create_task(sample_images[:3])
    following = task.track(give_up_after=2, **QUICK)
    assert next(following).uuid == task.uuid
    relay.process.kill()
    relay.process.wait(10)
    started = time.monotonic()
    with pytest.raises(NodeConnectionError, match=r"gave up tracking task .* for [23] s") as error:
        list(following)
    assert 2 <= time.monotonic() - started < 6
    assert task.uuid in str(error.value) and relay.url in str(error.value) and TOKEN not in str(error.value)


def test_track_ends_at_once_when_the_task_is_removed(relay_and_node, sample_images: list[Path]):
    relay, _ = relay_and_node
    client = Node.from_url(relay.url, token=TOKEN, timeout=10)
    task = client.create_task(sample_images[:3])
    following = task.track(give_up_after=600, **QUICK)
    assert not next(following).status.is_final
    assert task.remove()
    started = time.monotonic()
    with pytest.raises(NodeResponseError, match="not found.*removed, or not this token's task") as error:
        list(following)
    assert time.monotonic() - started < 3 and task.uuid in str(error.value)
    never = client.get_task(str(uuidlib.uuid4()))
    started = time.monotonic()
    with pytest.raises(NodeResponseError, match="not found"):
        next(never.track(give_up_after=600, **QUICK))
    assert time.monotonic() - started < 3


def test_track_ends_at_once_on_a_wrong_token(relay_and_node, sample_images: list[Path]):
    relay, _ = relay_and_node
    task = Node.from_url(relay.url, token=TOKEN, timeout=10).create_task(sample_images[:2])
    intruder = Node.from_url(relay.url, token="wr0ng-t0ken", timeout=10).get_task(task.uuid)
    started = time.monotonic()
    with pytest.raises(NodeResponseError, match="Invalid authentication token") as error:
        next(intruder.track(give_up_after=600, **QUICK))
    assert time.monotonic() - started < 3 and "wr0ng-t0ken" not in str(error.value)


def test_track_on_a_plain_nodeodx(nodeodx_factory, sample_images: list[Path]):
    nodeodx = nodeodx_factory(token=TOKEN, test_seconds=2)
    client = Node.from_url(nodeodx.url, token=TOKEN, timeout=10)
    task = client.create_task(sample_images[:3], name="plain")
    seen = list(task.track(give_up_after=60, **QUICK))
    statuses = in_order(seen)
    assert statuses[-1] == TaskStatus.COMPLETED and statuses == sorted(statuses) and len(seen) >= 2
    assert seen[-1].uuid == task.uuid and seen[-1].name == "plain"
    # a finished task: one info, the final one
    assert [i.status for i in task.track(**QUICK)] == [TaskStatus.COMPLETED]
    # what NodeODX says (HTTP 200 with {"error": ...}) ends it at once, for an unknown task and a wrong token
    with pytest.raises(NodeResponseError, match="not found"):
        next(client.get_task(str(uuidlib.uuid4())).track(give_up_after=600, **QUICK))
    with pytest.raises(NodeResponseError, match="Invalid authentication token"):
        next(Node.from_url(nodeodx.url, token="wr0ng", timeout=10).get_task(task.uuid).track(give_up_after=600))


def test_track_refuses_nonsense_arguments():
    task = Node.from_url("http://127.0.0.1:9").get_task(str(uuidlib.uuid4()))
    for bad in ({"interval": 0}, {"give_up_after": -1}, {"max_backoff": 0}):
        with pytest.raises(ValueError):
            task.track(**bad)
