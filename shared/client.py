"""A synchronous NodeODX client with pyodx's surface, for the plugin, the tests and any Python user.

Where it differs from pyodx, it is on purpose:
- `Node.from_url` keeps https on any port and a path prefix (a relay behind a reverse proxy);
- uploads stream each file from disk and report progress in bytes, not files; a failed file is sent
  again with growing back-off;
- options and the image count are checked against the server before any byte is uploaded;
- `download_zip` fetches ranges in parallel into one pre-sized file (no part files to merge) and falls
  back to a single stream when the server ignores Range, as NodeODX does;
- `download_asset` asks for one product by name (a relay serves it alone) and falls back to
  extracting it from `all.zip` when the server is a plain node.
"""
from __future__ import annotations

import datetime as _dt
import json
import mimetypes
import os
import queue
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, urlencode, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

try:  # the QGIS plugin carries requests_toolbelt beside this package instead of on sys.path
    from ..requests_toolbelt.multipart.encoder import MultipartEncoder
except (ImportError, ValueError):
    from requests_toolbelt.multipart.encoder import MultipartEncoder

from . import endpoints
from .assets import ALL_ZIP, asset_by_name, safe_member
from .errors import (
    GenericError,
    NodeConnectionError,
    NodeResponseError,
    NodeServerError,
    OptionsError,
    RangeNotAvailableError,
    TaskFailedError,
)
from .inputs import count_photos
from .multipart import BLOCK, FilePart
from .options import options_to_json, validate_task
from .types import NodeInfo, NodeOption, TaskInfo, TaskStatus

ProgressCallback = Callable[[float], Any]
CHUNK = 1024 * 1024


