"""Task options: normalising what callers pass, and validating it against a node's `/options`.

NodeODX describes each option with a `type` (bool, int, float, string, enum) and a `domain`, a small
language: "integer", "positive integer", "float", "positive float", "float > 0.0",
"integer: 1 <= x <= 14", "json", "string", "percent", or a list of allowed values. NodeODX itself
silently drops unknown names and fails late; here every problem is reported up front, named, in words
a person can act on.
"""
from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .types import NodeOption

MIN_IMAGES = 2
MAX_JSON_DEPTH = 64  # levels of nesting in JSON a client sends; a GeoJSON boundary option needs about ten

_RANGE = re.compile(r"^(float|integer):\s*([-+.\deE]+)\s*<=\s*x\s*<=\s*([-+.\deE]+)$")
_COMPARE = re.compile(r"^(float|integer)\s*(>=|>|<=|<)\s*([-+.\deE]+)$")
_SIGNED = re.compile(r"^(?:(positive|negative)\s+)?(integer|float)$")
_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


@dataclass(frozen=True)
class OptionProblem:
    """One reason a task cannot be sent as it is. `option` is the option's name (or "images")."""

    option: str
    message: str

    def __str__(self) -> str:
        return f"{self.option}: {self.message}"


def normalize_options(options: Mapping[str, Any] | Iterable[Mapping[str, Any]] | None) -> dict[str, Any]:
    """Accept `{name: value}` or NodeODX's `[{"name": ..., "value": ...}]` and return a dict."""
    if not options:
        return {}
    if isinstance(options, Mapping):
        return dict(options)
    out: dict[str, Any] = {}
    for item in options:
        if not isinstance(item, Mapping) or "name" not in item:
            raise ValueError(f"each option must be an object with a name and a value, got {item!r}")
        out[str(item["name"])] = item.get("value")
    return out


def options_to_json(options: Mapping[str, Any] | Iterable[Mapping[str, Any]] | None) -> str:
    """Serialise options the way NodeODX's `options` form field expects them."""
    return json.dumps([{"name": k, "value": v} for k, v in normalize_options(options).items()])


