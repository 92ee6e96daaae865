"""Starting a real relay (`python -m proxy`) as a subprocess, beside the development nodes of servers.py."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.servers import ServerProcess, flags_to_argv, free_port, start_server


@dataclass
class Relay(ServerProcess):
    """A relay; `data_dir` holds its database, staging and cache; `argv` restarts it the same way."""

    data_dir: Path = field(default=Path())
    argv: list[str] = field(default_factory=list)
    admin_token: str = ""

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}


def start_relay(tmp_path: Path, nodes: list[str] | tuple = (), *, port: int | None = None, **flags: Any) -> Relay:
    """`start_relay(tmp, [n1.url, n2.url + "?token=t"], token="T", admin_token="A", check_interval=0.5)`.

    Pass the same `port` and `data_dir` again to restart a relay on its old state."""
    port = port or free_port()
    data_dir = Path(flags.pop("data_dir", tmp_path / f"relay-{port}"))
    flags.setdefault("check_interval", 0.5)
    argv = [sys.executable, "-m", "proxy", "--port", str(port), "--data-dir", str(data_dir)]
    for url in nodes:
        argv += ["--node", url]
    argv += flags_to_argv(flags)
    relay = start_server(f"relay:{port}", argv, port, tmp_path / f"relay-{port}.log",
                         token=str(flags.get("token") or ""), cls=Relay, data_dir=data_dir,
                         admin_token=str(flags.get("admin_token") or ""))
    assert isinstance(relay, Relay)
    relay.argv = argv  # not through start_server(**extra): its own `argv` parameter would clash
    return relay
