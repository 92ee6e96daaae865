"""`python -m bench [--quick] [--json PATH] [--only NAME,...]`: run the benchmarks, print the table, save JSON.

Run it from the repository root (as `make bench` does): the servers are started with `testkit`, the
helpers the test suite uses too. A benchmark that breaks is reported as an error in its section and the
others still run. The exit status is 0 unless `--strict` is given and a bar fails (or a benchmark broke).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the server helpers live in testkit/, beside this package
    sys.path.insert(0, str(REPO))

from . import (  # noqa: E402
    client,
    control_plane,
    cycle,
    info_load,
    parts,
    placement,
    splitmerge,
    stalls,
    streaming,
    upload,
    upload_memory,
)
from .context import Context  # noqa: E402
from .report import Section, table  # noqa: E402
from .stack import KINDS  # noqa: E402

BENCHMARKS = {"cycle": cycle.run, "upload": upload.run, "info": info_load.run, "stalls": stalls.run,
              "placement": placement.run, "control": control_plane.run, "concurrent": upload_memory.run,
              "parts": parts.run, "client": client.run, "streaming": streaming.run,
              "splitmerge": splitmerge.run}
DEFAULT_JSON = REPO / "var" / "bench" / "results.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Run the relay's benchmarks (relay vs "
                                     "direct to a node), print a table of ratios and bars, save the results as JSON.")
    parser.add_argument("--quick", action="store_true", help="small sizes (about 20 s), for CI smoke runs")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--cache", type=Path, default=REPO / "var" / "bench",
                        help="folder for inputs made once and reused (default var/bench)")
    parser.add_argument("--nodes", default=",".join(KINDS),
                        help="comma-separated node kinds the task cycle and the large upload run against, each "
                        f"directly and through its own relay (default and all: {','.join(KINDS)}; nodeodx is a real "
                        "NodeODX 2.3.1 in test mode, built by `make setup`)")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 if any bar fails")
    return parser.parse_args(argv)


def run_one(name: str, ctx: Context) -> Section:
    started = time.monotonic()
    print(f"[bench] {name} ...", file=sys.stderr, flush=True)
    try:
        section = BENCHMARKS[name](ctx)
    except Exception as exc:  # noqa: BLE001  whatever broke is reported in the table, the others still run
        traceback.print_exc()
        section = Section(name, name, error=f"{type(exc).__name__}: {exc}"[:500])
    section.details["wall_seconds"] = round(time.monotonic() - started, 1)
    print(f"[bench] {name} done in {section.details['wall_seconds']} s", file=sys.stderr, flush=True)
    return section


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    kinds = tuple(n.strip() for n in args.nodes.split(",") if n.strip())
    if not kinds or any(k not in KINDS for k in kinds):
        print(f"--nodes: choose one or more of {', '.join(KINDS)}", file=sys.stderr)
        return 2
    mode = "quick" if args.quick else "full"
    args.cache = args.cache.resolve()  # servers run in folders of their own: a relative path would not hold there
    scratch = args.cache / "run"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    ctx = Context(mode=mode, cache=args.cache, scratch=scratch, nodes=kinds)
    started = time.monotonic()
    sections = [run_one(name, ctx) for name in names]
    results = {
        "mode": mode, "nodes": list(kinds), "passed": all(s.passed for s in sections),
        "seconds": round(time.monotonic() - started, 1),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count()},
        "benchmarks": {s.key: s.to_json() for s in sections},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(table(sections))
    print(f"\n{mode} run in {results['seconds']} s; results in {args.json}")
    if all(not s.error for s in sections):
        shutil.rmtree(scratch, ignore_errors=True)
    else:
        print(f"server logs kept in {scratch}", file=sys.stderr)
    return 1 if args.strict and not results["passed"] else 0


if __name__ == "__main__":
    sys.exit(main())
