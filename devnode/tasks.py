"""The task manager: NodeODX's queue, slots and task life cycle, with ODX's processing simulated.

It follows NodeODX's TaskManager and Task closely, because clients (pyodx, WebODM, the relay) depend on
the details: a committed task is RUNNING while it initialises, then QUEUED; tasks start in the order
they were added, up to `slots` at once; `taskQueueCount` counts QUEUED and RUNNING; progress rises to
90 while the engine runs, 93 after post-processing, 97 once `all.zip` exists and 100 at the end, even
on failure; cancel works on any task, restart only on ended ones; a webhook is called when a
processing run ends. Processing itself is a timed script of log lines followed by `build_outputs`,
which makes a real, georeferenced `all.zip`; memory falls by the shared memory model while tasks run.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import re
import shutil
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp

from shared.inputs import SEED, InputKind, classify, count_against_max_images
from shared.memory import estimate_memory_mb
from shared.types import TaskStatus

from .config import DIE_EXIT_CODE, Config
from .merge import merge_outputs
from .node_options import OptionsRefused, filter_options, with_post_processing
from .opensfm import build_reconstruction
from .seed import Round, SeedRefused, output_matches, project_round, unpack_seed
from .split_merge import SplitMerge, SplitMergeFailed, SplitRequest, redact
from .uploads import Staging
from .webhooks import notify

log = logging.getLogger("devnode.tasks")

#: ODX's pipeline stages, in order; the simulated log walks through them.
STAGES = ("dataset", "opensfm", "openmvs", "odm_filterpoints", "odm_meshing", "mvs_texturing",
          "odm_georeferencing", "odm_dem", "odm_orthophoto", "odm_report", "odm_postprocess")
#: The stages each part of the pipeline runs: a whole task, or one round of a split-merge submodel
#: (ODM stops after OpenSfM in round one and starts after it in round two).
ROUND_STAGES = {Round.WHOLE: STAGES, Round.RECONSTRUCTION: STAGES[:2], Round.TOOLCHAIN: STAGES[2:]}
#: Share of the machine's memory taken before any task runs (the system and the node itself).
IDLE_MEMORY_FRACTION = 0.10
TASKS_FILE = "tasks.json"
#: One JSON line per processing run that ended (uuid, run, status, images), appended and never read by the
#: node: the fault suite counts from it how often each task ran to completion, and on which files (a
#: task removed since still shows there). Answers to requests do not change.
RUNS_FILE = "runs.jsonl"

#: Longest a removal waits for a canceled run to finish cleaning up (a split-merge parent's remote tasks).
STOP_WAIT_SECONDS = 60.0

BuildOutputs = Callable[..., Path]


class TaskError(Exception):
    """A command NodeODX refuses; the message is its `error` (for example "<uuid> not found")."""


def now_ms() -> int:
    return int(time.time() * 1000)


def _js_date(ms: int) -> str:
    """JavaScript's Date.toISOString(), which NodeODX uses in default task names."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _parse_int(value: Any) -> int | None:
    """JavaScript's parseInt: leading digits count, anything else is NaN (None)."""
    match = re.match(r"\s*([-+]?\d+)", str(value)) if value is not None else None
    return int(match.group(1)) if match else None


def _safe_paths(raw: Any) -> list[str]:
    """NodeODX's parseUnsafePathsList: the `outputs` field's relative paths that stay inside the task."""
    try:
        paths = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        return []
    if not isinstance(paths, list):
        return []
    safe = []
    for path in paths:
        if isinstance(path, str) and path and not path.startswith(("/", "\\")) \
                and ".." not in re.split(r"[\\/]", path):
            safe.append(path)
    return safe


def _task_name(given: str | None) -> str | None:
    """NodeODX's `name !== "" ? name : "Task of <date>"`: an empty name gets a default, a missing one
    stays missing (its info then has no `name` at all, as after an init whose fields were ignored)."""
    return f"Task of {_js_date(now_ms())}" if given == "" else given


