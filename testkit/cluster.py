"""A relay cluster as it runs in production, for the scale tests (`tests/scale`) and the fault suite
(`python -m scripts.faults`).

- `redis-server` with an append-only file synced on every write, so a `kill -9` and a restart on the same
  port keep the state (`testkit.relay.start_redis` is throw-away: no persistence);
- relay replicas on that Redis, each with its own data folder (download cache), all sharing one staging
  folder, as the docs ask of a multi-replica deployment;
- development nodes;
- a round-robin TCP balancer in front of the replicas: each connection goes to the next replica that
  accepts it, so a client that opens one connection per request (pyodx does) spreads its init, uploads
  and commit over every replica;
- a client that talks to the balancer with the retries a careful client has (a request that got no
  answer, or a 503, is sent again), and that tells each task's fate: completed, failed with a clear
  error, or lost;
- kill points: replicas started with `ODX_FAULT_CRASH_AT` (`proxy.crashpoints`) kill themselves at a
  protocol step, and `Cluster.revive_crashed` starts them again at once, as a supervisor would;
- frozen nodes (SIGSTOP, then SIGCONT): a node that comes back after its tasks were sent elsewhere;
- an audit of the nodes from outside the relay (`audit_nodes`): each devnode's journal of ended runs
  (`runs.jsonl`), the tasks it still holds and the files it made each of them from, so a task that ran
  to completion twice, or that a node received a file of twice, shows whatever the relay believes.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import redis
import requests

from proxy.crashpoints import ENV as CRASH_ENV
from proxy.crashpoints import POINTS as CRASH_POINTS
from testkit.devnode import DevNode, start_devnode
from testkit.relay import Relay, start_relay
from testkit.servers import ServerGroup, ServerProcess, free_port, start_server

QUEUED, RUNNING, FAILED, COMPLETED, CANCELED = 10, 20, 30, 40, 50
FINAL = (FAILED, COMPLETED, CANCELED)
#: What the relay and the nodes are told in every scale test: short intervals, so faults show in seconds.
RELAY_FLAGS = {"check_interval": 0.3, "offline_after": 2, "failover_after": 1.5, "upload_idle": 120,
               "node_timeout": 5}
NODE_FLAGS = {"seconds_per_image": 0.05}


# --- Redis that survives a restart -------------------------------------------------------------------
def start_persistent_redis(folder: Path, port: int | None = None) -> ServerProcess:
    """`redis-server` keeping its data in `folder` (append-only file, fsync on every write).

    Start it again with the same `folder` and `port` after a kill and the data is back."""
    port = port or free_port()
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / f"redis-{port}-{time.time_ns()}.log"
    argv = [shutil.which("redis-server") or "/usr/bin/redis-server", "--bind", "127.0.0.1", "--port", str(port),
            "--dir", str(folder), "--appendonly", "yes", "--appendfsync", "always", "--save", ""]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = ServerProcess(name=f"redis:{port}", url=f"redis://127.0.0.1:{port}/0", port=port, process=process,
                           log_path=log_path)
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # loading the append-only file answers LOADING until done
        with contextlib.suppress(redis.RedisError):
            if client.ping():
                client.close()
                return server
        if process.poll() is not None:
            break
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"redis-server did not start:\n{server.log()[-2000:]}")


# --- a round-robin balancer --------------------------------------------------------------------------
class Balancer:
    """Round-robin TCP balancer on 127.0.0.1 in a thread of its own; `url` is where clients go.

    A replica that refuses the connection (killed, restarting) is skipped, as a balancer with health
    checks would skip it; a connection cut by a replica's death is cut for the client too."""

    def __init__(self, ports: list[int]):
        self.ports = list(ports)
        self.turn = itertools.count()
        self.served: dict[int, int] = {}  # connections handed to each replica, by port
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)
        self.url = f"http://127.0.0.1:{self.port}"

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream = None
        for _ in range(len(self.ports)):
            port = self.ports[next(self.turn) % len(self.ports)]
            with contextlib.suppress(OSError):
                upstream = await asyncio.open_connection("127.0.0.1", port)
                self.served[port] = self.served.get(port, 0) + 1
                break
        if upstream is None:
            client_writer.close()
            return
        up_reader, up_writer = upstream
        await asyncio.gather(self._pipe(client_reader, up_writer), self._pipe(up_reader, client_writer))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(256 * 1024):
                writer.write(chunk)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            writer.transport.abort()  # one side died: cut the other, as a balancer does
        else:
            await asyncio.sleep(0)
        finally:
            if reader.at_eof():
                with contextlib.suppress(OSError, RuntimeError):
                    writer.close()

    async def _shutdown(self) -> None:
        self.server.close()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


