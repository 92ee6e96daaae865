"""A task's life as seen from QGIS: check, upload, follow, download into the cache.

No Qt here: the algorithms hand in a `Reporter` that forwards to Processing's feedback, and the tests
hand in a plain one. The uuid is chosen before the upload starts (NodeODX's `set-uuid`), so a cancel
during the upload can still reach the right task, and the user sees the uuid at once and can pick the
task up later with "Load results" if QGIS closes.
"""
from __future__ import annotations

import collections
import os
import tempfile
import time
import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..deps import shared
from .cache import ResultsCache, check_uuid
from .describe import STATUS_WORDS, NoNodeOnline, duration, no_node_online
from .inputs import UploadPlan, stage
from .progress import DOWNLOAD, LOAD_WEIGHTS, PROCESSING, SUBMIT_WEIGHTS, UPLOAD, ProgressMap

TaskStatus = shared.TaskStatus
#: The first wait between polls; it grows to `poll_interval`, so short tasks end without a long pause.
FIRST_POLL = 0.2
#: Seconds a run waits after a cancel for word that QGIS is closing, before it cancels the remote task.
CLOSE_GRACE = 0.5


class Canceled(Exception):
    """The user canceled. The message says what became of the remote task."""


class NotReady(Exception):
    """The task exists but has not finished, and the caller chose not to wait."""


def require_online(node: shared.Node) -> None:
    """Refuse early, in words, when the server is a relay with no node online: its `/options` is then empty,
    and every option would be refused as unknown."""
    problem = no_node_online(node.info(), node.url("/", with_token=False).rstrip("/"))
    if problem:
        raise NoNodeOnline(problem)


class Reporter(Protocol):
    def progress(self, percent: float) -> None: ...
    def info(self, text: str) -> None: ...
    def console(self, text: str) -> None: ...
    def is_canceled(self) -> bool: ...
    def leave_running(self) -> bool:
        """True when the cancel comes from QGIS closing (or the plugin unloading): the remote task then keeps
        running. Only a cancel the user asked for (a Cancel button, `feedback.cancel()`) cancels it."""
    def task_started(self, uuid: str) -> None:
        """A new task's uuid, chosen before its upload (the plugin remembers the tasks started from this QGIS)."""


@dataclass(frozen=True)
class Outcome:
    uuid: str
    name: str
    folder: Path
    downloaded: bool


