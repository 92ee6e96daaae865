"""Secrets stay inside the relay: a node's Basic-auth password and token, the clients' tokens. Searched for
in every reply, every log line and every file the relay writes; the state file is the relay's alone."""
from __future__ import annotations

import socket
import stat
from pathlib import Path

import requests

from testkit.devnode import start_devnode
from testkit.relay import start_relay
from testkit.servers import ServerGroup, free_port
from tests.relay.relay_helpers import COMPLETED, submit, wait_status

PASSWORD = "hunter2-basic-pass"
NODE_TOKEN = "node-token-never-shown"
CLIENT = "client-token-kept-out-of-logs"
ADMIN = "admin-secret-kept-out-of-logs"


def written_by(folder: Path) -> str:
    return "\n".join(p.read_bytes().decode("latin-1") for p in folder.rglob("*") if p.is_file()
                     and p.suffix not in (".sqlite3", ".sqlite3-wal", ".sqlite3-shm") and p.stat().st_size < 10**7)


def test_no_secret_in_replies_logs_or_files(tmp_path: Path, sample_images: list[Path]) -> None:
    with ServerGroup(tmp_path) as group:
        node = group.add(start_devnode(tmp_path, token=NODE_TOKEN, seconds_per_image=0.02))
        dead = f"http://relayuser:{PASSWORD}@127.0.0.1:{free_port()}"
        relay = group.add(start_relay(tmp_path, [f"{node.url}?token={NODE_TOKEN}", dead], token=CLIENT,
                                      admin_token=ADMIN, check_interval=0.3))
        uuid = submit(relay, sample_images[:3])
        replies = [requests.get(relay.api(path), timeout=30).text for path in
                   ("/info", "/options", "/task/list", f"/task/{uuid}/info", f"/task/{uuid}/output")]
        assert wait_status(relay, uuid)["status"]["code"] == COMPLETED
        replies.append(requests.get(f"{relay.url}/admin/nodes", headers=relay.admin_headers(), timeout=30).text)
        assert "relayuser:***@" in replies[-1]  # the admin sees which node, not its password
        with socket.create_connection(("127.0.0.1", relay.port)) as sock:  # a request line far too long
            sock.sendall(f"GET /info?token={CLIENT}&x={'x' * 20000} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
            sock.recv(1024)
        relay.stop()
        everything = "\n".join(replies) + relay.log() + written_by(relay.data_dir)
        for secret in (PASSWORD, NODE_TOKEN, CLIENT, ADMIN):
            assert secret not in everything, secret
        assert "Traceback" not in relay.log()
        state = relay.data_dir / "relay.sqlite3"
        assert stat.S_IMODE(state.stat().st_mode) == 0o600
        assert stat.S_IMODE((relay.data_dir / "relay.secret").stat().st_mode) == 0o600
