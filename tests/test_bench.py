"""The benchmark harness end to end, at its smallest (`python -m bench --quick`): it starts and stops
its servers, runs every benchmark and writes a JSON report with every section. The task cycle and the
large upload run against both kinds of node (the development node and a real NodeODX), each directly
and through a relay; the many uploads at once are forwarded to each kind of node, and staged only.
Ratios in quick mode are too noisy to judge, so the bars are checked for shape here, not for PASS."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from testkit.servers import REPO

pytestmark = pytest.mark.slow

SECTIONS = {"cycle", "upload", "info", "stalls", "placement", "control", "concurrent", "parts", "client",
            "streaming", "splitmerge"}
NODE_KINDS = {"devnode", "NodeODX"}  # as rows and bars name them
CYCLE_STEPS = {"init", "upload, each photo", "commit", "info poll, each", "download all.zip (whole)"}


def test_quick_bench_writes_every_section(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    run = subprocess.run([sys.executable, "-m", "bench", "--quick", "--json", str(results), "--cache", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(results.read_text())
    assert report["mode"] == "quick"
    assert set(report["benchmarks"]) == SECTIONS
    for name, section in report["benchmarks"].items():
        assert section["error"] == "", f"{name}: {section['error']}"
        assert section["rows"] and section["bars"], name
        for bar in section["bars"]:
            assert {"name", "value", "op", "limit", "passed"} <= set(bar), (name, bar)
    assert report["benchmarks"]["placement"]["passed"], "the simulation is deterministic: its bars must pass"
    assert report["nodes"] == ["devnode", "nodeodx"]
    for name in ("cycle", "upload"):  # relay vs direct on each kind of node, in the same run
        section = report["benchmarks"][name]
        assert {row["node"] for row in section["rows"]} == NODE_KINDS, name
        assert {bar["node"] for bar in section["bars"]} == NODE_KINDS, name
        for kind in NODE_KINDS:
            timed = [row for row in section["rows"] if row["node"] == kind and "CPU" not in row["metric"]]
            assert all(row["relay"] > 0 and row["direct"] > 0 and row["ratio"] > 0 for row in timed), (name, timed)
    cycle = report["benchmarks"]["cycle"]
    for kind in NODE_KINDS:  # where the time goes, step by step, for each kind of node
        steps = {row["metric"].removeprefix("step: ") for row in cycle["rows"] if row["node"] == kind}
        assert CYCLE_STEPS <= steps, (kind, steps)
        assert [b["name"] for b in cycle["bars"] if b["node"] == kind] == ["cycle: relay / direct (ratio of medians)"]
        cpu = {row["metric"]: row for row in cycle["rows"] if row["node"] == kind and "CPU" in row["metric"]}
        assert cpu["CPU per cycle: relay process"]["direct"] is None  # nothing to compare it with
        assert cpu["CPU per cycle: node and its children"]["direct"] > 0
    concurrent = report["benchmarks"]["concurrent"]  # forwarded to each kind of node, and staged only (node offline)
    assert {bar["node"] for bar in concurrent["bars"]} == NODE_KINDS | {""}
    assert set(concurrent["details"]["runs"]) == {"forwarding devnode", "forwarding nodeodx",
                                                  "staging only (node offline)"}
    for how, result in concurrent["details"]["runs"].items():
        assert result["at_once"] == concurrent["details"]["uploads"] and result["failed"] == 0, (how, result)
        assert result["forwarded"] == (result["at_once"] if how.startswith("forwarding") else 0), (how, result)
        assert 0 < result["idle_mb"] <= result["peak_mb"] and result["after_mb"] > 0, (how, result)
    parts = report["benchmarks"]["parts"]  # one multipart upload of each size, timed per part
    assert len(parts["details"]["per_part_us"]) == 3 and all(t > 0 for t in parts["details"]["per_part_us"].values())
    assert [bar["op"] for bar in parts["bars"]] == ["<="]
    client = report["benchmarks"]["client"]  # our client vs pyodx, each in its own process: to the node and the relay
    assert {row["node"] for row in client["rows"]} == {"NodeODX", "relay"}
    assert all(row["relay"] > 0 and row["direct"] > 0 for row in client["rows"]), client["rows"]
    assert [(bar["name"], bar["limit"]) for bar in client["bars"]] == [
        ("upload time: ours / pyodx (medians)", 1.0), ("upload peak RSS: ours / pyodx", 0.2)]
    for how, result in client["details"].items():
        if isinstance(result, dict):  # each client's runs, with its progress reaching 100 %
            assert all(r["last_progress"] == 100.0 for runs in result.values() for r in runs["runs"]), how
    splitmerge = report["benchmarks"]["splitmerge"]  # one split task on 4 nodes through the relay, and on one node
    assert splitmerge["details"]["split_merge_seconds"] > 0 and splitmerge["details"]["one_node_seconds"] > 0
    assert splitmerge["details"]["submodel_nodes_seen"] >= 1
    assert [bar["name"] for bar in splitmerge["bars"]] == ["split-merge makespan / one node"]
    assert "result" in run.stdout and "benchmark" in run.stdout  # the table was printed
    assert "NodeODX" in run.stdout and "devnode" in run.stdout
    assert not (tmp_path / "run").exists(), "the servers' scratch folder is removed after a clean run"
    streaming = report["benchmarks"]["streaming"]  # streamed vs downloaded, each run drawn by a real QGIS
    assert [row["node"] for row in streaming["rows"]] == ["NodeODX", "NodeODX"]  # at COMPLETED, and later
    assert all(row["relay"] > 0 and row["direct"] > 0 for row in streaming["rows"])
    for when, by_mode in streaming["details"]["runs"].items():
        assert set(by_mode) == {"streamed", "downloaded"}, when
        for mode, runs in by_mode.items():
            assert runs and all(run["pixels"] > 0 and run["width"] > 1000 for run in runs), (when, mode, runs)