class Node:
    """A NodeODX node or an ODX Relay, addressed by host and port (or by URL, see `from_url`)."""

    def __init__(self, host: str, port: int | None = None, token: str = "", timeout: float = 30, *,
                 scheme: str | None = None, base_path: str = "", proxies: Mapping[str, str] | None = None,
                 verify: bool | str = True, session: requests.Session | None = None):
        self.host = host
        self.scheme = scheme or ("https" if port == 443 else "http")
        self.port = port or (443 if self.scheme == "https" else 80)
        self.token = token or ""
        self.timeout = timeout
        self.base_path = "/" + base_path.strip("/") if base_path.strip("/") else ""
        self.session = session or requests.Session()
        adapter = HTTPAdapter(pool_maxsize=32)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        if proxies:
            self.session.proxies.update(proxies)
        self.session.verify = verify

    @classmethod
    def from_url(cls, url: str, timeout: float = 30, **kwargs: Any) -> Node:
        """`http(s)://host[:port][/prefix][?token=T]`; the scheme, port and prefix are all kept."""
        parts = urlsplit(url if "://" in url else "http://" + url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        token = parse_qs(parts.query).get("token", [""])[0]
        return cls(parts.hostname, parts.port, kwargs.pop("token", token), timeout,
                   scheme=parts.scheme, base_path=parts.path, **kwargs)

    def __repr__(self) -> str:
        return f"Node({self.url('/', with_token=False)!r})"

    def close(self) -> None:
        """Close the pooled connections (`with Node.from_url(...) as node:` does it for you)."""
        self.session.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, path: str, query: Mapping[str, Any] | None = None, *, with_token: bool = True) -> str:
        """Absolute URL for an API path; the token rides in the query, as NodeODX expects."""
        params = dict(query or {})
        if with_token and self.token:
            params["token"] = self.token
        default = 443 if self.scheme == "https" else 80
        netloc = self.host if self.port == default else f"{self.host}:{self.port}"
        if ":" in self.host and not self.host.startswith("["):
            netloc = f"[{self.host}]" if self.port == default else f"[{self.host}]:{self.port}"
        return urlunsplit((self.scheme, netloc, self.base_path + path, urlencode(params), ""))

    # --- transport ----------------------------------------------------------------------------
    def request(self, method: str, path: str, query: Mapping[str, Any] | None = None,
                **kwargs: Any) -> requests.Response:
        """Send one request; map network failures and HTTP error codes to this library's errors."""
        kwargs.setdefault("timeout", self.timeout)
        try:
            response = self.session.request(method, self.url(path, query), **kwargs)
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:  # (its text holds the URL)
            raise NodeConnectionError(_redact(self, f"cannot reach {self.url('/', with_token=False)}: {exc}")) from exc
        except requests.exceptions.RequestException as exc:
            raise NodeConnectionError(_redact(self, str(exc))) from exc
        if response.status_code in (200, 206):
            return response
        message = _error_text(response)
        if response.status_code == 401:
            raise NodeResponseError(message or "Unauthorized: the server needs a token, or a different one")
        if response.status_code == 403 and message:
            raise NodeResponseError(message)
        raise NodeServerError(f"HTTP {response.status_code} from {method} {path}"
                              + (f": {message}" if message else ""), response.status_code)

    def get_json(self, path: str, query: Mapping[str, Any] | None = None) -> Any:
        return _json_or_error(self.request("GET", path, query))

    def post_json(self, path: str, data: Any = None, headers: Mapping[str, str] | None = None) -> Any:
        return _json_or_error(self.request("POST", path, data=data, headers=dict(headers or {})))

    # --- node ---------------------------------------------------------------------------------
    def info(self) -> NodeInfo:
        return NodeInfo.from_json(self.get_json(endpoints.INFO))

    def options(self) -> list[NodeOption]:
        return [NodeOption.from_json(o) for o in self.get_json(endpoints.OPTIONS)]

    def version_greater_or_equal_than(self, version: str) -> bool:
        def parts(v: str) -> tuple[int, ...]:
            return tuple(int(p) for p in v.split(".")[:3] if p.isdigit())
        return parts(self.info().version) >= parts(version)

    def list_tasks(self) -> list[str]:
        """UUIDs of the tasks this token can see."""
        return [t["uuid"] for t in self.get_json(endpoints.TASK_LIST)]

    def tasks(self, status: int | str | Iterable[int | str] | None = None, sort_by: str | None = None,
              limit: int | None = None, offset: int = 0, *, name: str | None = None,
              created_after: _dt.datetime | int | None = None, created_before: _dt.datetime | int | None = None,
              min_duration: float | None = None, max_duration: float | None = None) -> list[TaskInfo]:
        """The tasks this token sees, as TaskInfo, filtered and ordered (UP42's `Job.all`).

        `status`: codes or names (`TaskStatus.COMPLETED`, 40, "completed", or several); `sort_by`: created, status,
        images or duration, with `.asc` or `.desc` (default created.asc, the list's own order); `limit` and
        `offset`: a page of the result; `name`: contained in the name, any case; `created_after` (inclusive) and
        `created_before` (exclusive): datetimes (naive ones are UTC) or ms since 1970; `min_duration` and
        `max_duration`: seconds of processing time, inclusive. A relay answers it in one request
        (`/task/list` with those parameters and `with_info=true`, from what it last knew of each task); a plain
        NodeODX node is asked for its list and each task's info, and filtered and sorted here."""
        sort, _, way = (sort_by or "created").strip().lower().partition(".")
        if sort not in _SORT_KEYS or way not in ("", "asc", "desc"):
            raise ValueError(f"sort_by must be one of {', '.join(_SORT_KEYS)}, optionally with .asc or .desc, "
                             f"not {sort_by!r}")
        codes = _status_codes(status)
        after, before = _ms(created_after), _ms(created_before)
        if "relay" in self.info().extra:
            query: dict[str, Any] = {"with_info": "true", "sort": f"{sort}.{way or 'asc'}"}
            for key, value in (("status", ",".join(str(c) for c in codes)), ("name", name or ""),
                               ("created_after", after), ("created_before", before),
                               ("min_duration", min_duration), ("max_duration", max_duration),
                               ("limit", limit), ("offset", offset or None)):
                if value not in (None, ""):
                    query[key] = value
            return [TaskInfo.from_json(entry) for entry in self.get_json(endpoints.TASK_LIST, query)]
        infos = []
        for uuid in self.list_tasks():
            data = self.get_json(endpoints.task_info(uuid))
            if isinstance(data, dict) and "error" not in data:  # (removed meanwhile)
                infos.append(TaskInfo.from_json(data))
        def created(info: TaskInfo) -> int:
            return _ms(info.date_created) or 0

        def kept(info: TaskInfo) -> bool:
            return ((not codes or int(info.status) in codes) and (name or "").lower() in info.name.lower()
                    and (after is None or created(info) >= after) and (before is None or created(info) < before)
                    and (min_duration is None or info.processing_time >= min_duration * 1000)
                    and (max_duration is None or info.processing_time <= max_duration * 1000))

        firsts = {"created": created, "status": lambda i: int(i.status), "images": lambda i: i.images_count,
                  "duration": lambda i: i.processing_time}
        infos = sorted((i for i in infos if kept(i)), key=lambda i: (firsts[sort](i), created(i), i.uuid),
                       reverse=way == "desc")
        return infos[offset:None if limit is None else offset + limit]

    def get_task(self, uuid: str) -> Task:
        return Task(self, uuid)

    def check_task(self, files: list, options: Mapping[str, Any] | None = None) -> None:
        """Raise OptionsError listing every problem the server's limits find, before any upload."""
        problems = validate_task(self.options(), options, count_photos(files), self.info().max_images)
        if problems:
            raise OptionsError(problems)

    def create_task(self, files: list, options: Mapping[str, Any] | None = None, name: str | None = None,
                    progress_callback: ProgressCallback | None = None, skip_post_processing: bool = False,
                    webhook: str | None = None, outputs: list[str] | None = None, parallel_uploads: int = 4,
                    max_retries: int = 5, retry_timeout: float = 5, task_uuid: str | None = None,
                    validate: bool = True) -> Task:
        """Init, upload each file (streamed, retried), commit. Returns the new Task."""
        paths = [Path(f) for f in files]
        if not paths:
            raise NodeResponseError("Not enough images: give at least 2 image files")
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise NodeResponseError(f"file not found: {', '.join(missing)}")
        if validate:
            self.check_task(paths, options)
        fields = {"name": name or "", "options": options_to_json(options)}
        if skip_post_processing:
            fields["skipPostProcessing"] = "true"
        if webhook:
            fields["webhook"] = webhook
        if outputs:
            fields["outputs"] = json.dumps(list(outputs))
        body = MultipartEncoder(fields=fields)
        headers = {"Content-Type": body.content_type}
        if task_uuid:
            headers["set-uuid"] = task_uuid
        uuid = _expect_uuid(self.post_json(endpoints.TASK_NEW_INIT, data=body, headers=headers),
                            endpoints.TASK_NEW_INIT)
        _Uploader(self, uuid, paths, progress_callback, parallel_uploads, max_retries, retry_timeout).run()
        commit = endpoints.commit(uuid)
        _expect_uuid(self.post_json(commit), commit)
        return Task(self, uuid)


