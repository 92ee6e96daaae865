"""`odx-devnode` / `python -m devnode`: start one NodeODX-compatible development node.

Every flag can also be set with an environment variable named ODX_DEVNODE_<FLAG> (dashes become
underscores: `--max-images` is ODX_DEVNODE_MAX_IMAGES); a flag on the command line wins. Switches
(`--fail-tasks`, `--range`) read 1/true/yes/on from the environment. The token is never logged. The flags
are the fields of `devnode.config.Config`, declared there once.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from shared import flags

from .app import create_app, engine_version
from .config import API_VERSION, ENV_PREFIX, Config

DESCRIPTION = ("A development node that answers the NodeODX API (2.2.1, engine \"odx\") and simulates processing, "
               "returning real georeferenced outputs.")

log = logging.getLogger("devnode")


def env_name(flag: str) -> str:
    """The environment variable that stands for `--flag`."""
    return flags.env_name(ENV_PREFIX, flag)


def build_parser() -> argparse.ArgumentParser:
    parser = flags.build_parser(Config, "odx-devnode", DESCRIPTION, ENV_PREFIX)
    parser.epilog = (f"Every flag can also come from the environment as {ENV_PREFIX}<FLAG>, for example "
                     f"{env_name('--max-images')}=50.")
    parser.add_argument("--version", action="version",
                        version=f"odx-devnode {engine_version()} (NodeODX API {API_VERSION})")
    return parser


class PathAccessLogger(AbstractAccessLogger):
    """One line per request, without the query string: a `?token=` must never reach the log."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.debug("%s %s %s %.3fs", request.method, request.path, response.status, time)


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    try:
        config = flags.parse_settings(Config, parser, argv)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=config.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with ExitStack() as stack:
        data_dir = config.data_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="odx-devnode-")))
        config = dataclasses.replace(config, data_dir=data_dir.resolve())
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
