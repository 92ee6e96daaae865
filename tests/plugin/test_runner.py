"""The task runner's decisions with stand-ins for the server: no QGIS, no network, no sleeping."""
from __future__ import annotations

import pytest

from qgis_plugin.core import runner as runner_module
from qgis_plugin.core.cache import ResultsCache
from qgis_plugin.core.runner import Canceled, NotReady, TaskRunner
from qgis_plugin.deps import shared

S = shared.TaskStatus
UUID = "6a1d4f0e-2b7c-4e4d-8f3a-0c9b1e2d3f4a"


class Reporter:
    def __init__(self, cancel_after: int | None = None, closing: bool = False):
        self.progress_values: list[float] = []
        self.infos: list[str] = []
        self.console_lines: list[str] = []
        self.cancel_after = cancel_after
        self.closing = closing
        self.checks = 0

    def progress(self, percent):
        self.progress_values.append(percent)

    def info(self, text):
        self.infos.append(text)

    def console(self, text):
        self.console_lines.append(text)

    def is_canceled(self):
        self.checks += 1
        return self.cancel_after is not None and self.checks > self.cancel_after

    def leave_running(self):
        return self.closing

    def task_started(self, uuid):
        self.started = uuid


class FakeTask:
    """Replays a list of (status, progress, new output lines, error) snapshots, one per info() call."""

    def __init__(self, snapshots, failures: int = 0):
        self.uuid = UUID
        self.snapshots = list(snapshots)
        self.failures = failures
        self.asked_from: list[int] = []
        self.canceled = False
        self.lines: list[str] = []

    def info(self, with_output=None):
        if self.failures:
            self.failures -= 1
            raise shared.NodeConnectionError("cannot reach http://node: Connection refused")
        status, progress, new_lines, error = self.snapshots.pop(0) if len(self.snapshots) > 1 else self.snapshots[0]
        self.lines += new_lines
        self.asked_from.append(with_output)
        info = shared.TaskInfo(uuid=self.uuid, status=status, progress=progress, last_error=error)
        info.output = self.lines[with_output or 0:]
        return info

    def cancel(self):
        self.canceled = True
        return True


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setattr(runner_module.time, "sleep", lambda seconds: None)
    clock = iter(range(10**9))
    monkeypatch.setattr(runner_module.time, "monotonic", lambda: next(clock) * 10.0)


def make_runner(reporter, tmp_path, node=None):
    return TaskRunner(node, reporter, ResultsCache(tmp_path), poll_interval=0.01)


def test_follow_streams_each_line_once_and_maps_progress(tmp_path):
    task = FakeTask([(S.QUEUED, 0, [], ""), (S.RUNNING, 30, ["a", "b"], ""), (S.RUNNING, 80, ["c"], ""),
                     (S.COMPLETED, 100, ["done"], "")])
    reporter = Reporter()
    make_runner(reporter, tmp_path).follow(task)
    assert reporter.console_lines == ["a", "b", "c", "done"]
    assert task.asked_from == [0, 0, 2, 3]
    assert reporter.progress_values == sorted(reporter.progress_values) and reporter.progress_values[-1] == 90
    assert [i for i in reporter.infos if "is " in i] == [f"Task {UUID} is queued.", f"Task {UUID} is running.",
                                                         f"Task {UUID} is completed."]


def test_cancel_while_processing_cancels_the_remote_task(tmp_path):
    task = FakeTask([(S.RUNNING, 10, [], "")])
    with pytest.raises(Canceled, match="canceled on the server too"):
        make_runner(Reporter(cancel_after=3), tmp_path).follow(task)
    assert task.canceled


def test_qgis_closing_leaves_the_remote_task_running(tmp_path):
    task = FakeTask([(S.RUNNING, 10, [], "")])
    with pytest.raises(Canceled, match="keeps running on the server"):
        make_runner(Reporter(cancel_after=2, closing=True), tmp_path).follow(task)
    assert not task.canceled


def test_failed_task_says_why(tmp_path):
    task = FakeTask([(S.RUNNING, 10, ["step 1"], ""), (S.FAILED, 40, ["boom: out of memory"], "")])
    with pytest.raises(shared.TaskFailedError, match="failed. The last lines of its output:\nstep 1\nboom"):
        make_runner(Reporter(), tmp_path).follow(task)
    task = FakeTask([(S.FAILED, 40, [], "Process exited with code 137")])
    with pytest.raises(shared.TaskFailedError, match="failed: Process exited with code 137"):
        make_runner(Reporter(), tmp_path).follow(task)


def test_lost_connection_is_retried_then_given_up(tmp_path):
    reporter = Reporter()
    make_runner(reporter, tmp_path).follow(FakeTask([(S.COMPLETED, 100, [], "")], failures=3))
    assert sum("Lost contact" in i for i in reporter.infos) == 3
    with pytest.raises(shared.NodeConnectionError):
        make_runner(Reporter(), tmp_path).follow(FakeTask([(S.COMPLETED, 100, [], "")], failures=99))


def test_load_from_cache_needs_no_server_and_unfinished_tasks_can_be_left(tmp_path):
    cache = ResultsCache(tmp_path)
    cache.begin(UUID)
    cache.commit(UUID, {"name": "Farm"})
    outcome = make_runner(Reporter(), tmp_path, node=None).load(UUID)
    assert (outcome.name, outcome.folder, outcome.downloaded) == ("Farm", tmp_path / UUID, False)

    class Node:
        def get_task(self, uuid):
            return FakeTask([(S.RUNNING, 42, [], "")])

    other = "7b2e5a1f-3c8d-4f5e-9a4b-1d0c2e3f4a5b"
    with pytest.raises(NotReady, match="running \\(42 %\\)"):
        make_runner(Reporter(), tmp_path, node=Node()).load(other, wait=False)


def test_cancel_during_upload_reaches_the_task_by_the_uuid_chosen_before_it(tmp_path):
    from qgis_plugin.core.inputs import plan_upload

    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(b"x")
    plan = plan_upload(folder=tmp_path)

    class Node:
        def __init__(self):
            self.created_with = None
            self.tasks: dict = {}

        def url(self, path, with_token=True):
            return "http://node" + path

        def info(self):
            return shared.NodeInfo.from_json({"version": "2.3.1"})

        def check_task(self, names, options):
            assert sorted(names) == ["a.jpg", "b.jpg"]

        def create_task(self, files, options, name, task_uuid, progress_callback, validate):
            self.created_with = task_uuid
            progress_callback(50.0)  # the upload asks whether to go on; the user has canceled
            raise AssertionError("not reached")

        def get_task(self, uuid):
            return self.tasks.setdefault(uuid, FakeTask([(S.QUEUED, 0, [], "")]))

    node = Node()
    with pytest.raises(Canceled, match="Upload canceled; task .* was not started"):
        make_runner(Reporter(cancel_after=1), tmp_path / "cache", node=node).submit(plan, {}, "n")
    assert list(node.tasks) == [node.created_with] and node.tasks[node.created_with].canceled
