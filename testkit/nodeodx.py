"""Start real NodeODX 2.3.1 nodes in test mode (built by `make setup` under `var/nodeodx`), side by side.

NodeODX resolves `tests/data`, `tmp/` and `package.json` from its working directory and opens every socket
on all interfaces. Each node here gets a working directory of its own (links to the build, a `tests/data`
and `tmp` of its own, a log folder) and runs with `scripts/nodeodx_loopback.js` preloaded, which keeps its
HTTP server on 127.0.0.1 and its UDP progress receiver off the shared port 6367.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testkit.servers import REPO, ServerProcess, free_port, start_server

BUILD = Path(os.environ.get("NODEODX_DIR", REPO / "var" / "nodeodx"))
SHIM = REPO / "scripts" / "nodeodx_loopback.js"
OWN = {"tests", "tmp", "data", "node_modules_cache"}  # what each node must not share


def available() -> bool:
    return (BUILD / ".built-from").is_file() and shutil.which("node") is not None


@dataclass
class NodeODX(ServerProcess):
    """A real NodeODX; `workdir` holds its tasks (`tests/data`), uploads (`tmp`) and log."""

    workdir: Path = field(default=Path())


def _workdir(root: Path) -> Path:
    """A working directory that shares NodeODX's code but keeps its own state."""
    root.mkdir(parents=True, exist_ok=True)
    for entry in BUILD.iterdir():
        if entry.name not in OWN and not (root / entry.name).exists():
            (root / entry.name).symlink_to(entry)
    tests = root / "tests"
    tests.mkdir(exist_ok=True)
    for entry in (BUILD / "tests").iterdir():
        if entry.name != "data" and not (tests / entry.name).exists():
            (tests / entry.name).symlink_to(entry)
    (tests / "data").mkdir(exist_ok=True)
    (root / "tmp").mkdir(exist_ok=True)
    (root / "logs").mkdir(exist_ok=True)
    config = json.loads((BUILD / "config-default.json").read_text())
    config["logger"]["logDirectory"] = str(root / "logs")
    (root / "config.json").write_text(json.dumps(config))
    return root


def start_nodeodx(tmp_path: Path, *, port: int | None = None, workdir: Path | None = None,
                  **flags: Any) -> NodeODX:
    """`start_nodeodx(tmp, token="t", max_images=5, parallel_queue_processing=2, test_seconds=1)`.

    Flags are NodeODX's own (`--test` is always on). Pass the same `workdir` (and `port`) to restart a node
    on its old tasks."""
    if not available():
        raise RuntimeError(f"NodeODX is not built in {BUILD}: run `make setup`")
    port = port or free_port()
    root = _workdir(workdir or tmp_path / f"nodeodx-{port}")
    argv = ["node", "-r", str(SHIM), str(root / "index.js"), "--config", str(root / "config.json"),
            "--test", "--port", str(port), "--log_level", "warn"]
    for name, value in flags.items():
        if value is None or value is False:
            continue
        argv += [f"--{name}"] if value is True else [f"--{name}", str(value)]
    node = start_server(f"nodeodx:{port}", argv, port, tmp_path / f"nodeodx-{port}.log",
                        token=str(flags.get("token") or ""), cls=NodeODX, workdir=root, cwd=root)
    assert isinstance(node, NodeODX)
    return node