class Task:
    """A task on a node or relay, by uuid."""

    def __init__(self, node: Node, uuid: str):
        self.node = node
        self.uuid = uuid

    def __repr__(self) -> str:
        return f"Task({self.uuid!r} on {self.node!r})"

    def info(self, with_output: int | None = None) -> TaskInfo:
        query = {} if with_output is None else {"with_output": with_output}
        return TaskInfo.from_json(self.node.get_json(endpoints.task_info(self.uuid), query))

    def output(self, line: int = 0) -> list[str]:
        return list(self.node.get_json(endpoints.task_output(self.uuid), {"line": line}))

    def _command(self, path: str, data: dict) -> bool:
        return bool(self.node.post_json(path, data={"uuid": self.uuid, **data}).get("success"))

    def cancel(self) -> bool:
        return self._command(endpoints.TASK_CANCEL, {})

    def remove(self) -> bool:
        return self._command(endpoints.TASK_REMOVE, {})

    def restart(self, options: Mapping[str, Any] | None = None) -> bool:
        return self._command(endpoints.TASK_RESTART, {} if options is None else {"options": options_to_json(options)})

    def wait_for_completion(self, status_callback: Callable[[TaskInfo], Any] | None = None, interval: float = 3,
                            max_retries: int = 5, retry_timeout: float = 5) -> TaskInfo:
        """Poll until the task ends; raise TaskFailedError (with the node's message) unless COMPLETED.

        Kept as pyodx has it, so code written for pyodx behaves the same: `status_callback` at every poll, and
        `max_retries` unanswered polls in a row (linear back-off, about 75 s by default) end it with the error.
        `track()` is the wait that outlasts a relay restart."""
        retry = 0
        while True:
            try:
                info = self.info()
            except NodeConnectionError:
                if retry >= max_retries:
                    raise
                retry += 1
                time.sleep(retry * retry_timeout)
                continue
            retry = 0
            if status_callback is not None:
                status_callback(info)
            if info.status.is_final:
                break
            time.sleep(interval)
        if info.status != TaskStatus.COMPLETED:
            detail = f": {info.last_error}" if info.last_error else ""
            raise TaskFailedError(f"task {self.uuid} {info.status.name.lower()}{detail}", info.status)
        return info

    def track(self, interval: float = 3, give_up_after: float = 3600, *, max_backoff: float = 30,
              on_lost: Callable[[str, float], Any] | None = None) -> Iterator[TaskInfo]:
        """Follow the task to its end (UP42's `job.track_status()`): yield its TaskInfo each time the status or
        the progress changes, the first and the final one always. A FAILED or CANCELED end is yielded, not
        raised: the caller sees `last_error` and decides.

        Made to outlast a relay restart, or a node or network blip: a poll without an answer (refused, reset,
        timed out) or answered 502/503/504 is tried again after a back-off that doubles from 0.5 s up to
        `max_backoff`, for up to `give_up_after` seconds (an hour by default) without one good answer; then
        NodeConnectionError. An answer that waiting cannot change (the task is gone, a wrong token, any other
        error the server states) ends it at once, with the server's words. `on_lost(message, seconds)` hears of
        each failed poll and how long contact has been lost. No message carries the token."""
        if interval <= 0 or max_backoff <= 0 or give_up_after < 0:
            raise ValueError("interval and max_backoff must be > 0, give_up_after >= 0")
        return self._track(interval, give_up_after, max_backoff, on_lost)

    def _track(self, interval: float, give_up_after: float, max_backoff: float,
               on_lost: Callable[[str, float], Any] | None) -> Iterator[TaskInfo]:
        server = self.node.url("/", with_token=False)
        last: tuple[TaskStatus, float] | None = None
        lost_since: float | None = None
        failures = 0
        while True:
            asked = time.monotonic()
            left = give_up_after - (asked - lost_since) if lost_since is not None else give_up_after
            try:
                info = TaskInfo.from_json(_json_or_error(self.node.request(
                    "GET", endpoints.task_info(self.uuid), timeout=min(self.node.timeout, max(1.0, left)))))
            except GenericError as exc:
                said = _redact(self.node, str(exc))
                if not _worth_waiting_out(exc):
                    hint = " (removed, or not this token's task)" if "not found" in said.lower() else ""
                    text = f"stopped tracking task {self.uuid} on {server}: {said}{hint}"
                    raise (NodeServerError(text, exc.status) if isinstance(exc, NodeServerError)
                           else NodeResponseError(text)) from None
                lost_since = asked if lost_since is None else lost_since
                waited = time.monotonic() - lost_since
                if waited >= give_up_after:
                    raise NodeConnectionError(
                        f"gave up tracking task {self.uuid}: no usable answer from {server} for {waited:.0f} s "
                        f"(last: {said}); the task may still be running there, track it again later") from None
                if on_lost is not None:
                    on_lost(said, waited)
                failures += 1
                time.sleep(min(max_backoff, BACKOFF_FIRST * 2 ** (failures - 1), give_up_after - waited))
                continue
            lost_since, failures = None, 0
            if (info.status, info.progress) != last:
                last = (info.status, info.progress)
                yield info
            if info.status.is_final:
                return
            time.sleep(interval)

    def download_zip(self, destination: str | os.PathLike, progress_callback: ProgressCallback | None = None,
                     parallel_downloads: int = 4, parallel_chunks_size: float = 10,
                     max_retries: int = 5) -> str:
        """Download `all.zip` into `destination` as `<uuid>_all.zip` and return its path."""
        target = Path(destination) / f"{self.uuid}_all.zip"
        _Download(self, ALL_ZIP, target, progress_callback, parallel_downloads,
                  int(parallel_chunks_size * CHUNK), max_retries).run()
        return str(target)

    def download_assets(self, destination: str | os.PathLike, progress_callback: ProgressCallback | None = None,
                        parallel_downloads: int = 4, parallel_chunks_size: float = 10) -> str:
        """Download `all.zip` and extract it into `destination` (refusing members that escape it)."""
        zip_path = self.download_zip(destination, progress_callback, parallel_downloads, parallel_chunks_size)
        try:
            extract_zip(zip_path, destination)
        finally:
            os.remove(zip_path)
        return str(destination)

    def download_asset(self, name: str, destination: str | os.PathLike,
                       progress_callback: ProgressCallback | None = None) -> str:
        """Download one product by catalogue name (e.g. "orthophoto.tif") and return the file's path.

        A relay serves the asset alone; a plain node answers "Invalid asset", and then the asset is
        taken out of `all.zip` instead, so the caller gets the same file either way."""
        asset = asset_by_name(name)
        if asset is None:
            raise NodeResponseError(f"unknown asset {name!r}")
        target = Path(destination) / name
        try:
            _Download(self, name, target, progress_callback, 1, CHUNK, 5).run()
            return str(target)
        except NodeResponseError as exc:
            if "invalid asset" not in str(exc).lower():
                raise
        with tempfile.TemporaryDirectory(dir=destination) as tmp:
            zip_path = self.download_zip(tmp, progress_callback)
            with zipfile.ZipFile(zip_path) as archive:
                members = [m for m in archive.namelist() if m == asset.path
                           or (asset.is_folder and m.startswith(asset.path))]
                if not members:
                    raise NodeResponseError(f"task {self.uuid} has no {name} (looked for {asset.path} in all.zip)")
                if not asset.is_folder:
                    with archive.open(asset.path) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst, BLOCK)
                    return str(target)
                _zip_members(archive, members, target)
        return str(target)


