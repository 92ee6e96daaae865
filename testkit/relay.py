"""The relay (`python -m proxy`) as a subprocess on a free 127.0.0.1 port, and a throw-away `redis-server`."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testkit.servers import ServerProcess, flags_to_argv, free_port, start_server


@dataclass
class Relay(ServerProcess):
    """A relay; `data_dir` holds its database, staging and cache; `argv` restarts it the same way."""

    data_dir: Path = field(default=Path())
    argv: list[str] = field(default_factory=list)
    admin_token: str = ""

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}


def start_relay(tmp_path: Path, nodes: list[str] | tuple = (), *, port: int | None = None,
                env: dict[str, str] | None = None, **flags: Any) -> Relay:
    """`start_relay(tmp, [n1.url, n2.url + "?token=t"], token="T", admin_token="A", check_interval=0.5)`.

    Pass the same `port` and `data_dir` again to restart a relay on its old state; `env` adds environment
    variables (e.g. `{"ODX_FAULT_CRASH_AT": "in-commit"}`, see proxy/crashpoints.py).

    Unlike a relay started by hand, a test relay calls task webhooks on loopback addresses: tests receive
    them with a receiver on 127.0.0.1 (`WebhookReceiver`). Pass `webhook_allow_private=False` for a relay
    that refuses them, as a production relay does by default."""
    port = port or free_port()
    data_dir = Path(flags.pop("data_dir", tmp_path / f"relay-{port}"))
    flags.setdefault("check_interval", 0.5)
    flags.setdefault("webhook_allow_private", True)  # see above: the one default that differs from production
    argv = [sys.executable, "-m", "proxy", "--port", str(port), "--data-dir", str(data_dir)]
    for url in nodes:
        argv += ["--node", url]
    argv += flags_to_argv(flags)
    relay = start_server(f"relay:{port}", argv, port, tmp_path / f"relay-{port}.log", env=env,
                         token=str(flags.get("token") or ""), cls=Relay, data_dir=data_dir,
                         admin_token=str(flags.get("admin_token") or ""))
    assert isinstance(relay, Relay)
    relay.argv = argv  # not through start_server(**extra): its own `argv` parameter would clash
    return relay


def start_redis(tmp_path: Path, port: int | None = None) -> ServerProcess:
    """A throw-away `redis-server` on 127.0.0.1 (no persistence unless the test restarts it on `port`)."""
    port = port or free_port()
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    log_path = tmp_path / f"redis-{port}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen([server, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                                    "--appendonly", "no", "--dir", str(tmp_path)],
                                   stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    redis_server = ServerProcess(name=f"redis:{port}", url=f"redis://127.0.0.1:{port}/0", port=port,
                                 process=process, log_path=log_path)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return redis_server
        except OSError:
            time.sleep(0.05)
    redis_server.stop()
    raise RuntimeError(f"redis-server did not start:\n{redis_server.log()}")