# --- the cluster ---------------------------------------------------------------------------------------
@dataclass
class CrashPlan:
    """Kill points for a cluster's replicas: a start is given `ODX_FAULT_CRASH_AT=<point>:<nth>` (the replica
    then kills itself, as `kill -9` would, the nth time it reaches `point`; see `proxy.crashpoints`) until
    `kills` starts were so armed; later starts run without it. Every replica is armed at first."""

    point: str
    nth: int = 1
    kills: int = 3
    armed: int = 0  # starts given the variable so far

    def __post_init__(self) -> None:
        if self.point not in CRASH_POINTS:
            raise ValueError(f"unknown kill point {self.point!r}; known: {', '.join(CRASH_POINTS)}")

    def arm(self) -> dict[str, str]:
        """The environment for the next start of a replica: armed while starts to arm remain."""
        if self.armed >= self.kills:
            return {}
        self.armed += 1
        return {CRASH_ENV: f"{self.point}:{self.nth}"}


@dataclass
class Cluster:
    """Redis, relay replicas sharing a staging folder, development nodes, and a balancer in front."""

    root: Path
    group: ServerGroup
    relay_flags: dict[str, Any] = field(default_factory=dict)
    redis: ServerProcess | None = None
    nodes: list[DevNode] = field(default_factory=list)
    replicas: list[Relay] = field(default_factory=list)
    balancer: Balancer | None = None
    restarts: int = 0
    crash: CrashPlan | None = None
    kills: int = 0  # replicas seen dead by a kill point (SIGKILL of their own), by `revive_crashed`
    problems: list[str] = field(default_factory=list)  # replicas that exited otherwise, or would not start
    notes: list[str] = field(default_factory=list)  # what a fault did, for the report
    frozen: set[int] = field(default_factory=set)  # indexes of nodes stopped with SIGSTOP
    _settled: set[int] = field(default_factory=set)  # pids of dead replicas already seen to
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def staging(self) -> Path:
        return self.root / "staging" if self.redis else self.replicas[0].data_dir / "staging"

    @property
    def url(self) -> str:
        assert self.balancer is not None, "start the balancer first"
        return self.balancer.url

    def start_redis(self) -> ServerProcess:
        self.redis = self.group.add(start_persistent_redis(self.root / "redis"))
        return self.redis

    def kill_redis(self) -> None:
        assert self.redis is not None
        self.redis.process.kill()
        self.redis.process.wait(10)

    def restart_redis(self) -> ServerProcess:
        assert self.redis is not None
        self.redis = self.group.add(start_persistent_redis(self.root / "redis", self.redis.port))
        return self.redis

    def launch_node(self, **flags: Any) -> DevNode:
        """A development node for the cluster, not yet given to the replicas (see `start_node`)."""
        node = self.group.start(start_devnode, **{**NODE_FLAGS, **flags})
        assert isinstance(node, DevNode)
        return node

    def start_node(self, **flags: Any) -> DevNode:
        node = self.launch_node(**flags)
        self.nodes.append(node)
        return node

    def freeze_node(self, index: int) -> None:
        """SIGSTOP: the node keeps its connections and answers nothing, as a machine that hangs or is
        cut off; its tasks stand still where they are until `thaw_node`."""
        os.kill(self.nodes[index].process.pid, signal.SIGSTOP)
        self.frozen.add(index)

    def thaw_node(self, index: int) -> None:
        """SIGCONT: the node goes on where it stood, with the tasks it held (a node that comes back)."""
        os.kill(self.nodes[index].process.pid, signal.SIGCONT)
        self.frozen.discard(index)

    def arm(self) -> dict[str, str]:
        """The environment of a replica's next start (the crash plan's variable, while it arms starts)."""
        with self._lock:
            return self.crash.arm() if self.crash else {}

    def start_replica(self, nodes: list[DevNode] | None = None, **flags: Any) -> Relay:
        """One more relay replica on the cluster's Redis and staging folder, with its own data folder
        (without Redis: a lone relay with its state in SQLite, as a single relay runs by default)."""
        port = free_port()
        shared = {"redis": self.redis.url, "staging_dir": self.staging} if self.redis else {}
        urls = [n.url for n in (self.nodes if nodes is None else nodes)]
        data_dir = self.root / f"replica-{port}"
        flags = {**shared, **RELAY_FLAGS, **self.relay_flags, **flags}
        relay = start_relay(self.root, urls, port=port, data_dir=data_dir, env=self.arm(), **flags)
        self.group.add(relay)
        self.replicas.append(relay)
        return relay

    def start_balancer(self) -> Balancer:
        self.balancer = Balancer([r.port for r in self.replicas])
        return self.balancer

    def kill_replica(self, index: int) -> None:
        """`kill -9`: no shutdown handler runs, whatever it was doing stops half way."""
        replica = self.replicas[index]
        self._settled.add(replica.process.pid)  # the harness's own kill: `revive_crashed` leaves it alone
        replica.process.kill()
        replica.process.wait(10)

    def restart_replica(self, index: int, env: dict[str, str] | None = None) -> Relay:
        """Start a killed replica again with the same command line (same port, data folder, flags)."""
        old = self.replicas[index]
        with self._lock:
            self.restarts += 1
            log_dir = self.root / f"restart-{self.restarts}"
        log_dir.mkdir(exist_ok=True)
        again = start_server(old.name, old.argv, old.port, log_dir / f"relay-{old.port}.log", cls=Relay, env=env,
                             data_dir=old.data_dir, token=old.token, admin_token=old.admin_token)
        assert isinstance(again, Relay)
        again.argv = old.argv
        self.group.add(again)
        self.replicas[index] = again
        return again

    def revive_crashed(self, arm: bool = True) -> int:
        """Start again at once, as a supervisor would, every replica whose process ended by itself (a kill
        point: SIGKILL of its own; anything else is noted in `problems`); armed by the crash plan while
        `arm` and it has kills left. A start that dies on the way up (recovery reached the kill point) is
        counted as a kill and tried again. Returns how many replicas were started again."""
        revived = 0
        for index, replica in enumerate(list(self.replicas)):
            if replica.process.poll() is None or replica.process.pid in self._settled:
                continue
            self._settled.add(replica.process.pid)
            self._count_exit(replica.name, replica.process.returncode)
            for _ in range(5):
                try:
                    self.restart_replica(index, env=self.arm() if arm else None)
                except RuntimeError as exc:
                    status = re.search(r"exited with status (-?\d+) at start", str(exc))
                    self._count_exit(replica.name, int(status.group(1)) if status else None, str(exc))
                    continue
                revived += 1
                break
            else:
                self.problems.append(f"{replica.name} would not start again after a kill (5 tries)")
        return revived

    def _count_exit(self, name: str, status: int | None, why: str = "") -> None:
        if status == -signal.SIGKILL and self.crash is not None:
            self.kills += 1
            return
        why = f": {why[-600:]}" if why else ""
        self.problems.append(f"{name} exited by itself (status {status}){why}")

    def close(self) -> None:
        for index in list(self.frozen):
            with contextlib.suppress(OSError):
                self.thaw_node(index)
        if self.balancer is not None:
            self.balancer.close()
        self.group.stop_all()