@dataclass
class Task:
    """One task as NodeODX keeps it; `info()` is exactly its `/task/{uuid}/info` reply."""

    uuid: str
    name: str | None
    options: list[dict]
    webhook: str | None = None
    skip_post_processing: bool = False
    outputs: list[str] = field(default_factory=list)
    date_created: int = field(default_factory=now_ms)
    images_estimate: int = -1
    status: TaskStatus = TaskStatus.RUNNING
    error_message: str | None = None
    images: list[str] | None = None
    progress: float = 0
    output: list[str] = field(default_factory=list)
    date_started: int = 0
    processing_time: int = -1
    initialized: bool = False
    run: int = 0

    @classmethod
    def from_form(cls, uuid: str, form: dict, options: list[dict], images_estimate: int) -> Task:
        """A new task from the fields of `/task/new` or `/task/new/init`, as NodeODX reads them."""
        created = _parse_int(form.get("dateCreated"))
        return cls(
            uuid=uuid,
            name=_task_name(form.get("name")),
            options=options,
            webhook=form.get("webhook") or None,
            skip_post_processing=form.get("skipPostProcessing") in ("true", True),
            outputs=_safe_paths(form.get("outputs")),
            date_created=now_ms() if created is None else created,
            images_estimate=images_estimate,
        )

    @property
    def images_count(self) -> int:
        return len(self.images) if self.images is not None else self.images_estimate

    def set_status(self, status: TaskStatus, error_message: str | None = None) -> None:
        self.status = status
        self.error_message = error_message

    def update_progress(self, value: float) -> None:
        """Progress never goes back within a run, as in NodeODX (its updates arrive out of order)."""
        value = round(min(100.0, max(0.0, float(value))), 2)
        if value >= self.progress:
            self.progress = int(value) if value.is_integer() else value  # 100, not 100.0, as NodeODX writes it

    def info(self) -> dict:
        status: dict[str, Any] = {"code": int(self.status)}
        if self.error_message is not None:
            status["errorMessage"] = self.error_message
        processing_time = self.processing_time
        if self.status == TaskStatus.RUNNING and self.date_started:
            processing_time = now_ms() - self.date_started
        body: dict[str, Any] = {"uuid": self.uuid}
        if self.name is not None:  # JSON.stringify leaves out NodeODX's undefined name
            body["name"] = self.name
        return body | {
            "dateCreated": self.date_created,
            "processingTime": processing_time,
            "status": status,
            "options": self.options,
            "imagesCount": self.images_count,
            "progress": self.progress,
        }

    def to_json(self) -> dict:
        data = asdict(self)
        data["status"] = int(self.status)
        return data

    @classmethod
    def from_json(cls, data: dict) -> Task:
        task = cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        task.status = TaskStatus(int(task.status))
        return task


def simulated_log(task: Task, stages: tuple[str, ...] = STAGES) -> list[str]:
    """The console lines a run prints, one ODX stage after another (`stages`: those this run goes through)."""
    lines = [f"[INFO]    Initializing ODX - {dt.datetime.now().strftime('%a %b %d %H:%M:%S %Y')}",
             "[INFO]    =============="]
    lines += [f"[INFO]    {opt['name']}: {redact(str(opt['value']), str(opt['value']))}" for opt in task.options]
    lines.append("[INFO]    ==============")
    for stage in stages:
        lines.append(f"[INFO]    Running {stage} stage")
        if stage == "dataset":
            lines += [f"[INFO]    Loading {name}" for name in task.images or []]
            lines.append(f"[INFO]    Found {task.images_count} usable images")
        lines.append(f"[INFO]    Finished {stage} stage")
    lines.append(f"[INFO]    ODX app finished - {dt.datetime.now().strftime('%a %b %d %H:%M:%S %Y')}")
    return lines


def keep_only(zip_path: Path, outputs: list[str]) -> None:
    """Rewrite `all.zip` with only the entries under `outputs` (the task's `outputs` field)."""
    partial = zip_path.with_suffix(".partial")
    with zipfile.ZipFile(zip_path) as src, zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            if output_matches(item.filename, outputs):
                with src.open(item) as data, dst.open(item, "w") as out:
                    shutil.copyfileobj(data, out, 1024 * 1024)
    os.replace(partial, zip_path)


