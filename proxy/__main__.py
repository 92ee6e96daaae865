"""`odx-relay` (or `python -m proxy`): serve the relay, or manage a running relay's nodes."""
from __future__ import annotations

import sys

from aiohttp import web

from .app import create_app
from .config import parse_config
from .logs import configure as configure_logging
from .nodes import parse_node_url


def serve(argv: list[str]) -> None:
    config = parse_config(argv)
    try:
        for url in config.node_urls():
            parse_node_url(url)
    except (ValueError, OSError) as exc:
        sys.exit(f"odx-relay: {exc}")
    configure_logging(config.log_level)
    web.run_app(create_app(config), host=config.host, port=config.port, print=None,
                access_log=None, shutdown_timeout=5)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "nodes":
        from .nodes_cli import main as nodes_main
        sys.exit(nodes_main(argv[1:]))
    serve(argv)


if __name__ == "__main__":
    main()