def start_cluster(root: Path, group: ServerGroup, node_flags: list[dict[str, Any]], replicas: int = 2,
                  with_redis: bool = True, crash: CrashPlan | None = None, **relay_flags: Any) -> Cluster:
    """Redis, one development node per entry of `node_flags`, `replicas` relays, a balancer in front.

    With a `crash` plan, replicas start armed with its kill point (see `Cluster.revive_crashed`)."""
    cluster = Cluster(root=root, group=group, relay_flags=relay_flags, crash=crash)
    if with_redis:
        cluster.start_redis()
    with ThreadPoolExecutor(4) as pool:  # each start waits for its server to answer: wait for all at once
        cluster.nodes += pool.map(lambda flags: cluster.launch_node(**flags), node_flags)  # in their order
        list(pool.map(lambda _: cluster.start_replica(), range(replicas)))
    cluster.start_balancer()
    return cluster


# --- what the nodes did, seen from outside the relay -----------------------------------------------------
RUNS_FILE = "runs.jsonl"  # the devnode's journal of ended runs (devnode.tasks.RUNS_FILE)
STAGED_BODY = "body.json"  # the init form in a devnode's staged upload (devnode.uploads.BODY_FILE)


@dataclass
class NodeCopy:
    """What one node made of one uuid: a run in its journal ("run N"), a task it holds at the end ("held",
    `count` its imagesCount), or an upload it never committed ("upload"); `images` the file names it had."""

    node: str
    uuid: str
    source: str
    status: int | None
    images: list[str]
    count: int | None = None


