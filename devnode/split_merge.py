"""Split-merge on the node that got the task, as ODM runs it: the development node plays ODM's part.

A task with `split` (photos per submodel) and more photos than that is split by position
(`devnode.submodels`); each submodel then goes through two rounds (`devnode.seed`), reconstruction and
toolchain, and the parent merges the results (`devnode.merge`). With `sm-cluster` (a NodeODX-compatible
URL, `?token=` allowed) the rounds follow ODM's LocalRemoteExecutor (`opendm/remote.py`), through pyodx:

- two workers share one queue of submodels: a local one processes one submodel at a time here, and a
  remote one sends submodels to the cluster while the local one is busy (it yields to it otherwise);
- each remote submodel is `create_task(photos + side files + seed.zip, options, skip_post_processing=True,
  outputs=...)`, then `info()` at once: RUNNING or COMPLETED, it is followed (`wait_for_completion`),
  downloaded (`download_assets`) and removed; QUEUED means "task limit reached": the task is removed, the
  submodel goes back to the queue (the local worker takes it when free) and the remote worker caps how
  many tasks it keeps on the cluster at the number it found running;
- any other error sends the submodel back to the queue after `retries x --sm-retry-seconds`, up to 5
  retries; a submodel whose remote task *failed* (or was canceled) is not retried and fails the parent,
  as in ODM, with the end of the remote task's console output;
- a cluster that does not answer at the start means all submodels are processed here;
- every remote task is removed once done, and all still there when the parent ends, fails, is canceled
  or the node stops.

Without `sm-cluster` the submodels are processed here one after another. Processing a submodel here
takes the time the node would take for its photos (`--seconds-per-image`, by round), so a split task's
makespan shows what the cluster gains. The console says what happens, never with the cluster's token.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
import uuid as uuidlib
import zipfile
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

from pyodx import Node as ClusterNode
from pyodx import exceptions as odx_errors
from pyodx.types import TaskStatus as ClusterStatus

from devnode.geotag import read_exif
from devnode.opensfm import open_photos, reference_lla, write_partial_project
from devnode.products import transform_points, utm_epsg
from devnode.seed import RECONSTRUCTION_ROUND, TOOLCHAIN_ROUND, Round, RoundPlan, make_seed, output_matches
from devnode.submodels import DEFAULT_OVERLAP_M, Submodel, split_photos, submodel_count
from shared.inputs import InputKind, classify

log = logging.getLogger("devnode.split_merge")

#: ODM's Task.max_retries.
MAX_RETRIES = 5
#: How often a followed remote task is asked for its info (ODM: pyodx's default, 3 s; the development
#: node's tasks last seconds).
POLL_SECONDS = 0.5
#: Longest wait for the remote tasks' removal and for calls still in flight when the parent stops.
CLEANUP_SECONDS = 30.0
#: Options ODM never passes to a submodel (`get_submodel_argv`'s remove_always) and those it always sets.
SUBMODEL_REMOVED = ("split", "split-overlap", "rerun-from", "rerun", "gcp", "end-with", "sm-cluster", "rerun-all",
                    "pc-csv", "pc-las", "pc-ept", "tiles", "copy-to", "cog")
SUBMODEL_ADDED = ("orthophoto-cutline", "dem-euclidean-map", "skip-3dmodel", "skip-report")
SUBMODELS_FOLDER = "submodels"
#: Progress of the parent at the start of each round and of the merge (ODM's split stage reports 25-50-100).
ROUND_PROGRESS = {Round.RECONSTRUCTION: (5.0, 45.0), Round.TOOLCHAIN: (45.0, 85.0)}

Console = Callable[[str], None]
SecondsFor = Callable[[Round, int], float]
Build = Callable[..., Path]


class TaskLimitReached(Exception):
    """The cluster queued a submodel instead of running it (ODM's NodeTaskLimitReachedException)."""


class SplitMergeFailed(Exception):
    """The split-merge cannot finish; the message is the parent task's error (never with a token)."""


class _Stopped(Exception):
    """Raised inside pyodx's callbacks so that its blocking calls return once the parent stops."""


@dataclass(frozen=True)
class SplitRequest:
    """What a task's options ask for: photos per submodel, overlap in metres, the cluster URL (or None)."""

    split: int
    overlap_m: float
    cluster_url: str | None

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> SplitRequest | None:
        """None when the task asks for no split (no `split`, or NodeODX's default 999999 that never splits)."""
        try:
            split = int(options["split"])
        except (KeyError, TypeError, ValueError):
            return None
        try:
            overlap = float(options.get("split-overlap", DEFAULT_OVERLAP_M))
        except (TypeError, ValueError):
            overlap = DEFAULT_OVERLAP_M
        cluster = str(options.get("sm-cluster") or "").strip()
        return cls(split, overlap, cluster if cluster not in ("", "None") else None)


def redact(text: str, url: str | None) -> str:
    """`text` without the cluster's token, in any of the forms an error message may carry it."""
    token = _token_of(url)
    for form in sorted({token, quote(token, safe=""), quote_plus(token)} - {""}, key=len, reverse=True):
        text = text.replace(form, "***")
    return text


def _token_of(url: str | None) -> str:
    if not url:
        return ""
    return (parse_qs(urlsplit(url).query).get("token") or [""])[0]


def _where(url: str) -> str:
    """The cluster as the console names it: scheme, host and port, no token."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    except ValueError:  # a port that is no number, a broken IPv6 address
        return "(an unreadable URL)"


@dataclass
class _Job:
    """One submodel in one round (ODM's Task): its retries, when it may be sent again, its remote task."""

    submodel: Submodel
    folder: Path
    round: Round
    number: int
    total: int
    retries: int = 0
    wait_until: float = 0.0
    remote: Any = None

    @property
    def label(self) -> str:
        return f"submodel {self.number}/{self.total}"


@dataclass
class _RoundState:
    """What the two workers share during one round (ODM's `nonloc` and counters)."""

    queue: asyncio.Queue
    total: int
    finished: int = 0
    error: BaseException | None = None
    local_busy: bool = False
    remote_running: int = 0
    max_remote: int | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def over(self) -> bool:
        return self.error is not None or self.finished >= self.total


class SplitMerge:
    """One parent task's split-merge, from its photos to its submodels' outputs on disk."""

    def __init__(self, task_dir: Path, images: list[Path], side_files: list[Path], options: dict[str, Any],
                 request: SplitRequest, *, console: Console, progress: Callable[[float], None],
                 seconds_for: SecondsFor, build_outputs: Build, build_reconstruction: Build,
                 retry_seconds: float):
        self.task_dir = task_dir
        self.images = images
        self.side_files = side_files
        self.options = options
        self.request = request
        self.console = console
        self.progress = progress
        self.seconds_for = seconds_for
        self.build_outputs = build_outputs
        self.build_reconstruction = build_reconstruction
        self.retry_seconds = retry_seconds
        self.submodels: list[Submodel] = []
        self._node: ClusterNode | None = None
        self._pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="devnode-split")
        self._stopping = False
        self._in_flight: set[Future] = set()
        self._monitors: set[asyncio.Task] = set()
        self._remote_tasks: dict[str, Any] = {}  # uuid -> pyodx Task, for cleanup (ODM's params['tasks'])

    # ---- the whole run -----------------------------------------------------------------------------

    @property
    def submodel_dirs(self) -> list[Path]:
        return [self.task_dir / SUBMODELS_FOLDER / s.name for s in self.submodels]

    def plan(self) -> list[Submodel]:
        """Split the photos by position; one submodel (no split) when they are too few or unplaced."""
        positions, unplaced = _positions(self.images)
        if submodel_count(len(self.images), self.request.split) <= 1:
            return []
        if len(positions) < 2:
            self.console("[WARNING] Could not perform split-merge as GPS information in photos is missing.")
            return []
        self.submodels = split_photos(positions, self.request.split, self.request.overlap_m, unplaced)
        return self.submodels

    async def run(self) -> None:
        """Both rounds for every submodel; raises SplitMergeFailed, or CancelledError once cleaned up."""
        try:
            await self._prepare()
            if self.request.cluster_url:
                await self._connect(self.request.cluster_url)
            for plan in (RECONSTRUCTION_ROUND, TOOLCHAIN_ROUND):
                await self._run_round(plan)
        finally:
            await self._shutdown()

    async def _prepare(self) -> None:
        photos = {p.name: p for p in self.images}
        counts = ", ".join(str(len(s.photos)) for s in self.submodels)
        self.console(f"[INFO]    Large dataset detected ({len(self.images)} photos) and split set at "
                     f"{self.request.split}. Dataset has been split into {len(self.submodels)} submodels "
                     f"({counts} photos, overlap up to {self.request.overlap_m:g} m).")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._write_submodels, photos)

    def _write_submodels(self, photos: dict[str, Path]) -> None:
        """Each submodel's folder: its photos (hard links), side files, and ODM's partial opensfm project."""
        reference = reference_lla(open_photos(self.images))
        for submodel, folder in zip(self.submodels, self.submodel_dirs):
            shutil.rmtree(folder, ignore_errors=True)
            (folder / "images").mkdir(parents=True)
            for name in submodel.photos:
                _link(photos[name], folder / "images" / name)
            for side in self.side_files:
                kind = classify(side.name)
                if kind is InputKind.GEO:
                    shutil.copyfile(side, folder / "geo.txt")
                elif kind is InputKind.GCP and not (folder / "gcp_list.txt").exists():
                    shutil.copyfile(side, folder / "gcp_list.txt")
            images = [folder / "images" / name for name in submodel.photos]
            write_partial_project(folder, open_photos(images), reference)

    async def _connect(self, url: str) -> None:
        """ODM's LRE start: a cluster that does not answer means processing everything here."""
        where = _where(url)
        try:
            self._node = ClusterNode.from_url(url)
            info = await self._call(self._node.info)
            self.console(f"[INFO]    LRE: sm-cluster {where} is online ({info.engine} {info.engine_version})")
        except (odx_errors.NodeConnectionError, odx_errors.NodeServerError, ValueError, TypeError) as exc:
            self._node = None
            self.console(f"[WARNING] LRE: sm-cluster {where} does not answer ({redact(str(exc), url)}); "
                         "processing every submodel here")
        except odx_errors.GenericError as exc:
            raise SplitMergeFailed(f"sm-cluster {where}: {redact(str(exc), url)}") from None

    # ---- one round (ODM's LocalRemoteExecutor.run) -------------------------------------------------

    async def _run_round(self, plan: RoundPlan) -> None:
        state = _RoundState(asyncio.Queue(), len(self.submodels))
        for number, (submodel, folder) in enumerate(zip(self.submodels, self.submodel_dirs), start=1):
            state.queue.put_nowait(_Job(submodel, folder, plan.round, number, len(self.submodels)))
        name = plan.round.value
        self.console(f"[INFO]    Running split-merge {name} round for {state.total} submodels"
                     + (f" (sm-cluster {_where(self.request.cluster_url)})" if self._node else " (here)"))
        workers = [_watched(self._local_worker(state, plan), state)]
        if self._node is not None:
            workers.append(_watched(self._remote_worker(state, plan), state))
        try:
            while not state.over:
                state.changed.clear()
                await state.changed.wait()
        finally:
            if state.error is not None or not state.over:  # failed or canceled: pyodx's loops end at once
                self._stopping = True
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await self._cancel_monitors()
            await self._remove_remote_tasks()
        if state.error is not None:
            raise SplitMergeFailed(redact(str(state.error), self.request.cluster_url)) from None
        self.console(f"[INFO]    Split-merge {name} round done for {state.total} submodels")

    async def _local_worker(self, state: _RoundState, plan: RoundPlan) -> None:
        while not state.over:
            job = await state.queue.get()
            state.local_busy = True
            try:
                await self._process_local(job, plan)
            except Exception as exc:  # noqa: BLE001  any failure of a local run is handled as ODM does
                await self._handle(state, job, local=True, error=exc)
            else:
                await self._handle(state, job, local=True)
            finally:
                state.local_busy = False

    async def _remote_worker(self, state: _RoundState, plan: RoundPlan) -> None:
        while not state.over:
            job = await state.queue.get()
            if not state.local_busy:  # yield to local processing
                state.queue.put_nowait(job)
                await asyncio.sleep(0.05)
                continue
            if state.max_remote is not None and state.remote_running >= state.max_remote:
                state.queue.put_nowait(job)
                await asyncio.sleep(POLL_SECONDS)
                continue
            state.remote_running += 1
            try:
                wait = job.wait_until - time.monotonic()
                if wait > 0:
                    self.console(f"[INFO]    LRE: waiting {wait:.1f} s before sending {job.label} again")
                    await asyncio.sleep(wait)
                await self._process_remote(job, plan, state)
            except Exception as exc:  # noqa: BLE001  every failure of a remote attempt is handled as ODM does
                await self._handle(state, job, local=False, error=exc)

    async def _handle(self, state: _RoundState, job: _Job, *, local: bool, error: BaseException | None = None) -> None:
        """ODM's handle_result: count a finished submodel, or send it back to the queue, or fail the round."""
        try:
            if error is None:
                self.console(f"[INFO]    LRE: {job.label} finished {'here' if local else 'on sm-cluster'}")
                state.finished += 1
                low, high = ROUND_PROGRESS[job.round]
                self.progress(low + (high - low) * state.finished / state.total)
            else:
                await self._handle_error(state, job, local, error)
            if not local:
                state.remote_running -= 1
            await self._remove_job_task(job)
        finally:
            state.changed.set()

    async def _handle_error(self, state: _RoundState, job: _Job, local: bool, error: BaseException) -> None:
        message = redact(str(error) or type(error).__name__, self.request.cluster_url)
        where = "here" if local else "on sm-cluster"
        limit_reached = isinstance(error, TaskLimitReached)
        if limit_reached:
            if state.max_remote is None:
                state.max_remote = max(1, await self._count_running())
                self.console(f"[INFO]    LRE: sm-cluster task limit reached; keeping at most {state.max_remote} "
                             "submodels there at a time")
        if job.retries < MAX_RETRIES and not isinstance(error, odx_errors.TaskFailedError):
            if not limit_reached:
                job.retries += 1
            job.wait_until = time.monotonic() + job.retries * self.retry_seconds
            if limit_reached:
                self.console(f"[INFO]    LRE: {job.label}: sm-cluster answered QUEUED ({message}); removed it "
                             "there, back in the queue (processed here when this node is free)")
            else:
                self.console(f"[WARNING] LRE: {job.label} failed {where}: {message}; retry {job.retries} of "
                             f"{MAX_RETRIES} in {job.retries * self.retry_seconds:g} s")
            await self._remove_job_task(job)
            state.queue.put_nowait(job)
            return
        self.console(f"[ERROR]   LRE: {job.label} failed {where}: {message}")
        state.error = SplitMergeFailed(f"{job.label} ({job.submodel.name}) failed {where}: {message}")

    # ---- a submodel here ---------------------------------------------------------------------------

    async def _process_local(self, job: _Job, plan: RoundPlan) -> None:
        photos = job.submodel.photos
        self.console(f"[INFO]    LRE: {job.label} processing here ({len(photos)} photos, {plan.round.value})")
        await asyncio.sleep(self.seconds_for(plan.round, len(photos)))
        images = [job.folder / "images" / name for name in photos]
        work = job.folder / "local"
        if plan.round is Round.RECONSTRUCTION:
            builder = partial(self.build_reconstruction, images, work)
        else:
            builder = partial(self.build_outputs, images, work, skip_post_processing=True,
                              options=self.submodel_options())
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._build_and_extract, builder, work, job.folder, plan.outputs)

    @staticmethod
    def _build_and_extract(builder: Callable[[], Path], work: Path, folder: Path, outputs: tuple[str, ...]) -> None:
        """Build as a node would, then keep what the round's `outputs` ask for, as a download would."""
        try:
            work.mkdir(parents=True, exist_ok=True)
            archive = builder()
            with zipfile.ZipFile(archive) as zipped:
                for member in zipped.infolist():
                    if not member.is_dir() and output_matches(member.filename, outputs):
                        zipped.extract(member, folder)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    # ---- a submodel on the cluster (ODM's execute_remote_task) -------------------------------------

    def submodel_options(self) -> dict[str, Any]:
        """The parent's options as ODM passes them to a submodel (get_submodel_args_dict)."""
        options = {k: v for k, v in self.options.items() if k not in SUBMODEL_REMOVED}
        return options | dict.fromkeys(SUBMODEL_ADDED, True)

    async def _process_remote(self, job: _Job, plan: RoundPlan, state: _RoundState) -> None:
        assert self._node is not None
        loop = asyncio.get_running_loop()
        seed = await loop.run_in_executor(self._pool, make_seed, job.folder, plan)
        files = [str(job.folder / "images" / name) for name in job.submodel.photos]
        files += [str(job.folder / side) for side in ("gcp_list.txt", "geo.txt") if (job.folder / side).is_file()]
        files.append(str(seed))
        task_uuid = str(uuidlib.uuid4())
        self._remote_tasks[task_uuid] = self._node.get_task(task_uuid)  # known before the upload ends: removable
        self.console(f"[INFO]    LRE: uploading {job.label} to sm-cluster ({len(job.submodel.photos)} photos, "
                     f"{plan.round.value})")
        try:
            task = await self._call(self._node.create_task, files, self.submodel_options(),
                                    progress_callback=self._stop_check, skip_post_processing=True,
                                    outputs=list(plan.outputs), parallel_uploads=4, max_retries=MAX_RETRIES,
                                    retry_timeout=self.retry_seconds, task_uuid=task_uuid)
        finally:
            with contextlib.suppress(FileNotFoundError):
                seed.unlink()
        self._remote_tasks[task.uuid] = task
        job.remote = task
        info = await self._call(task.info)
        if info.status in (ClusterStatus.RUNNING, ClusterStatus.COMPLETED):
            self.console(f"[INFO]    LRE: {job.label} sent to sm-cluster (task {task.uuid}, {plan.round.value})")
            monitor = _watched(self._monitor(job, task, state), state)
            self._monitors.add(monitor)
            monitor.add_done_callback(self._monitors.discard)
        elif info.status == ClusterStatus.QUEUED:
            raise TaskLimitReached("Task limit reached")
        else:
            raise RuntimeError(f"Could not send task to node, task status is {info.status}")

    async def _monitor(self, job: _Job, task: Any, state: _RoundState) -> None:
        def status_callback(info: Any) -> None:
            self._stop_check()
            if info.status == ClusterStatus.QUEUED:  # a node that turned RUNNING to QUEUED is full after all
                raise TaskLimitReached("Delayed task limit reached")

        try:
            await self._call(task.wait_for_completion, status_callback=status_callback, interval=POLL_SECONDS,
                             retry_timeout=max(self.retry_seconds, POLL_SECONDS))
            self.console(f"[INFO]    LRE: downloading {job.label} from sm-cluster")
            await self._call(task.download_assets, str(job.folder), parallel_downloads=1)
        except odx_errors.TaskFailedError:
            lines = await self._remote_output(task)
            error: BaseException = odx_errors.TaskFailedError(
                f"({task.uuid}) failed with task output: " + " | ".join(lines[-10:]))
            await self._handle(state, job, local=False, error=error)
        except (asyncio.CancelledError, _Stopped):
            raise
        except Exception as exc:  # noqa: BLE001  connection, download, a vanished task: retried as ODM does
            await self._handle(state, job, local=False, error=exc)
        else:
            await self._handle(state, job, local=False)

    async def _remote_output(self, task: Any) -> list[str]:
        try:
            return [str(line) for line in await self._call(task.output)]
        except odx_errors.GenericError:
            return ["(its output could not be read)"]

    async def _count_running(self) -> int:
        """ODM's estimate of the cluster's limit: our tasks there that really run (started, with output)."""
        running = 0
        for task in list(self._remote_tasks.values()):
            try:
                info = await self._call(task.info, with_output=-3)
            except odx_errors.GenericError:
                continue
            if info.status == ClusterStatus.RUNNING and info.processing_time >= 0 and len(info.output or []) >= 3:
                running += 1
        return running

    # ---- cleanup -----------------------------------------------------------------------------------

    async def _remove_job_task(self, job: _Job) -> None:
        task, job.remote = job.remote, None
        if task is not None and self._remote_tasks.pop(task.uuid, None) is not None:
            removed = await self._remove(task)
            self.console(f"[INFO]    LRE: removed {job.label}'s task {task.uuid} from sm-cluster"
                         + ("" if removed else " (it was gone)"))

    async def _remove(self, task: Any) -> bool:
        try:
            return bool(await asyncio.wait_for(self._call(task.remove), CLEANUP_SECONDS))
        except (odx_errors.GenericError, TimeoutError):
            return False

    async def _remove_remote_tasks(self) -> None:
        """ODM's cleanup_remote_tasks: every remote task still known is removed (once uploads in flight
        have returned, so that none is committed behind the cleanup's back)."""
        if self._in_flight:
            await asyncio.wait([asyncio.wrap_future(f) for f in self._in_flight], timeout=CLEANUP_SECONDS)
        tasks, self._remote_tasks = list(self._remote_tasks.values()), {}
        if tasks:
            self.console(f"[WARNING] LRE: removing {len(tasks)} remote tasks left on sm-cluster")
        results = await asyncio.gather(*(self._remove(task) for task in tasks))
        for task, removed in zip(tasks, results):
            log.info("remote task %s removed: %s", task.uuid, "yes" if removed else "no (gone or unreachable)")

    async def _cancel_monitors(self) -> None:
        monitors = list(self._monitors)
        for monitor in monitors:
            monitor.cancel()
        if monitors:
            await asyncio.gather(*monitors, return_exceptions=True)

    async def _shutdown(self) -> None:
        self._stopping = True
        try:
            await self._cancel_monitors()
            await self._remove_remote_tasks()
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # ---- threads -----------------------------------------------------------------------------------

    def _stop_check(self, *_: object) -> None:
        """Given to pyodx as a callback: makes its blocking loops end once the parent stops."""
        if self._stopping:
            raise _Stopped("the parent task stopped")

    def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Awaitable[Any]:
        """A blocking pyodx call on this split-merge's threads; remembered until it returns."""
        future = self._pool.submit(function, *args, **kwargs)
        self._in_flight.add(future)
        future.add_done_callback(self._in_flight.discard)
        return asyncio.wrap_future(future)