def _zip_members(archive: zipfile.ZipFile, members: list[str], target: Path) -> None:
    """Copy `members` of `archive` into a new zip at `target`, each streamed in blocks (a point cloud's
    tiles or a textured model can hold members of hundreds of MB: never one whole in memory)."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        for member in members:
            info = archive.getinfo(member)
            if info.is_dir():
                out.writestr(member, b"")
                continue
            copy = zipfile.ZipInfo(member, info.date_time)
            copy.compress_type = zipfile.ZIP_DEFLATED
            large = info.file_size >= zipfile.ZIP64_LIMIT
            with archive.open(info) as src, out.open(copy, "w", force_zip64=large) as dst:
                shutil.copyfileobj(src, dst, BLOCK)


def extract_zip(zip_path: str | os.PathLike, destination: str | os.PathLike) -> list[str]:
    """Extract every member that stays inside `destination`; refuse the archive if one would not."""
    with zipfile.ZipFile(zip_path) as archive:
        bad = [m for m in archive.namelist() if not safe_member(m)]
        if bad:
            raise NodeResponseError(f"refusing {zip_path}: member {bad[0]!r} would escape the folder")
        archive.extractall(destination)
        return archive.namelist()


# --- helpers ----------------------------------------------------------------------------------
_SORT_KEYS = ("created", "status", "images", "duration")


#: The first pause after a failed poll in `Task.track`; it doubles up to `max_backoff`.
BACKOFF_FIRST = 0.5
#: HTTP answers a reverse proxy or a restarting relay gives while it cannot serve: waited out by `track`.
PASSING_STATUSES = (502, 503, 504)


def _worth_waiting_out(error: GenericError) -> bool:
    """No answer at all, or a gateway's "not now": what a restart or a blip looks like from here."""
    return isinstance(error, NodeConnectionError) or (
        isinstance(error, NodeServerError) and error.status in PASSING_STATUSES)