def twin_of(name: str) -> str | None:
    """The name a node renamed into `name` because it had it already (devnode and NodeODX's
    assureUniqueFilename: `stem.ext` -> `stem_.ext`, `name` -> `name_`), or None."""
    stem, dot, ext = name.rpartition(".")
    if dot and stem:
        return f"{stem[:-1]}.{ext}" if stem.endswith("_") and len(stem) > 1 else None
    return name[:-1] if name.endswith("_") and len(name) > 1 else None


def extra_files(names: list[str], sent: list[str] | None, count: int | None = None) -> list[str]:
    """The files of one copy beyond what its client sent: a `stem_.ext` beside its `stem.ext` (the node got
    that file twice), a name the client never sent, or more files (or imagesCount) than were sent."""
    have = set(names)
    extra = [n for n in names if twin_of(n) in have or (sent is not None and n not in sent)]
    total = max(len(names), count or 0)
    if sent is not None and total > len(sent) and not extra:
        extra.append(f"{total} images for {len(sent)} sent")
    return extra


@dataclass
class NodeAudit:
    """Every copy of every task the nodes had, once they settled (see `audit_nodes`)."""

    copies: list[NodeCopy] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)  # copies still queued or running when the wait ended

    def completions(self) -> dict[str, list[str]]:
        """uuid -> the node of each run of it that ended COMPLETED (a run a node completed, then lost with
        the task's removal, is still counted: it ran)."""
        done: dict[str, list[str]] = {}
        for copy in self.copies:
            if copy.source.startswith("run ") and copy.status == COMPLETED:
                done.setdefault(copy.uuid, []).append(copy.node)
        return done

    def ran_twice(self) -> dict[str, list[str]]:
        """uuid -> nodes, for each task that ran to completion more than once (on one node or several). The
        suite's clients never restart a task: every completion beyond the first is the same run again."""
        return {uuid: nodes for uuid, nodes in self.completions().items() if len(nodes) > 1}

    def duplicate_files(self, sent: dict[str, list[str]], uploads: bool = False) -> dict[str, str]:
        """uuid -> what was extra, for each task some node made (or, with `uploads`, staged but never
        committed) from a file it received twice, or from more files than its client sent."""
        found: dict[str, str] = {}
        for copy in self.copies:
            if (copy.source == "upload") != uploads:
                continue
            extra = extra_files(copy.images, sent.get(copy.uuid), copy.count)
            if extra and copy.uuid not in found:
                found[copy.uuid] = f"{copy.node} ({copy.source}): {', '.join(extra)}"
        return found

    def held_by(self) -> dict[str, list[str]]:
        """uuid -> nodes that still hold a task of that uuid (whatever its status)."""
        held: dict[str, list[str]] = {}
        for copy in self.copies:
            if copy.source == "held":
                held.setdefault(copy.uuid, []).append(copy.node)
        return held

    def ran(self, uuid: str) -> bool:
        """Whether any node made a task of `uuid` (ran it, or holds it committed)."""
        return any(c.uuid == uuid and c.source != "upload" for c in self.copies)


