"""How each of the server's `/options` is edited in the options dialog: the kind of widget (check box,
drop-down, whole or decimal number with its bounds, text), its help as the widget's tooltip, and the choices
turned back into the `name=value` lines of the algorithm's Options field.

No Qt here: the dialog (`gui/options_dialog.py`) builds its widgets from these specs.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..deps import shared
from .presets import parse_option_text

NodeOption = shared.types.NodeOption
#: Bounds for a spin box whose domain gives none (Qt's spin boxes need some).
BIG = 1e9
_RANGE = re.compile(r"^(float|integer):\s*([-+.\deE]+)\s*<=\s*x\s*<=\s*([-+.\deE]+)$")
_COMPARE = re.compile(r"^(float|integer)\s*(>=|>)\s*([-+.\deE]+)$")


@dataclass(frozen=True)
class OptionSpec:
    """`kind` is "bool", "enum", "int", "float" or "text"; `default` is the server's, typed for the widget."""

    name: str
    kind: str
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    minimum: float = -BIG
    maximum: float = BIG


def help_text(option: NodeOption) -> str:
    """ODM's help with argparse's `%(default)s` and `%(choices)s` filled in."""
    choices = ", ".join(str(c) for c in option.domain) if isinstance(option.domain, list) else ""
    return (option.help.replace("%(default)s", option.value or '""').replace("%(choices)s", choices)
            .replace("%%", "%"))


def _number(text: str, integral: bool, fallback: float) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return fallback
    if not math.isfinite(value):
        return fallback
    return float(int(value)) if integral else value


def _bounds(domain: str, integral: bool) -> tuple[float, float]:
    domain = domain.strip()
    if domain.startswith("positive") or domain == "percent":
        return 0.0, 100.0 if domain == "percent" else BIG
    if m := _RANGE.match(domain):
        return float(m.group(2)), float(m.group(3))
    if m := _COMPARE.match(domain):
        bound = float(m.group(3))
        step = 1 if integral else 0.01
        return (bound if m.group(2) == ">=" else bound + step), BIG
    return -BIG, BIG


def spec(option: NodeOption) -> OptionSpec:
    text = help_text(option)
    if option.type == "bool":
        return OptionSpec(option.name, "bool", shared.options.option_is_true(option.value), text)
    if isinstance(option.domain, list) and option.domain:
        return OptionSpec(option.name, "enum", option.value, text, tuple(str(c) for c in option.domain))
    if option.type in ("int", "float"):
        integral = option.type == "int"
        low, high = _bounds(str(option.domain or ""), integral)
        default = min(max(_number(option.value, integral, max(low, 0.0)), low), high)
        return OptionSpec(option.name, "int" if integral else "float", int(default) if integral else default,
                          text, minimum=low, maximum=high)
    return OptionSpec(option.name, "text", option.value, text)


def specs(options: Iterable[NodeOption]) -> list[OptionSpec]:
    """One spec per option, by name."""
    return [spec(o) for o in sorted(options, key=lambda o: o.name)]


def typed(spec_: OptionSpec, value: Any) -> Any:
    """A value from the Options text (or a preset) in the form the spec's widget shows."""
    if spec_.kind == "bool":
        return shared.options.option_is_true(value)
    if spec_.kind in ("int", "float"):
        number = _number(str(value), spec_.kind == "int", spec_.default)
        number = min(max(number, spec_.minimum), spec_.maximum)
        return int(number) if spec_.kind == "int" else number
    return str(value)


def value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else str(value)
    return str(value)


def merge_text(text: str | None, chosen: Mapping[str, Any], known: Iterable[str]) -> str:
    """The Options text after the dialog: lines for options the server does not list are kept as they were
    (power users' entries), the dialog's choices follow, one `name=value` a line."""
    known = set(known)
    kept = [line.strip() for line in (text or "").replace(";", "\n").splitlines()
            if line.strip() and not _names(line) <= known]
    return "\n".join(kept + [f"{name}={value_text(value)}" for name, value in chosen.items()])


def _names(line: str) -> set[str]:
    """The option names a line of the Options text sets; none for a comment, and a line that cannot be read is
    kept as it is (the run reports it)."""
    if line.strip().startswith("#"):
        return {"#"}
    try:
        return set(parse_option_text(line)) or {"#"}
    except ValueError:
        return {"#"}
