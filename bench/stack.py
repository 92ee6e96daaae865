"""What the server benchmarks share: a node with a relay in front of it, input files made once, a
peak-RSS sampler, and interleaved repetitions.

A node is of one of two kinds: the development node (`odx-devnode`) or a real NodeODX 2.3.1 in test
mode (built by `make setup` under var/nodeodx). The relay and the node are the real programs, started by
the same helpers the tests use (`testkit`), on free 127.0.0.1 ports; `stack()` stops both whatever
happens, and `stacks()` runs one stack per node kind side by side. Measuring the relay against the very
node it fronts, in alternating order, makes load from anything else on the machine fall on every side
alike.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from devnode.samples import make_samples
from testkit import nodeodx
from testkit.devnode import start_devnode
from testkit.relay import Relay, start_relay
from testkit.servers import ServerProcess

MB = 1024 * 1024
#: node kinds, as `--nodes` names them, and as the table shows them
KINDS = {"devnode": "devnode", "nodeodx": "NodeODX"}
SIDES = ("relay", "direct")


def kind_problem(kind: str) -> str:
    """Why nodes of `kind` cannot be started here ("" when they can)."""
    if kind == "nodeodx" and not nodeodx.available():
        return f"real NodeODX not measured: it is not built in {nodeodx.BUILD} (run `make setup`)"
    return ""


def start_node(kind: str, workdir: Path, flags: Mapping[str, Any]) -> ServerProcess:
    if kind == "devnode":
        return start_devnode(workdir, **flags)
    if kind == "nodeodx":
        return nodeodx.start_nodeodx(workdir, **flags)
    raise ValueError(f"unknown node kind {kind!r}; choose from {', '.join(KINDS)}")


@dataclass
class Stack:
    node: ServerProcess
    relay: Relay
    kind: str = "devnode"

    @property
    def label(self) -> str:
        return KINDS[self.kind]

    def url(self, target: str) -> str:
        """`target` is "relay" or "direct"."""
        return self.relay.url if target == "relay" else self.node.url

    def pid(self, target: str) -> int:
        """The process that receives what is sent to `target`."""
        return (self.relay if target == "relay" else self.node).process.pid


@contextmanager
def stack(workdir: Path, node_flags: Mapping[str, Any], relay_flags: dict[str, Any] | None = None,
          kind: str = "devnode") -> Iterator[Stack]:
    """One node of `kind` and one relay in front of it, both stopped on the way out."""
    workdir.mkdir(parents=True, exist_ok=True)
    node = start_node(kind, workdir, node_flags)
    try:
        relay = start_relay(workdir, [node.url], **(relay_flags or {}))
        try:
            yield Stack(node, relay, kind)
        finally:
            relay.stop()
    finally:
        node.stop()


@contextmanager
def stacks(workdir: Path, node_flags: Mapping[str, Mapping[str, Any]], kinds: tuple[str, ...],
           relay_flags: dict[str, Any] | None = None) -> Iterator[dict[str, Stack]]:
    """One stack (a node and its relay) per kind in `kinds`, side by side, all stopped on the way out.
    `node_flags` holds each kind's node flags (the two kinds' flags have different names)."""
    with ExitStack() as started:
        yield {kind: started.enter_context(stack(workdir / kind, node_flags[kind], relay_flags, kind))
               for kind in kinds}


def samples(root: Path, count: int) -> list[Path]:
    """`count` of the development node's sample photos (small geotagged JPEGs), made once and kept."""
    folder = root / f"samples-{count}"
    existing = sorted(folder.glob("IMG_*.JPG"))
    if len(existing) == count:
        return existing
    return make_samples(folder, count)


def random_files(folder: Path, count: int, size: int) -> list[Path]:
    """`count` files of `size` random bytes (incompressible), written once and reused by later runs."""
    folder.mkdir(parents=True, exist_ok=True)
    return [random_file(folder / f"random-{i:03d}.bin", size) for i in range(count)]


def random_file(path: Path, size: int) -> Path:
    """`size` random bytes (incompressible) at `path`, written once (whole, or not at all) and then reused."""
    if path.exists() and path.stat().st_size == size:
        return path
    partial = path.with_name(path.name + ".part")
    with open(partial, "wb") as out:
        for offset in range(0, size, MB):
            out.write(os.urandom(min(MB, size - offset)))
    partial.replace(path)
    return path


class PeakRSS:
    """Sample a process's resident memory in a thread (every `interval` s) while inside `with`, and keep
    the peak over every `with` block (the sampler can be entered again, e.g. once per repetition)."""

    def __init__(self, pid: int, interval: float = 0.02):
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def now(self) -> int:
        return self.process.memory_info().rss

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.now())
                self.samples += 1
            except psutil.Error:
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


class CPUTime:
    """CPU seconds (user + system) a process spends inside `with` blocks, summed over all of them; with
    `children`, those of its child processes that ended meanwhile too (NodeODX runs `lscpu` and `free`
    for each /info, and its test-mode processing in child processes)."""

    def __init__(self, pid: int, children: bool = False):
        self.process = psutil.Process(pid)
        self.children = children
        self.seconds = 0.0
        self._start = 0.0

    def _now(self) -> float:
        times = self.process.cpu_times()
        own = times.user + times.system
        return own + times.children_user + times.children_system if self.children else own

    def __enter__(self) -> CPUTime:
        self._start = self._now()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds += self._now() - self._start


def interleaved(repetitions: int, run: Callable[[str], float]) -> dict[str, list[float]]:
    """`run("relay")` and `run("direct")` `repetitions` times each, in ABBA order, so neither side always
    goes first (warm caches, a neighbour's burst of load)."""
    results: dict[str, list[float]] = {"relay": [], "direct": []}
    for rep in range(repetitions):
        order = ("relay", "direct") if rep % 2 == 0 else ("direct", "relay")
        for target in order:
            results[target].append(run(target))
    return results


def interleaved_stacks(repetitions: int, kinds: tuple[str, ...], run: Callable[[str, str], float]
                       ) -> dict[str, dict[str, list[float]]]:
    """`run(kind, side)` for every kind and side (relay, direct), `repetitions` times each, forwards then
    backwards in turn (ABBA over all of them): {kind: {"relay": [...], "direct": [...]}}."""
    targets = [(kind, side) for kind in kinds for side in SIDES]
    results: dict[str, dict[str, list[float]]] = {kind: {side: [] for side in SIDES} for kind in kinds}
    for rep in range(repetitions):
        for kind, side in (targets if rep % 2 == 0 else targets[::-1]):
            results[kind][side].append(run(kind, side))
    return results


def clock() -> float:
    return time.perf_counter()