def _held_tasks(node: DevNode) -> dict[str, dict] | None:
    """uuid -> /task/{uuid}/info of every task a live node holds; None if it is gone or does not answer."""
    if not node.running:
        return None
    try:
        listed = requests.get(node.api("/task/list"), timeout=3).json()
        infos = {}
        for item in listed:
            info = requests.get(node.api(f"/task/{item['uuid']}/info"), timeout=3).json()
            if isinstance(info, dict) and "uuid" in info:
                infos[item["uuid"]] = info
        return infos
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return None


def _read_journal(node: DevNode) -> list[dict]:
    path = node.data_dir / RUNS_FILE
    if not path.is_file():
        return []
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            lines.append(json.loads(line))
    return lines


def _names(folder: Path, leave_out: tuple[str, ...] = ()) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.name not in leave_out) \
        if folder.is_dir() else []


def audit_nodes(nodes: list[DevNode], settle: float = 15.0) -> NodeAudit:
    """What the nodes did, from their own word and folders rather than the relay's: waits (at most `settle`
    seconds) until no live node queues or runs a task, so that a copy left running (a ghost of a task sent
    elsewhere) either ends one way or the other or is reported as unsettled; then reads each node's
    journal of ended runs, the tasks it holds (with the files in their images folder) and the uploads it
    was sent but never committed (its `tmp/` folder)."""
    deadline = time.monotonic() + settle
    while True:
        held = {node.name: _held_tasks(node) for node in nodes}
        busy = [f"{name}: {uuid} status {(info.get('status') or {}).get('code')}"
                for name, infos in held.items() for uuid, info in (infos or {}).items()
                if (info.get("status") or {}).get("code") in (QUEUED, RUNNING)]
        if not busy or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    audit = NodeAudit(unsettled=busy)
    for node in nodes:
        for entry in _read_journal(node):
            audit.copies.append(NodeCopy(node.name, str(entry.get("uuid")), f"run {entry.get('run')}",
                                         entry.get("status"), list(entry.get("images") or [])))
        for uuid, info in (held[node.name] or {}).items():
            audit.copies.append(NodeCopy(node.name, uuid, "held", (info.get("status") or {}).get("code"),
                                         _names(node.data_dir / uuid / "images"), info.get("imagesCount")))
        if held[node.name] is None and node.data_dir.is_dir():  # a node that died: its folders say what it held
            for images in sorted(node.data_dir.glob("*/images")):
                audit.copies.append(NodeCopy(node.name, images.parent.name, "held", None, _names(images)))
        tmp = node.data_dir / "tmp"
        for folder in sorted(tmp.iterdir()) if tmp.is_dir() else []:
            if folder.is_dir():
                audit.copies.append(NodeCopy(node.name, folder.name, "upload", None,
                                             _names(folder, (STAGED_BODY,))))
    return audit


# --- a client that retries, and keeps score ------------------------------------------------------------
class Unanswered(Exception):
    """No usable answer before the deadline (every try cut, refused, or answered 5xx)."""