def _crash() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(DIE_EXIT_CODE)


class TaskManager:
    """Every task of one node, its queue and its running slots. Lives inside the aiohttp Application."""

    def __init__(self, config: Config, available_options: list[dict], build_outputs: BuildOutputs):
        self.config = config
        self.available_options = available_options
        self.staging = Staging(config.data_dir / "tmp")
        self.tasks: dict[str, Task] = {}
        self._build_outputs = build_outputs
        self._running: dict[str, asyncio.Task] = {}
        self._stopping: dict[str, asyncio.Task] = {}  # canceled runs still cleaning up
        self._reserved: dict[str, int] = {}
        self._builds: dict[str, Future] = {}
        self._background: set[asyncio.Task] = set()
        self._executor = ThreadPoolExecutor(max_workers=max(1, min(config.slots, os.cpu_count() or 1)),
                                            thread_name_prefix="devnode-build")
        self._session: aiohttp.ClientSession | None = None
        self._started = 0
        self._closing = False

    # ---- life of the manager -------------------------------------------------------------------------

    async def start(self) -> None:
        """Reload the task list a previous run of this node left in its data folder, then start work."""
        self._session = aiohttp.ClientSession()
        self._restore()
        self._process_next()

    async def close(self) -> None:
        """Stop work without changing any task: a task running now is queued again at the next start."""
        self._closing = True
        for runner in list(self._running.values()) + list(self._background):
            runner.cancel()
        await asyncio.gather(*self._running.values(), *self._stopping.values(), *self._background,
                             return_exceptions=True)
        self._dump()
        if self._session is not None:
            await self._session.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _restore(self) -> None:
        path = self.config.data_dir / TASKS_FILE
        if not path.is_file():
            return
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("could not load %s (%s); starting with no tasks", path, exc)
            return
        for data in saved:
            task = Task.from_json(data)
            task.initialized = True
            if task.status == TaskStatus.RUNNING:
                task.set_status(TaskStatus.QUEUED)
            self.tasks[task.uuid] = task
        log.info("restored %d tasks from %s", len(self.tasks), path)

    def _journal(self, task: Task) -> None:
        """Append the end of `task`'s current run to RUNS_FILE."""
        line = {"uuid": task.uuid, "run": task.run, "status": int(task.status), "images": task.images,
                "ended": now_ms()}
        with (self.config.data_dir / RUNS_FILE).open("a", encoding="utf-8") as journal:
            journal.write(json.dumps(line) + "\n")

    def _dump(self) -> None:
        path = self.config.data_dir / TASKS_FILE
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps([t.to_json() for t in self.tasks.values()]), encoding="utf-8")
        os.replace(partial, path)

    # ---- what /info reports --------------------------------------------------------------------------

    def queue_count(self) -> int:
        return sum(1 for t in self.tasks.values() if t.status in (TaskStatus.QUEUED, TaskStatus.RUNNING))

    def available_memory(self) -> int:
        """Bytes free: the machine less what is idle-used and what the running tasks need by the model."""
        total = self.config.total_memory
        return max(0, total - int(total * IDLE_MEMORY_FRACTION) - sum(self._reserved.values()))

    # ---- tasks ---------------------------------------------------------------------------------------

    def find(self, uuid: str) -> Task | None:
        return self.tasks.get(uuid)

    def require(self, uuid: str) -> Task:
        task = self.tasks.get(uuid)
        if task is None:
            raise TaskError(f"{uuid} not found")
        return task

    def task_dir(self, uuid: str) -> Path:
        return self.config.data_dir / uuid

    def create(self, uuid: str, form: dict) -> Task:
        """Turn the staged upload `uuid` into a task (NodeODX's createTask); OptionsRefused leaves no trace."""
        try:
            options = filter_options(self.available_options, form.get("options"))
        except OptionsRefused:
            self.staging.discard(uuid)
            raise
        task = Task.from_form(uuid, form, options, images_estimate=len(self.staging.files(uuid)))
        self.tasks.pop(uuid, None)  # a uuid sent again with set-uuid: the new task goes to the end of the queue
        self.tasks[uuid] = task
        self._initialize(task)
        self._dump()
        self._process_next()
        return task

    def _initialize(self, task: Task) -> None:
        """Move the staged files into the task's folder and check them, as NodeODX's Task.initialize does."""
        folder = self.task_dir(task.uuid)
        images = folder / "images"
        gcp = folder / "gcp"
        shutil.rmtree(folder, ignore_errors=True)
        gcp.mkdir(parents=True)
        staged = self.staging.folder(task.uuid)
        if staged.is_dir():
            shutil.move(str(staged), str(images))
        else:
            images.mkdir()
        if (images / SEED).is_file():  # unpacked into the project first, as NodeODX's handleSeed does
            try:
                unpack_seed(images / SEED, folder)
            except SeedRefused as exc:
                self._fail_initialisation(task, str(exc))
                return
        count = count_against_max_images(images.iterdir())
        limit = self.config.max_images
        if limit and count > limit:
            self._fail_initialisation(task, f"{count} images uploaded, but this node can only process up to {limit}.")
            return
        for path in list(images.iterdir()):  # side files to gcp/, archives deleted, photos stay
            kind = classify(path.name)
            if kind in (InputKind.DISCARDED, InputKind.SEED):
                path.unlink()
            elif kind is not InputKind.PHOTO:
                path.rename(gcp / path.name)
        if not task.skip_post_processing:
            task.options = with_post_processing(task.options, self.available_options)
        task.images = sorted(p.name for p in images.iterdir())
        if task.status == TaskStatus.RUNNING:
            task.set_status(TaskStatus.QUEUED)
        task.initialized = True
        log.info("task %s queued (%d images, name %r)", task.uuid, task.images_count, task.name)

    def _fail_initialisation(self, task: Task, message: str) -> None:
        task.set_status(TaskStatus.FAILED, message)
        task.initialized = True
        shutil.rmtree(self.task_dir(task.uuid), ignore_errors=True)
        log.info("task %s failed at initialisation: %s", task.uuid, message)

    async def cancel(self, uuid: str) -> None:
        task = self.require(uuid)
        if task.status == TaskStatus.CANCELED:
            return
        task.set_status(TaskStatus.CANCELED)
        task.processing_time = -1
        self._reserved.pop(uuid, None)
        runner = self._running.pop(uuid, None)
        if runner is not None:
            runner.cancel()  # a split-merge parent goes on a moment, removing its tasks on the sm-cluster
            self._stopping[uuid] = runner
            runner.add_done_callback(lambda _, uuid=uuid: self._stopping.pop(uuid, None))
        log.info("task %s canceled", uuid)
        self._dump()
        self._process_next()

    async def remove(self, uuid: str) -> None:
        """Cancel, then delete the task's files; waits for an output build still writing into them."""
        await self.cancel(uuid)
        stopping = self._stopping.get(uuid)
        if stopping is not None:  # its clean-up still runs: let it end before its folder goes
            await asyncio.wait({stopping}, timeout=STOP_WAIT_SECONDS)
        task = self.tasks.pop(uuid)
        build = self._builds.pop(uuid, None)
        if build is not None and not build.done():
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wrap_future(build)
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: shutil.rmtree(self.task_dir(task.uuid), ignore_errors=True))
        log.info("task %s removed", uuid)
        self._dump()
        self._process_next()

    async def restart(self, uuid: str, options: Any = None) -> None:
        """Queue an ended task again; `options`, when given, replace the task's (NodeODX checks them first)."""
        new_options = filter_options(self.available_options, options) if options else None
        task = self.require(uuid)
        if task.status not in (TaskStatus.CANCELED, TaskStatus.FAILED, TaskStatus.COMPLETED):
            raise TaskError("Task cannot be restarted")
        task.run += 1  # whatever the previous run still reports is about a run that no longer counts
        task.set_status(TaskStatus.QUEUED)
        task.date_created = now_ms()
        task.date_started = 0
        task.output = []
        task.progress = 0
        task.processing_time = -1
        if new_options is not None:
            task.options = new_options if task.skip_post_processing \
                else with_post_processing(new_options, self.available_options)
        log.info("task %s restarted", uuid)
        self._dump()
        self._process_next()

    # ---- processing ----------------------------------------------------------------------------------

    def _process_next(self) -> None:
        while not self._closing and len(self._running) < self.config.slots:
            task = next((t for t in self.tasks.values()
                         if t.status == TaskStatus.QUEUED and t.initialized), None)
            if task is None:
                return
            self._start(task)

    def _start(self, task: Task) -> None:
        task.run += 1
        task.date_started = now_ms()
        task.processing_time = 0
        task.set_status(TaskStatus.RUNNING)
        options = {opt["name"]: opt["value"] for opt in task.options}
        self._reserved[task.uuid] = estimate_memory_mb(task.images_count, options) * 1024 ** 2
        runner = asyncio.get_running_loop().create_task(self._run(task))
        self._running[task.uuid] = runner
        runner.add_done_callback(lambda done, run=task.run: self._finished(task, run, done))
        self._started += 1
        log.info("task %s running (%d images, %d of %d slots busy)", task.uuid, task.images_count,
                 len(self._running), self.config.slots)
        if self.config.die_after and self._started >= self.config.die_after:
            delay = self.config.seconds_per_image * max(task.images_count, 1) / 2
            log.warning("task %s is start number %d: --die-after reached, exiting in %.2f s",
                        task.uuid, self._started, delay)
            asyncio.get_running_loop().call_later(delay, _crash)

    async def _run(self, task: Task) -> None:
        if not task.images:
            task.output.append("[ERROR]   Not enough supported images in the images folder")
            task.set_status(TaskStatus.FAILED, "Cannot process dataset")
            return
        folder = self.task_dir(task.uuid)
        # planning reads every photo's EXIF: off the event loop
        splitter = await asyncio.get_running_loop().run_in_executor(None, self._splitter, task)
        if splitter is not None:
            build = await self._run_split(task, splitter)
        else:
            build = await self._run_stages(task, project_round(folder))
        if build is None:
            return
        if not task.skip_post_processing:
            task.output.append("Postprocessing: done")
            task.update_progress(93)
        task.output.append("Compressing all.zip\n")
        try:
            await self._build(task, build)
        except Exception as exc:  # the outputs could not be made: the task fails, the node lives on
            log.exception("task %s: building outputs failed", task.uuid)
            task.set_status(TaskStatus.FAILED, f"Could not build outputs ({exc})")
            return
        task.update_progress(97)
        task.set_status(TaskStatus.COMPLETED)

    def round_seconds(self, part: Round, images: int) -> float:
        """Simulated processing time of `images` photos for one part of the pipeline (each stage an equal
        share of `--seconds-per-image`), so that a task's two split-merge rounds add up to a whole run."""
        return self.config.seconds_per_image * images * len(ROUND_STAGES[part]) / len(STAGES)

    async def _run_stages(self, task: Task, part: Round) -> Callable[[], Path] | None:
        """The timed log of the stages `part` runs; the function that builds its outputs, None on failure."""
        lines = simulated_log(task, ROUND_STAGES[part])
        step = self.round_seconds(part, task.images_count) / len(lines)
        fail_at = len(lines) // 2 if self.config.fail_tasks else -1
        for number, line in enumerate(lines):
            await asyncio.sleep(step)
            task.output.append(line)
            task.update_progress(90.0 * (number + 1) / len(lines))
            if number == fail_at:
                task.output.append("[ERROR]   The program exited with a non-zero status: 1 (--fail-tasks)")
                task.set_status(TaskStatus.FAILED, "Cannot process dataset")
                return None
        folder = self.task_dir(task.uuid)
        images = [folder / "images" / name for name in task.images or []]
        if part is Round.RECONSTRUCTION:
            return partial(build_reconstruction, images, folder)
        options = {opt["name"]: opt["value"] for opt in task.options}
        return partial(self._build_outputs, images, folder, skip_post_processing=task.skip_post_processing,
                       options=options)

    def _splitter(self, task: Task) -> SplitMerge | None:
        """The task's split-merge when its options ask for one and its photos make more than one submodel."""
        options = {opt["name"]: opt["value"] for opt in task.options}
        request = SplitRequest.from_options(options)
        if request is None:
            return None
        folder = self.task_dir(task.uuid)
        side_files = sorted(p for p in (folder / "gcp").iterdir()) if (folder / "gcp").is_dir() else []
        splitter = SplitMerge(folder, [folder / "images" / name for name in task.images or []], side_files,
                              options, request, console=task.output.append, progress=task.update_progress,
                              seconds_for=self.round_seconds, build_outputs=self._build_outputs,
                              build_reconstruction=build_reconstruction,
                              retry_seconds=self.config.sm_retry_seconds)
        return splitter if splitter.plan() else None

    async def _run_split(self, task: Task, splitter: SplitMerge) -> Callable[[], Path] | None:
        """The parent of a split-merge: its submodels' two rounds, then the merge as its outputs."""
        task.output += simulated_log(task, ("dataset",))[:-1]
        task.output.append("[INFO]    Running split stage")
        if self.config.fail_tasks:
            task.output.append("[ERROR]   The program exited with a non-zero status: 1 (--fail-tasks)")
            task.set_status(TaskStatus.FAILED, "Cannot process dataset")
            return None
        try:
            await splitter.run()
        except SplitMergeFailed as exc:
            task.output.append(f"[ERROR]   Split-merge failed: {exc}")
            task.set_status(TaskStatus.FAILED, f"Split-merge failed: {exc}")
            return None
        task.output.append("[INFO]    Running merge stage")
        task.output.append(f"[INFO]    Merging {len(splitter.submodels)} submodels: orthophoto, DSM, DTM, point cloud")
        task.update_progress(90)
        images = [self.task_dir(task.uuid) / "images" / name for name in task.images or []]
        return partial(merge_outputs, splitter.submodel_dirs, images, self.task_dir(task.uuid),
                       skip_post_processing=task.skip_post_processing)

    async def _build(self, task: Task, make: Callable[[], Path]) -> None:
        previous = self._builds.get(task.uuid)
        if previous is not None and not previous.done():
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wrap_future(previous)
        folder = self.task_dir(task.uuid)
        (folder / "task_output.txt").write_text("\n".join(task.output), encoding="utf-8")

        def build() -> None:
            zip_path = make()
            if task.outputs:
                keep_only(zip_path, task.outputs)

        future = self._executor.submit(build)
        self._builds[task.uuid] = future
        await asyncio.wrap_future(future)

    def _finished(self, task: Task, run: int, runner: asyncio.Task) -> None:
        """A run ended (completed, failed or canceled): free its slot, tell the webhook, start the next."""
        if self._running.get(task.uuid) is runner:
            del self._running[task.uuid]
        broke = None if runner.cancelled() else runner.exception()
        if self._closing or self.tasks.get(task.uuid) is not task or task.run != run:
            return
        if broke is not None:
            log.error("task %s: the simulation broke", task.uuid, exc_info=broke)
            task.set_status(TaskStatus.FAILED, "Processing failed (devnode error)")
        self._reserved.pop(task.uuid, None)
        task.update_progress(100)
        task.processing_time = now_ms() - task.date_started
        level = logging.WARNING if task.status == TaskStatus.FAILED else logging.INFO
        log.log(level, "task %s %s after %.1f s%s", task.uuid, task.status.name.lower(),
                task.processing_time / 1000, f": {task.error_message}" if task.error_message else "")
        self._dump()
        self._journal(task)
        if task.webhook and self._session is not None:
            payload = dict(task.info(), images=[])
            background = asyncio.get_running_loop().create_task(
                notify(self._session, task.webhook, payload, task.uuid))
            self._background.add(background)
            background.add_done_callback(self._background.discard)
        self._process_next()
