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
  error, or lost.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
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

    def start_replica(self, nodes: list[DevNode] | None = None, **flags: Any) -> Relay:
        """One more relay replica on the cluster's Redis and staging folder, with its own data folder
        (without Redis: a lone relay with its state in SQLite, as a single relay runs by default)."""
        port = free_port()
        shared = {"redis": self.redis.url, "staging_dir": self.staging} if self.redis else {}
        relay = start_relay(self.root, [n.url for n in (self.nodes if nodes is None else nodes)], port=port,
                            data_dir=self.root / f"replica-{port}", **shared,
                            **{**RELAY_FLAGS, **self.relay_flags, **flags})
        self.group.add(relay)
        self.replicas.append(relay)
        return relay

    def start_balancer(self) -> Balancer:
        self.balancer = Balancer([r.port for r in self.replicas])
        return self.balancer

    def kill_replica(self, index: int) -> None:
        """`kill -9`: no shutdown handler runs, whatever it was doing stops half way."""
        replica = self.replicas[index]
        replica.process.kill()
        replica.process.wait(10)

    def restart_replica(self, index: int) -> Relay:
        """Start a killed replica again with the same command line (same port, data folder, flags)."""
        old = self.replicas[index]
        self.restarts += 1
        log_dir = self.root / f"restart-{self.restarts}"
        log_dir.mkdir(exist_ok=True)
        again = start_server(old.name, old.argv, old.port, log_dir / f"relay-{old.port}.log", cls=Relay,
                             data_dir=old.data_dir)
        assert isinstance(again, Relay)
        again.argv = old.argv
        self.group.add(again)
        self.replicas[index] = again
        return again

    def close(self) -> None:
        if self.balancer is not None:
            self.balancer.close()
        self.group.stop_all()


def start_cluster(root: Path, group: ServerGroup, node_flags: list[dict[str, Any]], replicas: int = 2,
                  with_redis: bool = True, **relay_flags: Any) -> Cluster:
    """Redis, one development node per entry of `node_flags`, `replicas` relays, a balancer in front."""
    cluster = Cluster(root=root, group=group, relay_flags=relay_flags)
    if with_redis:
        cluster.start_redis()
    with ThreadPoolExecutor(4) as pool:  # each start waits for its server to answer: wait for all at once
        cluster.nodes += pool.map(lambda flags: cluster.launch_node(**flags), node_flags)  # in their order
        list(pool.map(lambda _: cluster.start_replica(), range(replicas)))
    cluster.start_balancer()
    return cluster


# --- a client that retries, and keeps score ------------------------------------------------------------
class Unanswered(Exception):
    """No usable answer before the deadline (every try cut, refused, or answered 5xx)."""


@dataclass
class Outcome:
    """What became of one task a client tried to create."""

    uuid: str | None = None
    committed: bool = False
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
    503 (Redis away), or a 502/500, is sent again until `patience` seconds have passed."""

    def __init__(self, url: str, patience: float = 40.0, token: str = ""):
        self.url = url.rstrip("/")
        self.patience = patience
        self.token = token
        self.retries = 0

    def call(self, method: str, path: str, files: Callable[[], Any] | None = None, **kwargs: Any) -> Any:
        deadline = time.monotonic() + self.patience
        last = ""
        params = {"token": self.token} if self.token else None
        while time.monotonic() < deadline:
            try:
                response = requests.request(method, self.url + path, params=params, timeout=20,
                                            files=files() if files else None, **kwargs)
                if response.status_code < 500:
                    return response.json()
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                last = type(exc).__name__
            except ValueError:
                last = "an answer that is not JSON"
            self.retries += 1
            time.sleep(0.25)
        raise Unanswered(f"{method} {path}: no usable answer in {self.patience:.0f} s (last: {last})")

    def upload(self, uuid: str, image: Path) -> Any:
        return self.call("POST", f"/task/new/upload/{uuid}",
                         files=lambda: [("images", (image.name, image.read_bytes(), "image/jpeg"))])

    def submit(self, images: list[Path], fields: dict[str, str] | None = None, outcome: Outcome | None = None,
               attempts: int = 3) -> Outcome:
        """init, one upload per file, commit; an upload whose task was lost by the relay starts over.

        A commit whose answer was lost is found again through `/task/{uuid}/info`."""
        outcome = outcome or Outcome()
        outcome.images_sent = len(images)
        for _ in range(attempts):
            form = {k: (None, v) for k, v in (fields or {}).items()}
            result = self.call("POST", "/task/new/init", files=lambda form=form: form)
            if "uuid" not in result:
                outcome.error = f"init refused: {result.get('error')}"
                return outcome
            outcome.uuid = uuid = result["uuid"]
            refused = next((r for r in (self.upload(uuid, image) for image in images) if r != {"success": True}), None)
            if refused is not None:
                outcome.error = f"upload refused: {refused.get('error') if isinstance(refused, dict) else refused}"
                continue  # the relay forgot the upload (it should not): start over, as pyodx users do
            result = self.call("POST", f"/task/new/commit/{uuid}")
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
