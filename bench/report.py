"""Results: each benchmark is a `Section` of measured values and `Bar`s; printed as a table, saved as JSON.

A bar compares one ratio or count with the issue's limit; absolute times are reported beside it for
the reader but never decide PASS or FAIL. Rows and bars name the kind of node behind the relay
(`devnode`, `NodeODX`) where the benchmark runs against one; "relay / direct" is then the relay in
front of that node against that same node asked directly.
"""
from __future__ import annotations

import operator
import statistics
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt, "==": operator.eq}


@dataclass
class Bar:
    """`value op limit`, e.g. the task cycle's relay/direct ratio `<= 1.10`."""

    name: str
    value: float
    op: str
    limit: float
    unit: str = "x"
    node: str = ""  # the kind of node behind the relay, "" when none (the placement simulation)

    @property
    def passed(self) -> bool:
        return _OPS[self.op](self.value, self.limit)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


@dataclass
class Row:
    """One line of the table: a measured quantity through the relay and directly, with their ratio."""

    metric: str
    relay: float | None
    direct: float | None = None
    unit: str = ""
    node: str = ""  # the kind of node behind the relay ("direct" is that node), "" when none

    @property
    def ratio(self) -> float | None:
        if self.relay is None or not self.direct:
            return None
        return self.relay / self.direct

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


@dataclass
class Section:
    key: str
    title: str
    rows: list[Row] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def passed(self) -> bool:
        return not self.error and all(bar.passed for bar in self.bars)

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "passed": self.passed, "error": self.error,
                "rows": [r.to_json() for r in self.rows], "bars": [b.to_json() for b in self.bars],
                "details": self.details}


def percentile(values: Iterable[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 5000 samples is the 4950th smallest)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), int(-(-pct * len(ordered) // 100))))
    return ordered[rank - 1]


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:.2f}x"
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 10 or float(value).is_integer():
        text = f"{value:.1f}".rstrip("0").rstrip(".")
    else:
        text = f"{value:.3f}"
    return f"{text} {unit}".rstrip()


def table(sections: list[Section]) -> str:
    """The human-readable report: measurements first, then every bar with PASS or FAIL."""
    lines = []
    head = f"{'benchmark':<11} {'node':<8} {'metric':<36} {'relay':>14} {'direct':>14} {'ratio':>8}"
    lines += [head, "-" * len(head)]
    for section in sections:
        if section.error:
            lines.append(f"{section.key:<11} ERROR: {section.error}")
        for row in section.rows:
            lines.append(f"{section.key:<11} {row.node:<8} {row.metric:<36} {_num(row.relay, row.unit):>14} "
                         f"{_num(row.direct, row.unit):>14} {_num(row.ratio, 'x'):>8}")
    lines.append("")
    head = f"{'benchmark':<11} {'node':<8} {'bar':<48} {'value':>10} {'limit':>10}  result"
    lines += [head, "-" * len(head)]
    for section in sections:
        for bar in section.bars:
            lines.append(f"{section.key:<11} {bar.node:<8} {bar.name:<48} {_num(bar.value, bar.unit):>10} "
                         f"{bar.op + ' ' + _num(bar.limit, bar.unit):>10}  {'PASS' if bar.passed else 'FAIL'}")
        if section.error:
            lines.append(f"{section.key:<11} {'':<8} {'(not everything ran: see its ERROR above)':<48} "
                         f"{'':>10} {'':>10}  FAIL")
    return "\n".join(lines)
