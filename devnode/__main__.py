"""`odx-devnode` / `python -m devnode`: start one NodeODX-compatible development node.

Every flag can also be set with an environment variable named ODX_DEVNODE_<FLAG> (dashes become
underscores: `--max-images` is ODX_DEVNODE_MAX_IMAGES); a flag on the command line wins. Switches
(`--fail-tasks`, `--range`) read 1/true/yes/on from the environment. The token is never logged.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from .app import create_app, engine_version
from .config import API_VERSION, Config
from .tasks import DIE_EXIT_CODE

ENV_PREFIX = "ODX_DEVNODE_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

log = logging.getLogger("devnode")


def env_name(flag: str) -> str:
    """The environment variable that stands for `--flag`."""
    return ENV_PREFIX + flag.lstrip("-").upper().replace("-", "_")


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("a rate is a number between 0 and 1")
    return value


def _switch(text: str) -> bool:
    if text.strip().lower() in _TRUE:
        return True
    if text.strip().lower() in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="odx-devnode",
        description="A development node that answers the NodeODX API (2.2.1, engine \"odx\") and simulates "
                    "processing, returning real georeferenced outputs.",
        epilog=f"Every flag can also come from the environment as {ENV_PREFIX}<FLAG>, for example "
               f"{env_name('--max-images')}=50.",
    )

    def option(flag: str, convert: Callable[[str], Any], default: Any, help: str, **kwargs: Any) -> None:
        raw = os.environ.get(env_name(flag))
        if raw is not None:
            try:
                default = convert(raw)
            except (ValueError, argparse.ArgumentTypeError) as exc:
                parser.error(f"{env_name(flag)}={raw!r}: {exc}")
        parser.add_argument(flag, type=convert, default=default, help=f"{help}; env {env_name(flag)}", **kwargs)

    def switch(flag: str, help: str) -> None:
        raw = os.environ.get(env_name(flag))
        try:
            default = _switch(raw) if raw is not None else False
        except argparse.ArgumentTypeError as exc:
            parser.error(f"{env_name(flag)}={raw!r}: {exc}")
        parser.add_argument(flag, action="store_true", default=default, help=f"{help}; env {env_name(flag)}")

    option("--host", str, "127.0.0.1", "address to listen on (default 127.0.0.1)")
    option("--port", int, 3000, "port to listen on (default 3000)")
    option("--slots", int, 1, "tasks processed at once, reported as maxParallelTasks (default 1)")
    option("--max-images", int, 0, "most images a task may have, reported as maxImages (default 0: no limit)")
    option("--memory-gb", float, 16.0, "memory the node reports as totalMemory, in GB (default 16)")
    option("--seconds-per-image", float, 0.05, "simulated processing time per image (default 0.05)")
    option("--token", str, "", "require ?token=TOKEN on every API call but /auth/* (default: none)")
    option("--data-dir", Path, None, "where tasks, uploads and outputs live (default: a temporary folder)")
    option("--options-file", Path, None, "JSON file to answer /options with (default: the real NodeODX list)")
    switch("--fail-tasks", "make every task fail half way through processing")
    option("--drop-uploads", _rate, 0.0, "share of /task/new/upload calls answered with HTTP 500 (0..1)",
           metavar="RATE")
    switch("--range", "answer Range requests on downloads with 206 (NodeODX does not)")
    option("--die-after", int, 0, f"exit with status {DIE_EXIT_CODE} half way through the Nth task started, "
           "to simulate a crash (default 0: never)", metavar="N")
    option("--log-level", str, "INFO", "DEBUG shows each request (path only), INFO each task event")
    parser.add_argument("--version", action="version",
                        version=f"odx-devnode {engine_version()} (NodeODX API {API_VERSION})")
    return parser


class PathAccessLogger(AbstractAccessLogger):
    """One line per request, without the query string: a `?token=` must never reach the log."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.debug("%s %s %s %.3fs", request.method, request.path, response.status, time)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with ExitStack() as stack:
        data_dir = args.data_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="odx-devnode-")))
        try:
            config = Config(data_dir=data_dir.resolve(), host=args.host, port=args.port, slots=args.slots,
                            max_images=args.max_images, memory_gb=args.memory_gb,
                            seconds_per_image=args.seconds_per_image, token=args.token,
                            fail_tasks=args.fail_tasks, drop_uploads=args.drop_uploads, range=args.range,
                            die_after=args.die_after, options_file=args.options_file)
        except ValueError as exc:
            build_parser().error(str(exc))
        faults = [name for name, on in (("fail-tasks", config.fail_tasks), ("range", config.range),
                                         (f"drop-uploads {config.drop_uploads}", config.drop_uploads),
                                         (f"die-after {config.die_after}", config.die_after)) if on]
        log.info("slots %d, max images %s, memory %.1f GB, %.3f s per image, token %s, data in %s%s",
                 config.slots, config.max_images or "unlimited", config.memory_gb, config.seconds_per_image,
                 "required" if config.token else "not required", config.data_dir,
                 f", faults: {', '.join(faults)}" if faults else "")
        web.run_app(create_app(config), host=config.host, port=config.port,
                    access_log_class=PathAccessLogger, access_log=logging.getLogger("devnode.access"),
                    print=lambda _: log.info("listening on http://%s:%d", config.host, config.port))


if __name__ == "__main__":
    main()