@dataclass
class Outcome:
    """What became of one task a client tried to create."""

    uuid: str | None = None
    uuids: list[str] = field(default_factory=list)  # every uuid the relay gave this client, the last is `uuid`
    sent: list[str] = field(default_factory=list)  # names of the files sent
    code: int | None = None
    error: str = ""
    statuses: list[int] = field(default_factory=list)
    downloaded: bool = False
    images_sent: int = 0
    images_counted: int | None = None  # imagesCount at the end: a file the node got twice shows here

    @property
    def miscounted(self) -> bool:
        return self.images_counted is not None and self.images_counted != self.images_sent

    @property
    def kind(self) -> str:
        """completed, failed (with a clear error) or lost."""
        if self.code == COMPLETED and self.downloaded:
            return "completed"
        if self.error and not self.error.startswith("lost:"):
            return "failed"
        return "lost"


class Client:
    """One user of the cluster; every request opens a connection of its own (as pyodx does), so behind
    the balancer consecutive requests land on different replicas. A request that gets no answer, or a
    503 (Redis away), or a 502/500, is sent again until `patience` seconds have passed.

    A commit whose answer was lost is sent again at once, or, with `look_first` seconds, first looked
    for with `/task/{uuid}/info` for that long (the relay must then know a commit it passed on to a node
    by itself, without the client's second commit), and sent again only if the relay still does not."""

    def __init__(self, url: str, patience: float = 40.0, token: str = "", look_first: float = 0.0):
        self.url = url.rstrip("/")
        self.patience = patience
        self.token = token
        self.look_first = look_first
        self.retries = 0

    def once(self, method: str, path: str, files: Callable[[], Any] | None = None, **kwargs: Any) -> tuple[Any, str]:
        """One try: (the JSON answer, "") or (None, why there is no usable answer)."""
        params = {"token": self.token} if self.token else None
        try:
            response = requests.request(method, self.url + path, params=params, timeout=20,
                                        files=files() if files else None, **kwargs)
            if response.status_code < 500:
                return response.json(), ""
            return None, f"HTTP {response.status_code}: {response.text[:200]}"
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            return None, type(exc).__name__
        except ValueError:
            return None, "an answer that is not JSON"

    def call(self, method: str, path: str, files: Callable[[], Any] | None = None, **kwargs: Any) -> Any:
        deadline = time.monotonic() + self.patience
        last = ""
        while time.monotonic() < deadline:
            answer, last = self.once(method, path, files, **kwargs)
            if not last:
                return answer
            self.retries += 1
            time.sleep(0.25)
        raise Unanswered(f"{method} {path}: no usable answer in {self.patience:.0f} s (last: {last})")

    def commit(self, uuid: str) -> Any:
        """Commit; an answer lost is made up for as the client was told (`look_first`)."""
        path = f"/task/new/commit/{uuid}"
        if not self.look_first:
            return self.call("POST", path)
        answer, lost = self.once("POST", path)
        if not lost:
            return answer
        deadline = time.monotonic() + self.look_first
        while time.monotonic() < deadline:
            if "uuid" in self.info(uuid):
                return {"uuid": uuid}
            time.sleep(0.25)
        self.retries += 1
        return self.call("POST", path)

    def upload(self, uuid: str, image: Path) -> Any:
        return self.call("POST", f"/task/new/upload/{uuid}",
                         files=lambda: [("images", (image.name, image.read_bytes(), "image/jpeg"))])

    def submit(self, images: list[Path], fields: dict[str, str] | None = None, outcome: Outcome | None = None,
               attempts: int = 3) -> Outcome:
        """init, one upload per file, commit; an upload whose task was lost by the relay starts over.

        A commit whose answer was lost is found again through `/task/{uuid}/info`."""
        outcome = outcome or Outcome()
        outcome.images_sent, outcome.sent = len(images), [image.name for image in images]
        for _ in range(attempts):
            form = {k: (None, v) for k, v in (fields or {}).items()}
            result = self.call("POST", "/task/new/init", files=lambda form=form: form)
            if "uuid" not in result:
                outcome.error = f"init refused: {result.get('error')}"
                return outcome
            outcome.uuid = uuid = result["uuid"]
            outcome.uuids.append(uuid)
            refused = next((r for r in (self.upload(uuid, image) for image in images) if r != {"success": True}), None)
            if refused is not None:
                outcome.error = f"upload refused: {refused.get('error') if isinstance(refused, dict) else refused}"
                continue  # the relay forgot the upload (it should not): start over, as pyodx users do
            result = self.commit(uuid)
            if result == {"uuid": uuid} or "uuid" in self.info(uuid):
                outcome.committed, outcome.error = True, ""
                return outcome
            outcome.error = f"commit refused: {result.get('error')}"
            return outcome
        return outcome

    def info(self, uuid: str) -> dict:
        return self.call("GET", f"/task/{uuid}/info")

    def follow(self, outcome: Outcome, timeout: float) -> Outcome:
        """Poll the task until it ends or `timeout` passes; remember every status it showed."""
        deadline = time.monotonic() + timeout
        while outcome.uuid and time.monotonic() < deadline:
            info = self.info(outcome.uuid)
            if "error" in info:
                outcome.error = f"lost: the relay no longer knows the task ({info['error']})"
                return outcome
            code = (info.get("status") or {}).get("code")
            if not outcome.statuses or outcome.statuses[-1] != code:
                outcome.statuses.append(code)
            if code in FINAL:
                outcome.code, outcome.images_counted = code, info.get("imagesCount")
                outcome.error = (info.get("status") or {}).get("errorMessage") or ""
                if code == COMPLETED:
                    problem = self.download_problem(outcome.uuid)
                    outcome.downloaded, outcome.error = not problem, problem
                return outcome
            time.sleep(0.15)
        outcome.error = f"lost: not ended after {timeout:.0f} s (statuses {outcome.statuses})"
        return outcome

    def download_problem(self, uuid: str, patience_after_refusal: float = 5.0) -> str:
        """"" when all.zip downloads whole; else why not: the relay's own error (a failure it explains, e.g.
        the node that holds the outputs died with them), or `lost: ...` when it never answered usefully."""
        deadline = time.monotonic() + self.patience
        refused, last = None, ""
        while time.monotonic() < deadline:
            try:
                response = requests.get(f"{self.url}/task/{uuid}/download/all.zip", timeout=20,
                                        params={"token": self.token} if self.token else None)
                if response.status_code == 200 and zipfile.is_zipfile(BytesIO(response.content)):
                    return ""
                last = f"HTTP {response.status_code}: {response.text[:200]}"
                explained = response.headers.get("Content-Type", "").startswith("application/json")
                if response.status_code < 500 and explained:
                    refused = refused or time.monotonic()
                    if time.monotonic() - refused > patience_after_refusal:
                        return f"completed, but all.zip refused: {response.json().get('error')}"
            except requests.RequestException as exc:
                last = type(exc).__name__
            time.sleep(0.25)
        return f"lost: completed, but all.zip did not download in {self.patience:.0f} s ({last})"

    def run(self, images: list[Path], timeout: float, fields: dict[str, str] | None = None) -> Outcome:
        """Create one task and follow it to its end; never raises (an exception is an outcome too)."""
        outcome = Outcome()
        try:
            self.submit(images, fields, outcome)
            if outcome.committed:
                self.follow(outcome, timeout)
        except Unanswered as exc:
            outcome.error = f"lost: {exc}" if outcome.committed else f"lost: never acknowledged: {exc}"
        except Exception as exc:  # noqa: BLE001 (a client-side crash is a lost task, and says so)
            outcome.error = f"lost: {type(exc).__name__}: {exc}"
        return outcome
