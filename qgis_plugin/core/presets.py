"""Presets and free-form options: what the user picks in the dialog, turned into NodeODX options.

A preset is a starting point; the free `name=value` text is applied on top, so one line in the dialog
can change a single thing a preset chose. Validation happens later, against the server's own
`/options`, so nothing here needs to know every option NodeODX has.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Preset:
    key: str
    label: str
    options: Mapping[str, Any] = field(default_factory=dict)


#: In the order the dialog lists them; the first is the default.
PRESETS: tuple[Preset, ...] = (
    Preset("default", "Default (the server's settings: orthophoto and point cloud)"),
    Preset("fast-orthophoto", "Fast orthophoto (no 3D reconstruction; quickest)", {"fast-orthophoto": True}),
    Preset("high-quality", "High quality (finer orthophoto, DSM and DTM; slower, needs more memory)",
           {"feature-quality": "ultra", "pc-quality": "high", "dsm": True, "dtm": True,
            "dem-resolution": 2.0, "orthophoto-resolution": 2.0, "auto-boundary": True}),
    Preset("elevation", "Elevation models (orthophoto, DSM and DTM)", {"dsm": True, "dtm": True}),
)

_BOOL_WORDS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def preset_labels() -> list[str]:
    return [p.label for p in PRESETS]


def preset_by_index(index: int | None) -> Preset:
    """The preset at a dialog index; out-of-range indices are a caller's bug, reported in words."""
    if index is None:
        return PRESETS[0]
    if not 0 <= index < len(PRESETS):
        raise ValueError(f"preset {index} does not exist; choose 0 to {len(PRESETS) - 1}")
    return PRESETS[index]


def parse_option_text(text: str | None) -> dict[str, Any]:
    """Read `name=value` entries, one per line or separated by ';'.

    A bare name (`dsm`) means true, a leading `--` is dropped (so `--dsm` pasted from ODM's command
    line works), and true/false words become booleans; other values stay text for the server to
    interpret. Raises ValueError naming the entry that cannot be read."""
    options: dict[str, Any] = {}
    for raw in (text or "").replace(";", "\n").splitlines():
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        name, sep, value = entry.partition("=")
        name = name.strip().lstrip("-").strip()
        if not name or " " in name:
            raise ValueError(f"cannot read option {entry!r}: write it as name=value, for example dsm=true")
        if not sep:
            options[name] = True
            continue
        value = value.strip()
        options[name] = _BOOL_WORDS.get(value.lower(), value)
    return options


def build_options(preset: Preset, text: str | None, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`base` (for a restart: the task's current options), then the preset, then the free text."""
    options = dict(base or {})
    options.update(preset.options)
    options.update(parse_option_text(text))
    return options