def _watched(work: Coroutine[Any, Any, None], state: _RoundState) -> asyncio.Task:
    """A worker or monitor whose unexpected end fails the round instead of leaving it waiting forever."""
    task = asyncio.create_task(work)

    def ended(done: asyncio.Task) -> None:
        if not done.cancelled() and done.exception() is not None and state.error is None:
            log.error("split-merge: %s broke", work.__qualname__, exc_info=done.exception())
            state.error = SplitMergeFailed(f"split-merge broke ({done.exception()!r})")
        state.changed.set()

    task.add_done_callback(ended)
    return task


def _positions(images: list[Path]) -> tuple[dict[str, tuple[float, float]], list[str]]:
    """Photo name -> (easting, northing) in the flight's UTM zone, and the names without GPS."""
    tags = {path.name: read_exif(path).geotag for path in images}
    placed = {name: tag for name, tag in tags.items() if tag is not None}
    unplaced = sorted(name for name, tag in tags.items() if tag is None)
    if not placed:
        return {}, unplaced
    latitude = sum(t.latitude for t in placed.values()) / len(placed)
    longitude = sum(t.longitude for t in placed.values()) / len(placed)
    epsg = utm_epsg(latitude, longitude)
    projected = transform_points([(t.longitude, t.latitude) for t in placed.values()], 4326, epsg)
    return dict(zip(placed, projected)), unplaced


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