class TaskRunner:
    """Drives one task on one server; `poll_interval` is how often the task's state is asked for.
    `node` may be None only to load results that are already in the cache."""

    def __init__(self, node: shared.Node | None, reporter: Reporter, cache: ResultsCache,
                 poll_interval: float = 2.0, max_connection_failures: int = 8):
        self.node = node
        self.reporter = reporter
        self.cache = cache
        self.poll_interval = poll_interval
        self.max_connection_failures = max_connection_failures
        self.bar = ProgressMap(SUBMIT_WEIGHTS)

    # --- the two ways in ----------------------------------------------------------------------
    def process(self, plan: UploadPlan, options: Mapping[str, Any], name: str) -> Outcome:
        """Send a new task, wait for it, download its results."""
        self.bar = ProgressMap(SUBMIT_WEIGHTS)
        task = self.submit(plan, options, name)
        info = self.follow(task)
        return Outcome(task.uuid, info.name or name, self.fetch(task, info.name or name), True)

    def load(self, uuid: str, wait: bool = True) -> Outcome:
        """Results of an existing task: from the cache if there, else from the server (waiting if asked)."""
        uuid = check_uuid(uuid)
        self.bar = ProgressMap(LOAD_WEIGHTS)
        if self.cache.has(uuid):
            record = self.cache.record(uuid)
            self.reporter.info(f"Task {uuid}: results are already in {self.cache.folder(uuid)}; "
                               "not downloading them again.")
            self.reporter.progress(100)
            return Outcome(uuid, str(record.get("name") or ""), self.cache.folder(uuid), False)
        task, info = self.completed(uuid, wait)
        return Outcome(uuid, info.name, self.fetch(task, info.name), True)

    def completed(self, uuid: str, wait: bool = True) -> tuple[shared.Task, shared.TaskInfo]:
        """The task and its info once it has completed: followed until then if `wait`, else NotReady; a task
        that failed or was canceled raises TaskFailedError."""
        task = self.node.get_task(uuid)
        info = task.info()
        if not info.status.is_final:
            if not wait:
                raise NotReady(f"Task {uuid} is {STATUS_WORDS[info.status]} ({info.progress:.0f} %); "
                               "run this again when it has finished, or tick “Wait for the task”.")
            info = self.follow(task)
        elif info.status != TaskStatus.COMPLETED:
            raise self._failure(task, info, [])
        return task, info

    # --- steps --------------------------------------------------------------------------------
    def submit(self, plan: UploadPlan, options: Mapping[str, Any], name: str) -> shared.Task:
        self._stop_if_canceled(None)
        self.reporter.info(f"Checking {len(options)} option(s) and {plan.image_count} images with "
                           f"{self.node.url('/', with_token=False)} …")
        require_online(self.node)
        self.node.check_task(plan.names(), options)
        for note in plan.notes:
            self.reporter.info(note)
        uuid = str(uuidlib.uuid4())
        self.reporter.task_started(uuid)
        size = plan.total_bytes / 1024 / 1024
        self.reporter.info(f"Task {uuid}: uploading {len(plan.uploads)} files ({size:.1f} MB). If QGIS "
                           "closes, the task keeps running; “Load results” fetches it later.")
        with tempfile.TemporaryDirectory(prefix="odx-relay-upload-") as staging:
            files = stage(plan, Path(staging))
            try:
                task = self.node.create_task(files, options, name=name or None, task_uuid=uuid,
                                             progress_callback=self._on_upload, validate=False)
            except Canceled:
                self._cancel_remote(self.node.get_task(uuid))
                raise Canceled(f"Upload canceled; task {uuid} was not started.") from None
        self.reporter.info(f"Task {task.uuid} created; waiting for the server to process it.")
        return task

    def follow(self, task: shared.Task) -> shared.TaskInfo:
        """Poll until the task ends, streaming its console output; cancel it if the user cancels."""
        seen, failures, polls, last_status = 0, 0, 0, None
        tail: collections.deque = collections.deque(maxlen=15)
        while True:
            self._stop_if_canceled(task)
            try:
                info = task.info(with_output=seen)
            except shared.NodeConnectionError as exc:
                failures += 1
                if failures > self.max_connection_failures:
                    raise
                self.reporter.info(f"Lost contact with the server ({exc}); trying again …")
                self._sleep(min(30.0, 2.0 * failures))
                continue
            failures = 0
            for line in info.output:
                self.reporter.console(str(line))
                tail.append(str(line))
            seen += len(info.output)
            if info.status != last_status:
                self.reporter.info(f"Task {task.uuid} is {STATUS_WORDS[info.status]}.")
                last_status = info.status
            self.reporter.progress(self.bar.overall(PROCESSING, info.progress))
            if info.status.is_final:
                break
            polls += 1
            self._sleep(min(self.poll_interval, FIRST_POLL * 1.5 ** polls))
        if info.status != TaskStatus.COMPLETED:
            raise self._failure(task, info, list(tail))
        self.reporter.info(f"Task {task.uuid} completed in {duration(info.processing_time)}.")
        return info

    def fetch(self, task: shared.Task, name: str) -> Path:
        """Download and extract `all.zip` into the cache, unless it is already there."""
        if self.cache.has(task.uuid):
            self.reporter.info(f"Results already in {self.cache.folder(task.uuid)}.")
            self.reporter.progress(100)
            return self.cache.folder(task.uuid)
        partial = self.cache.begin(task.uuid)
        self.reporter.info(f"Downloading the results of task {task.uuid} …")
        try:
            archive = task.download_zip(partial, progress_callback=self._on_download)
            self.reporter.info("Extracting the results …")
            shared.client.extract_zip(archive, partial)
            os.remove(archive)
            folder = self.cache.commit(task.uuid, {"uuid": task.uuid, "name": name,
                                                   "server": self.node.url("/", with_token=False),
                                                   "downloaded": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        except Canceled:
            self.cache.abandon(task.uuid)
            raise Canceled(f"Download canceled. Task {task.uuid} is complete on the server; "
                           "“Load results” fetches it later.") from None
        except BaseException:
            self.cache.abandon(task.uuid)
            raise
        self.reporter.progress(100)
        self.reporter.info(f"Results are in {folder}.")
        return folder

    # --- helpers ------------------------------------------------------------------------------
    def _on_upload(self, percent: float) -> None:
        if self.reporter.is_canceled():
            raise Canceled()
        self.reporter.progress(self.bar.overall(UPLOAD, percent))

    def _on_download(self, percent: float) -> None:
        if self.reporter.is_canceled():
            raise Canceled()
        self.reporter.progress(self.bar.overall(DOWNLOAD, percent))

    def _stop_if_canceled(self, task: shared.Task | None) -> None:
        if not self.reporter.is_canceled():
            return
        if task is None:
            raise Canceled("Canceled before anything was sent.")
        if self._closing():
            message = (f"QGIS stopped following task {task.uuid} (it is closing, or the plugin was unloaded); "
                       "the task keeps running on the server, and “Load results” picks it up later.")
            self.reporter.info(message)
            raise Canceled(message)
        raise Canceled(self._cancel_remote(task))

    def _closing(self) -> bool:
        """Whether this cancel comes from QGIS closing rather than from the user. QGIS may ask its own
        question on exit and cancel every task before the plugin hears of the exit, so a cancel counts as the
        user's only once `CLOSE_GRACE` seconds have passed without word that QGIS is closing."""
        deadline = time.monotonic() + CLOSE_GRACE
        while not self.reporter.leave_running():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def _cancel_remote(self, task: shared.Task) -> str:
        """Ask the server to cancel; say what happened, without raising (the user already stopped)."""
        try:
            task.cancel()
        except shared.GenericError as exc:
            message = f"Canceled here; the server did not confirm canceling task {task.uuid}: {exc}"
        else:
            message = f"Canceled; task {task.uuid} was canceled on the server too."
        self.reporter.info(message)
        return message

    def _failure(self, task: shared.Task, info: shared.TaskInfo, tail: list) -> Exception:
        message = f"task {task.uuid} {STATUS_WORDS[info.status]}"
        if info.last_error:
            message += f": {info.last_error}"
        elif tail:
            message += ". The last lines of its output:\n" + "\n".join(tail)
        return shared.TaskFailedError(message, info.status)

    def _sleep(self, seconds: float) -> None:
        """Wait, but notice a cancel within a tenth of a second."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.reporter.is_canceled():
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
