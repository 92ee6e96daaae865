"""The relay's settings: flags, each also read from an environment variable `ODX_RELAY_<FLAG>`.

A flag on the command line wins over its variable; `--node` may repeat, and ODX_RELAY_NODE takes a
comma-separated list. `--nodes-file` names a file with one node URL per line (`#` starts a comment).
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from shared.memory import DEFAULT_TABLE, parse_table

ENV_PREFIX = "ODX_RELAY_"


@dataclass
class RelayConfig:
    host: str = "127.0.0.1"
    port: int = 3000
    nodes: list[str] = field(default_factory=list)
    nodes_file: str = ""
    token: str = ""
    admin_token: str = ""
    data_dir: Path = Path("var/relay")
    staging_dir: Path | None = None
    redis: str = ""
    failover_after: float = 300.0
    public_url: str = ""
    allow_registration: bool = False
    check_interval: float = 10.0
    offline_after: int = 3
    node_timeout: float = 30.0
    keep_inputs: float = 24 * 3600.0
    upload_idle: float = 3600.0
    max_upload_mb: float = 0.0
    max_images: int = 0
    upload_timeout: float = 60.0
    zipurl_max_mb: float = 10240.0
    zipurl_timeout: float = 1800.0
    zipurl_allow_private: bool = False
    memory_table: tuple = DEFAULT_TABLE
    log_level: str = "INFO"

    @property
    def callback_base(self) -> str:
        """How nodes reach this relay for webhooks."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    def node_urls(self) -> list[str]:
        urls = list(self.nodes)
        if self.nodes_file:
            for line in Path(self.nodes_file).read_text().splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    urls.append(line)
        return urls


def _env(name: str, default=None):
    return os.environ.get(ENV_PREFIX + name.upper().replace("-", "_"), default)


def _truthy(text: str | None) -> bool:
    return str(text or "").strip().lower() in ("1", "true", "yes", "on")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="odx-relay",
        description="A NodeODX endpoint in front of many NodeODX nodes. Every flag can also be set as "
                    "ODX_RELAY_<FLAG> (for example ODX_RELAY_PORT=3000). Manage nodes of a running relay "
                    "with 'odx-relay nodes --help'.")
    p.add_argument("--host", default=_env("host", "127.0.0.1"), help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=int(_env("port", 3000)), help="port to listen on (default 3000)")
    p.add_argument("--node", action="append", dest="nodes", metavar="URL",
                   help="a NodeODX node, e.g. http://127.0.0.1:3001?token=SECRET; repeat for more")
    p.add_argument("--nodes-file", default=_env("nodes-file", ""), help="file with one node URL per line")
    p.add_argument("--token", default=_env("token", ""), help="token clients must send as ?token= (default: none)")
    p.add_argument("--admin-token", default=_env("admin-token", ""),
                   help="secret for the admin API (/admin/...); without it the admin API is off")
    p.add_argument("--data-dir", default=_env("data-dir", "var/relay"),
                   help="folder for the state database, staged uploads and the download cache")
    p.add_argument("--staging-dir", default=_env("staging-dir", ""),
                   help="folder for staged uploads (default DATA_DIR/staging); replicas behind one balancer "
                        "must share it")
    p.add_argument("--redis", default=_env("redis", os.environ.get("REDIS_URL", "")),
                   help="Redis URL (also REDIS_URL) to share state between relay replicas; default: SQLite in DATA_DIR")
    p.add_argument("--failover-after", type=float, default=float(_env("failover-after", 300)),
                   help="seconds a node may stay offline before its tasks are sent to another node (default 300)")
    p.add_argument("--public-url", default=_env("public-url", ""),
                   help="URL at which nodes reach this relay for webhooks (default http://HOST:PORT)")
    p.add_argument("--allow-registration", action="store_true", default=_truthy(_env("allow-registration")),
                   help="let anyone create an account with /auth/register (default off)")
    p.add_argument("--check-interval", type=float, default=float(_env("check-interval", 10)),
                   help="seconds between node health checks (default 10)")
    p.add_argument("--offline-after", type=int, default=int(_env("offline-after", 3)),
                   help="failed checks in a row before a node counts as offline (default 3)")
    p.add_argument("--node-timeout", type=float, default=float(_env("node-timeout", 30)),
                   help="seconds to wait for a node to connect or send data (default 30)")
    p.add_argument("--keep-inputs", type=float, default=float(_env("keep-inputs", 86400)),
                   help="seconds to keep a task's staged inputs after it ends (default 86400)")
    p.add_argument("--upload-idle", type=float, default=float(_env("upload-idle", 3600)),
                   help="seconds an upload that was never committed may stay silent before it expires: its "
                        "task and staged files are removed (default 3600)")
    p.add_argument("--max-upload-mb", type=float, default=float(_env("max-upload-mb", 0)),
                   help="most megabytes one task's files may take, all files together (default 0: no limit); "
                        "an upload past it is refused and its partial file removed")
    p.add_argument("--max-images", type=int, default=int(_env("max-images", 0)),
                   help="most photos one task may have on this relay, whatever the nodes take (default 0: no limit)")
    p.add_argument("--upload-timeout", type=float, default=float(_env("upload-timeout", 60)),
                   help="seconds an upload may send nothing before it is dropped, its partial file removed and "
                        "its connection closed (default 60)")
    p.add_argument("--zipurl-max-mb", type=float, default=float(_env("zipurl-max-mb", 10240)),
                   help="largest zip a task's zipurl may point to, and what it may extract to (default 10240; "
                        "--max-upload-mb applies too when smaller)")
    p.add_argument("--zipurl-timeout", type=float, default=float(_env("zipurl-timeout", 1800)),
                   help="seconds a zipurl download may take in all (default 1800)")
    p.add_argument("--zipurl-allow-private", action="store_true", default=_truthy(_env("zipurl-allow-private")),
                   help="let zipurl fetch from loopback, private and link-local addresses (default off: public only)")
    p.add_argument("--memory-table", default=_env("memory-table", ""),
                   help="memory model as images:GB,... (default: WebODM's hardware table)")
    p.add_argument("--log-level", default=_env("log-level", "INFO"), help="DEBUG, INFO, WARNING (default INFO)")
    return p


def parse_config(argv: list[str] | None = None) -> RelayConfig:
    args = build_parser().parse_args(argv)
    nodes = args.nodes if args.nodes else [u for u in (_env("node", "") or "").split(",") if u.strip()]
    return RelayConfig(
        host=args.host, port=args.port, nodes=nodes, nodes_file=args.nodes_file, token=args.token,
        admin_token=args.admin_token, data_dir=Path(args.data_dir), public_url=args.public_url,
        staging_dir=Path(args.staging_dir) if args.staging_dir else None, redis=args.redis,
        failover_after=args.failover_after,
        allow_registration=args.allow_registration, check_interval=args.check_interval,
        offline_after=args.offline_after, node_timeout=args.node_timeout, keep_inputs=args.keep_inputs,
        upload_idle=args.upload_idle, max_upload_mb=args.max_upload_mb, max_images=args.max_images,
        upload_timeout=args.upload_timeout, zipurl_max_mb=args.zipurl_max_mb, zipurl_timeout=args.zipurl_timeout,
        zipurl_allow_private=args.zipurl_allow_private,
        memory_table=parse_table(args.memory_table) if args.memory_table else DEFAULT_TABLE,
        log_level=args.log_level)
