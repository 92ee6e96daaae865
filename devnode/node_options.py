"""The node's `/options` list and NodeODX's way of filtering what a task asks for.

NodeODX keeps only the options it knows, silently, in the order of its own list, converts each value to
the option's type, and refuses the whole task when a known option has a bad value, answering
`{"error": "[{\"name\": ..., \"error\": ...}]"}`. Clients (and the relay's tests) depend on all three.
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from shared.options import option_is_true, parse_options_field, validate_options

#: Options NodeODX adds to every task unless `skipPostProcessing` (when the engine knows them).
POST_PROCESSING_OPTIONS = ("pc-ept", "cog", "gltf")


class OptionsRefused(ValueError):
    """A task's options cannot be used; the message is what NodeODX answers as `error`."""


def load_options(path: Path | None = None) -> list[dict]:
    """The `/options` reply: a file given by the operator, or the real NodeODX list shipped in `shared`."""
    if path is not None:
        text = Path(path).read_text(encoding="utf-8")
    else:
        text = resources.files("shared").joinpath("data", "nodeodx-options.json").read_text(encoding="utf-8")
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError("an options file must hold a JSON list like NodeODX's /options reply")
    return data


def _convert(kind: str, value: Any) -> Any:
    if kind == "bool":
        return option_is_true(value)
    if kind == "int":
        return int(float(value))
    if kind == "float":
        number = float(value)
        return int(number) if number.is_integer() else number  # JSON as JavaScript writes numbers
    return value


def filter_options(available: list[dict], raw: Any) -> list[dict]:
    """Options as NodeODX stores them for a task: `[{"name", "value"}]`, known names only, typed values.

    `raw` is the form field (a JSON string), an already parsed list, or nothing.
    Raises OptionsRefused with NodeODX's message when something cannot be used.
    """
    if raw is None or raw == "":
        return []
    try:
        wanted = parse_options_field(raw) if isinstance(raw, str) else parse_options_field(json.dumps(raw))
    except ValueError as exc:
        raise OptionsRefused(str(exc)) from None
    known = [entry for entry in available if entry.get("name") in wanted]
    problems = validate_options(known, {entry["name"]: wanted[entry["name"]] for entry in known})
    if problems:
        detail = [{"name": p.option, "error": p.message} for p in problems]
        raise OptionsRefused(json.dumps(detail, separators=(",", ":")))
    return [{"name": entry["name"], "value": _convert(str(entry.get("type", "string")), wanted[entry["name"]])}
            for entry in known]


def with_post_processing(options: list[dict], available: list[dict]) -> list[dict]:
    """Append `pc-ept`, `cog` and `gltf` (true) where the engine has them and the task did not set them."""
    names = {entry.get("name") for entry in available}
    present = {opt["name"] for opt in options}
    extra = [{"name": name, "value": True} for name in POST_PROCESSING_OPTIONS
             if name in names and name not in present]
    return options + extra