def json_depth(value: Any) -> int:
    """How deeply lists and objects nest in a parsed JSON value (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in children)
    return deepest


def check_depth(value: Any, what: str) -> Any:
    """`value` if it nests no deeper than MAX_JSON_DEPTH; ValueError in words otherwise."""
    if json_depth(value) > MAX_JSON_DEPTH:
        raise ValueError(f"{what} is nested too deeply (at most {MAX_JSON_DEPTH} levels of lists and objects)")
    return value


def loads_limited(text: str | bytes, what: str) -> Any:
    """`json.loads` for text a client sent: JSON nested past MAX_JSON_DEPTH is a ValueError in words (Python's
    parser would raise RecursionError past about a thousand levels), as is JSON that does not parse."""
    try:
        return check_depth(json.loads(text), what)
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply (at most {MAX_JSON_DEPTH} levels of lists and "
                         f"objects)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} is not valid JSON ({exc.msg} at character {exc.pos})") from None


def parse_options_field(raw: str | None) -> dict[str, Any]:
    """Parse the `options` form field of `/task/new` and `/task/new/init`; raise ValueError in words."""
    if raw is None or raw.strip() == "":
        return {}
    data = loads_limited(raw, "options")
    if not isinstance(data, (list, dict)):
        raise ValueError("options must be a JSON list of {\"name\": ..., \"value\": ...} objects")
    return normalize_options(data)


def _as_number(value: Any, integral: bool) -> float | int:
    if isinstance(value, bool):
        raise ValueError("expected a number, got a true/false value")
    if isinstance(value, (int, float)):
        number = value
    else:
        text = str(value).strip()
        number = float(text)
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    if integral:
        if float(number) != int(float(number)):
            raise ValueError(f"expected a whole number, got {value!r}")
        return int(float(number))
    return float(number)


def _check_type(option: NodeOption, value: Any) -> str | None:
    kind = option.type
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return None
            if str(value).strip().lower() not in _TRUE | _FALSE:
                return f"expected true or false, got {value!r}"
        elif kind == "int":
            _as_number(value, integral=True)
        elif kind == "float":
            _as_number(value, integral=False)
    except ValueError as exc:
        return str(exc) if "expected" in str(exc) else f"expected a number, got {value!r}"
    return None


def _check_domain(option: NodeOption, value: Any) -> str | None:
    domain = option.domain
    if isinstance(domain, list):
        allowed = [str(d) for d in domain]
        if str(value) not in allowed:
            shown = ", ".join(repr(a) for a in allowed)
            return f"{value!r} is not one of {shown}"
        return None
    domain = str(domain or "").strip()
    if domain in ("", "bool", "boolean", "string", "path"):
        return None
    if domain == "json":
        if isinstance(value, (dict, list)) or value in (None, ""):
            return None
        try:
            check_depth(json.loads(str(value)), "the value")
        except json.JSONDecodeError as exc:
            return f"expected JSON ({exc.msg} at character {exc.pos})"
        except RecursionError:
            return f"the value is nested too deeply (at most {MAX_JSON_DEPTH} levels of lists and objects)"
        except ValueError as exc:
            return str(exc)
        return None
    try:
        if domain == "percent":
            number = _as_number(value, integral=False)
            return None if 0 <= number <= 100 else f"{value!r} is not a percentage between 0 and 100"
        if m := _SIGNED.match(domain):
            sign, kind = m.groups()
            number = _as_number(value, integral=(kind == "integer" and option.type == "int"))
            if sign == "positive" and number < 0:
                return f"{value!r} must be zero or more"
            if sign == "negative" and number > 0:
                return f"{value!r} must be zero or less"
            return None
        if m := _RANGE.match(domain):
            kind, low, high = m.groups()
            number = _as_number(value, integral=(kind == "integer"))
            if not float(low) <= number <= float(high):
                return f"{value!r} must be between {low} and {high}"
            return None
        if m := _COMPARE.match(domain):
            kind, op, bound = m.groups()
            number = _as_number(value, integral=(kind == "integer"))
            if not _OPS[op](number, float(bound)):
                return f"{value!r} must be {op} {bound}"
            return None
    except ValueError as exc:
        return str(exc)
    return None  # a domain this library does not know yet: let the node decide


def validate_options(available: Iterable[NodeOption | Mapping[str, Any]],
                     options: Mapping[str, Any] | Iterable[Mapping[str, Any]] | None) -> list[OptionProblem]:
    """Every problem with `options` against a node's `/options` list; empty when all is well."""
    known = {}
    for entry in available:
        opt = entry if isinstance(entry, NodeOption) else NodeOption.from_json(entry)
        known[opt.name] = opt
    try:
        values = normalize_options(options)
    except ValueError as exc:
        return [OptionProblem("options", str(exc))]
    problems = []
    for name, value in values.items():
        opt = known.get(name)
        if opt is None:
            close = [k for k in known if name.replace("_", "-") == k or name in k or k in name]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(OptionProblem(name, f"unknown option{hint}"))
            continue
        message = _check_type(opt, value) or _check_domain(opt, value)
        if message:
            problems.append(OptionProblem(name, message))
    return problems


def validate_image_count(count: int, max_images: int | None = None) -> list[OptionProblem]:
    """NodeODX needs at least two images and no more than the node's `maxImages`."""
    if count < MIN_IMAGES:
        return [OptionProblem("images", f"{count} image(s) given; at least {MIN_IMAGES} are needed")]
    if max_images and count > max_images:
        return [OptionProblem("images", f"{count} images given, but the server takes at most {max_images}")]
    return []


def validate_task(available: Iterable[NodeOption | Mapping[str, Any]],
                  options: Mapping[str, Any] | Iterable[Mapping[str, Any]] | None,
                  image_count: int, max_images: int | None = None) -> list[OptionProblem]:
    """Options and image count together: what a client checks before it uploads anything."""
    return validate_options(available, options) + validate_image_count(image_count, max_images)


def option_is_true(value: Any) -> bool:
    """How NodeODX reads a bool option's value, whatever form it came in."""
    return value is True or str(value).strip().lower() in _TRUE
