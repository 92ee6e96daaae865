"""The development node (`python -m devnode`) as a subprocess on a free 127.0.0.1 port."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testkit.servers import ServerProcess, flags_to_argv, free_port, start_server


@dataclass
class DevNode(ServerProcess):
    """A development node (`python -m devnode`); `data_dir` holds its tasks and uploads."""

    data_dir: Path = field(default=Path())


def start_devnode(tmp_path: Path, *, env: dict[str, str] | None = None, **flags: Any) -> DevNode:
    """Start `odx-devnode` on a free port with `flags` (`slots=2`, `token="t"`, `fail_tasks=True`, ...).

    Its data and log go under `tmp_path` unless `data_dir` is given; `env` adds environment variables
    (ODX_DEVNODE_*); waits until `/info` answers.
    """
    port = free_port()
    data_dir = Path(flags.pop("data_dir", tmp_path / f"devnode-{port}"))
    argv = [sys.executable, "-m", "devnode", "--port", str(port), "--data-dir", str(data_dir),
            *flags_to_argv(flags)]
    token = str(flags.get("token") or (env or {}).get("ODX_DEVNODE_TOKEN") or "")
    node = start_server(f"devnode:{port}", argv, port, tmp_path / f"devnode-{port}.log", token=token,
                        env=env, cls=DevNode, data_dir=data_dir)
    assert isinstance(node, DevNode)
    return node
