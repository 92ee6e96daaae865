"""The benchmark harness end to end, at its smallest (`python -m bench --quick`): it starts and stops
its servers, runs every benchmark and writes a JSON report with every section. Ratios in quick mode
are too noisy to judge, so the bars are checked for shape here, not for PASS."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.servers import REPO

SECTIONS = {"cycle", "upload", "info", "stalls", "placement"}


def test_quick_bench_writes_every_section(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    run = subprocess.run([sys.executable, "-m", "bench", "--quick", "--json", str(results), "--cache", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
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
    assert "result" in run.stdout and "benchmark" in run.stdout  # the table was printed
    assert not (tmp_path / "run").exists(), "the servers' scratch folder is removed after a clean run"