def _redact(node: Node, text: str) -> str:
    """`text` without the node's token (requests puts the whole URL, query and all, into its errors)."""
    if node.token:
        for form in {node.token, quote(node.token, safe=""), quote_plus(node.token)}:
            text = text.replace(form, "***")
    return text


def _status_codes(status: int | str | Iterable[int | str] | None) -> list[int]:
    """Status codes from codes, TaskStatus members or names ("completed"), one or several."""
    if status is None:
        return []
    items = [status] if isinstance(status, (int, str)) else list(status)
    codes = []
    for item in items:
        try:
            code = TaskStatus[item.strip().upper()] if isinstance(item, str) and not item.strip().isdigit() \
                else TaskStatus(int(item))
        except (KeyError, ValueError):
            raise ValueError(f"not a task status: {item!r}") from None
        codes.append(int(code))
    return sorted(set(codes))


def _ms(when: _dt.datetime | int | None) -> int | None:
    if when is None or isinstance(when, int):
        return when
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.UTC)
    return int(when.timestamp() * 1000)


def _error_text(response: requests.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:300]
    if isinstance(data, dict):
        return str(data.get("error") or data.get("message") or "")
    return ""


def _json_or_error(response: requests.Response) -> Any:
    try:
        data = response.json()
    except ValueError as exc:
        raise NodeServerError(f"the server answered something that is not JSON: {response.text[:200]!r}",
                              response.status_code) from exc
    if isinstance(data, dict) and data.get("error"):
        raise NodeResponseError(str(data["error"]))
    return data


