"""`odx-relay nodes list|add|remove|lock|unlock`: the admin API from the command line."""
from __future__ import annotations

import argparse
import json
import os

import requests


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="odx-relay nodes", description="Manage the nodes of a running relay.")
    p.add_argument("--relay", default=os.environ.get("ODX_RELAY_URL", "http://127.0.0.1:3000"),
                   help="the relay's URL (env ODX_RELAY_URL; default http://127.0.0.1:3000)")
    p.add_argument("--admin-token", default=os.environ.get("ODX_RELAY_ADMIN_TOKEN", ""),
                   help="the relay's admin token (env ODX_RELAY_ADMIN_TOKEN)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every node with its state and last /info")
    add = sub.add_parser("add", help="register a node")
    add.add_argument("url", help="http://host:port[?token=SECRET]")
    add.add_argument("--label", default="")
    for name in ("remove", "lock", "unlock"):
        sub.add_parser(name, help=f"{name} a node by id").add_argument("node_id")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    base = args.relay.rstrip("/") + "/admin/nodes"
    headers = {"Authorization": f"Bearer {args.admin_token}"}
    if args.command == "list":
        resp = requests.get(base, headers=headers, timeout=30)
    elif args.command == "add":
        resp = requests.post(base, headers=headers, json={"url": args.url, "label": args.label}, timeout=60)
    elif args.command == "remove":
        resp = requests.delete(f"{base}/{args.node_id}", headers=headers, timeout=30)
    else:
        resp = requests.post(f"{base}/{args.node_id}/{args.command}", headers=headers, timeout=30)
    try:
        body = resp.json()
    except ValueError:
        body = resp.text
    if resp.status_code >= 400:
        message = body.get("error") if isinstance(body, dict) else body
        print(f"odx-relay nodes {args.command}: HTTP {resp.status_code}: {message}")
        return 1
    if args.command == "list":
        for node in body:
            info = node.get("info") or {}
            state = "locked" if node["locked"] else ("online" if node["online"] else "offline")
            print(f"{node['id']}  {state:8} {node['url']}  queue={info.get('taskQueueCount', '?')}"
                  f" slots={info.get('maxParallelTasks', '?')} maxImages={info.get('maxImages')}"
                  + (f"  ({node['lastError']})" if node.get("lastError") else ""))
    else:
        print(json.dumps(body, indent=2))
    return 0
