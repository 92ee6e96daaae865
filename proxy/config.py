"""The relay's settings, each declared once: a flag, an environment variable `ODX_RELAY_<FLAG>` and a field.

A flag on the command line wins over its variable; `--node` may repeat, and ODX_RELAY_NODE takes a
comma-separated list. `--nodes-file` names a file with one node URL per line (`#` starts a comment).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from shared.flags import build_parser as flags_parser
from shared.flags import parse_settings, setting
from shared.memory import DEFAULT_TABLE, parse_table

ENV_PREFIX = "ODX_RELAY_"


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix"); ValueError saying what is wrong otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"--results-s3 must look like s3://bucket/prefix, not {url!r}")
    return parts.netloc, parts.path.strip("/")


def s3_url(text: str) -> str:
    if text:
        try:
            parse_s3_url(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, not {text!r}")
    return value
DESCRIPTION = ("A NodeODX endpoint in front of many NodeODX nodes. Every flag can also be set as ODX_RELAY_<FLAG> "
               "(for example ODX_RELAY_PORT=3000). Manage nodes of a running relay with 'odx-relay nodes --help'.")


@dataclass
class RelayConfig:
    host: str = setting("127.0.0.1", "address to listen on")
    port: int = setting(3000, "port to listen on")
    nodes: list[str] = setting(help="a NodeODX node, e.g. http://127.0.0.1:3001?token=SECRET; repeat for more",
                               flag="--node", repeat=True, default_factory=list)
    nodes_file: str = setting("", "file with one node URL per line")
    token: str = setting("", "token clients must send as ?token=")
    admin_token: str = setting("", "secret for the admin API (/admin/...); without it the admin API is off")
    data_dir: Path = setting(Path("var/relay"), "folder for the state database, staged uploads and the download "
                                                "cache", parse=Path)
    staging_dir: Path | None = setting(None, "folder for staged uploads; replicas behind one balancer must share "
                                             "it", parse=Path, shown="DATA_DIR/staging")
    results_dir: Path | None = setting(None, "folder where each completed task's all.zip is kept, so its outputs "
                                             "outlive its node; replicas behind one balancer must share it",
                                       parse=Path, shown="DATA_DIR/results")
    results_s3: str = setting("", "keep the results in S3-compatible object storage instead, as s3://bucket/prefix "
                                  "(endpoint and credentials from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, "
                                  "AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION)", parse=s3_url,
                                  shown="none: --results-dir")
    keep_results: float = setting(0.0, "seconds a completed task is kept after it ended; past it the task is removed "
                                       "with its results, as a NodeODX node removes old tasks", parse=seconds,
                                  shown="0: forever")
    remove_from_node: bool = setting(False, "once a task's results are archived, remove its copy from the node; the "
                                            "relay then answers its info, output and downloads from what it stored")
    redis: str = setting("", "Redis URL (also REDIS_URL) to share state between relay replicas",
                         also_env="REDIS_URL", shown="none: SQLite in DATA_DIR")
    failover_after: float = setting(300.0, "seconds a node may stay offline before its tasks are sent to another "
                                           "node")
    public_url: str = setting("", "URL at which nodes reach this relay, for webhooks and split-merge's sm-cluster",
                              shown="http://HOST:PORT")
    no_split_merge: bool = setting(False, "turn split-merge through the relay off: sm-cluster is removed from "
                                          "every task's options and seed.zip is refused")
    allow_registration: bool = setting(False, "let anyone create an account with /auth/register")
    check_interval: float = setting(10.0, "seconds between node health checks")
    offline_after: int = setting(3, "failed checks in a row before a node counts as offline")
    node_timeout: float = setting(30.0, "seconds to wait for a node to connect or send data")
    keep_inputs: float = setting(86400.0, "seconds to keep a task's staged inputs after it ends")
    upload_idle: float = setting(3600.0, "seconds an upload that was never committed may stay silent before it "
                                         "expires: its task and staged files are removed")
    max_upload_mb: float = setting(0.0, "most megabytes one task's files may take, all files together; an upload "
                                        "past it is refused and its partial file removed", shown="0: no limit")
    max_images: int = setting(0, "most photos one task may have on this relay, whatever the nodes take",
                              shown="0: no limit")
    upload_timeout: float = setting(60.0, "seconds an upload may send nothing before it is dropped, its partial "
                                          "file removed and its connection closed")
    upload_min_kbps: float = setting(8.0, "least average rate of an upload request in KB/s, checked once it has "
                                          "lasted --upload-timeout seconds (0: no floor)")
    zipurl_max_mb: float = setting(10240.0, "largest zip a task's zipurl may point to, and what it may extract to "
                                            "(--max-upload-mb applies too when smaller)")
    zipurl_timeout: float = setting(1800.0, "seconds a zipurl download may take in all")
    zipurl_allow_private: bool = setting(False, "let zipurl fetch from loopback, private and link-local addresses "
                                                "(otherwise public addresses only)")
    webhook_allow_private: bool = setting(False, "let a task's webhook be called on loopback, private and link-local "
                                                 "addresses (otherwise public addresses only)")
    max_open_uploads: int = setting(20, "most uploads one client (token or account) may have open, begun with "
                                        "/task/new/init and not yet committed; init is refused past it (0: no cap)")
    login_failures: int = setting(5, "failed logins allowed per client address, and per username, within "
                                     "--login-window seconds; past it /auth/login answers 429 (0: no limit)")
    login_window: float = setting(300.0, "seconds over which failed logins are counted")
    trusted_proxy: list[str] = setting(help="address or network (CIDR) of a balancer in front of the relay, whose "
                                            "X-Forwarded-For names the client for the login limit; repeat for more",
                                       repeat=True, default_factory=list)
    cache_mb: float = setting(10240.0, "most megabytes the download cache (all.zip and products cut from it) may "
                                       "take; the least recently used tasks' files go first (0: no limit)")
    memory_table: tuple = setting(DEFAULT_TABLE, "memory model as images:GB,...", parse=parse_table,
                                  shown="WebODM's hardware table")
    log_level: str = setting("INFO", "DEBUG, INFO, WARNING")

    @property
    def callback_base(self) -> str:
        """How nodes reach this relay: webhooks, and ODM's submodels (sm-cluster)."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    def node_urls(self) -> list[str]:
        urls = list(self.nodes)
        if self.nodes_file:
            for line in Path(self.nodes_file).read_text().splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    urls.append(line)
        return urls


def build_parser() -> argparse.ArgumentParser:
    return flags_parser(RelayConfig, "odx-relay", DESCRIPTION, ENV_PREFIX)


def parse_config(argv: list[str] | None = None) -> RelayConfig:
    return parse_settings(RelayConfig, build_parser(), argv)