def _expect_uuid(result: Any, where: str) -> str:
    if isinstance(result, dict) and isinstance(result.get("uuid"), str):
        return result["uuid"]
    raise NodeServerError(f"invalid reply from {where}: {result!r}")


class _Progress:
    """Thread-safe byte counter that reports a percentage, never going back: bytes of a failed
    attempt are taken off the count, but the bar holds until the retry passes where it was."""

    def __init__(self, total: int, callback: ProgressCallback | None):
        self.total = max(total, 1)
        self.done = 0
        self.reported = -1.0
        self.callback = callback
        self.lock = threading.Lock()

    def add(self, amount: int) -> None:
        if self.callback is None:
            return
        with self.lock:  # report under the lock too, so two threads cannot report out of order
            self.done += amount
            percent = min(100.0, 100.0 * self.done / self.total)
            if percent > self.reported:
                self.reported = percent
                self.callback(percent)


class _Uploader:
    """Upload files to an initialised task in parallel; each file streamed, retried with back-off."""

    def __init__(self, node: Node, uuid: str, paths: list[Path], callback: ProgressCallback | None,
                 workers: int, max_retries: int, retry_timeout: float):
        self.node, self.uuid, self.paths = node, uuid, paths
        self.progress = _Progress(sum(p.stat().st_size for p in paths), callback)
        self.workers = max(1, min(workers, len(paths)))
        self.max_retries, self.retry_timeout = max_retries, retry_timeout
        self.block = BLOCK
        self.errors: list[BaseException] = []

    def run(self) -> None:
        jobs: queue.Queue = queue.Queue()
        for path in self.paths:
            jobs.put(path)
        threads = [threading.Thread(target=self._work, args=(jobs,), daemon=True) for _ in range(self.workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self.errors:
            raise self.errors[0]

    def _work(self, jobs: queue.Queue) -> None:
        while not self.errors:
            try:
                path = jobs.get_nowait()
            except queue.Empty:
                return
            try:
                self._send_with_retries(path)
            except BaseException as exc:  # noqa: BLE001  re-raised to the caller by run(), in its thread
                self.errors.append(exc)

    def _send_with_retries(self, path: Path) -> None:
        for attempt in range(self.max_retries + 1):
            sent = [0]
            try:
                self._send(path, sent)
                return
            except GenericError:
                self.progress.add(-sent[0])
                if attempt >= self.max_retries:
                    raise
                time.sleep(self.retry_timeout * (attempt + 1))

    def _send(self, path: Path, sent: list[int]) -> None:
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"

        def on_sent(amount: int) -> None:
            sent[0] += amount
            self.progress.add(amount)

        body = FilePart("images", path, mime, block=self.block, on_sent=on_sent)
        result = self.node.post_json(endpoints.upload(self.uuid), data=body,
                                     headers={"Content-Type": body.content_type})
        if not (isinstance(result, dict) and result.get("success")):
            raise NodeServerError(f"upload of {path.name} got an unexpected reply: {result!r}")


class _Download:
    """Fetch one download name into a file: parallel ranges when offered, one stream otherwise."""

    def __init__(self, task: Task, name: str, target: Path, callback: ProgressCallback | None,
                 workers: int, chunk_size: int, max_retries: int):
        self.task, self.name, self.target = task, name, target
        self.callback, self.workers = callback, max(1, workers)
        self.chunk_size, self.max_retries = max(chunk_size, 64 * 1024), max_retries
        self.path = endpoints.download(task.uuid, name)

    def run(self) -> None:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        partial = self.target.with_name(self.target.name + ".part")
        response = self.task.node.request("GET", self.path, stream=True)
        try:
            if "application/json" in response.headers.get("Content-Type", ""):
                _json_or_error(response)  # raises the node's {"error": ...}
                raise NodeServerError(f"{self.path} answered JSON instead of a file")
            total = int(response.headers.get("Content-Length") or -1)
            ranged = (response.headers.get("Accept-Ranges", "").lower() == "bytes"
                      and total > self.chunk_size and self.workers > 1)
            if ranged:
                response.close()
                try:
                    self._parallel(partial, total)
                except RangeNotAvailableError:
                    response = self.task.node.request("GET", self.path, stream=True)
                    ranged = False
            if not ranged:
                self._stream(response, partial, total)
        finally:
            response.close()
        os.replace(partial, self.target)

    def _stream(self, response: requests.Response, partial: Path, total: int) -> None:
        progress = _Progress(total, self.callback if total > 0 else None)
        written = 0
        try:
            with open(partial, "wb") as out:
                for block in response.iter_content(BLOCK):
                    out.write(block)
                    written += len(block)
                    progress.add(len(block))
        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise NodeConnectionError(f"download of {self.name} broke off: {exc}") from exc
        if total >= 0 and written != total:
            raise NodeConnectionError(f"download of {self.name} ended after {written} of {total} bytes")

    def _parallel(self, partial: Path, total: int) -> None:
        with open(partial, "wb") as out:
            out.truncate(total)
        progress = _Progress(total, self.callback)
        ranges: queue.Queue = queue.Queue()
        for start in range(0, total, self.chunk_size):
            ranges.put((start, min(start + self.chunk_size, total) - 1))
        errors: list[BaseException] = []

        def work() -> None:
            with open(partial, "r+b") as out:
                while not errors:
                    try:
                        start, end = ranges.get_nowait()
                    except queue.Empty:
                        return
                    try:
                        self._fetch_range(out, start, end, progress)
                    except BaseException as exc:  # noqa: BLE001  re-raised below, in the caller's thread
                        errors.append(exc)

        threads = [threading.Thread(target=work, daemon=True) for _ in range(self.workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    def _fetch_range(self, out, start: int, end: int, progress: _Progress) -> None:
        for attempt in range(self.max_retries + 1):
            got = 0
            try:
                response = self.task.node.request("GET", self.path, stream=True,
                                                  headers={"Range": f"bytes={start}-{end}"})
                with response:
                    if response.status_code != 206 or not response.headers.get(
                            "Content-Range", "").startswith(f"bytes {start}-{end}/"):
                        raise RangeNotAvailableError(f"{self.path} did not honour Range {start}-{end}")
                    out_pos = start
                    for block in response.iter_content(BLOCK):
                        os.pwrite(out.fileno(), block, out_pos)
                        out_pos += len(block)
                        got += len(block)
                        progress.add(len(block))
                if got == end - start + 1:
                    return
                raise NodeConnectionError(f"range {start}-{end} ended after {got} bytes")
            except (NodeConnectionError, requests.exceptions.RequestException) as exc:
                progress.add(-got)
                if attempt >= self.max_retries:
                    raise NodeConnectionError(str(exc)) from exc
                time.sleep(0.5 * (attempt + 1))
