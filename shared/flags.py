"""Settings declared once: a dataclass whose fields carry their help, turned into command-line flags that
also read an environment variable of the same name (`--check-interval` ↔ `ODX_RELAY_CHECK_INTERVAL`).

The relay and the development node declare their settings this way, so a default is written in one place
and the flag, the variable, the dataclass and `--help` cannot drift apart. A flag given on the command
line wins over its variable, which wins over the default.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable
from typing import Any, TypeVar

Settings = TypeVar("Settings")
MISSING = dataclasses.MISSING


def setting(default: Any = MISSING, help: str = "", *, parse: Callable[[str], Any] | None = None,
            flag: str = "", repeat: bool = False, shown: str = "", also_env: str = "",
            default_factory: Callable[[], Any] | Any = MISSING) -> Any:
    """A dataclass field that is also a flag. `parse` turns the text of a flag or variable into the value
    (default: the type of `default`); `repeat` makes a list flag (its variable: comma-separated); `shown`
    is how `--help` names the default; `also_env` is a second variable read when the first is unset."""
    metadata = {"help": help, "parse": parse, "flag": flag, "repeat": repeat, "shown": shown, "also_env": also_env}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def truthy(text: str | None) -> bool:
    return str(text or "").strip().lower() in ("1", "true", "yes", "on")


def env_name(prefix: str, flag: str) -> str:
    """`ODX_RELAY_` and `--check-interval` → `ODX_RELAY_CHECK_INTERVAL`."""
    return prefix + flag.lstrip("-").upper().replace("-", "_")


def build_parser(cls: type, prog: str, description: str, env_prefix: str) -> argparse.ArgumentParser:
    """One flag per field of `cls` that has help; defaults read from the environment first."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    for field in dataclasses.fields(cls):
        meta = field.metadata
        if not meta.get("help"):
            continue
        default = field.default if field.default is not MISSING else field.default_factory()  # type: ignore[misc]
        flag = meta["flag"] or "--" + field.name.replace("_", "-")
        variable = env_name(env_prefix, flag)
        env = os.environ.get(variable, os.environ.get(meta["also_env"]) if meta["also_env"] else None)
        shown = meta["shown"] or ("none" if default in (None, "", []) else str(default))
        help_text = f"{meta['help']} (default {shown}; env {variable})"
        if isinstance(default, bool):
            parser.add_argument(flag, dest=field.name, action="store_true",
                                default=truthy(env) if env is not None else default, help=help_text)
        elif meta["repeat"]:
            parser.add_argument(flag, dest=field.name, action="append", help=help_text, default=None,
                                metavar=flag.lstrip("-").upper())
            parser.set_defaults(**{f"_env_{field.name}": [v.strip() for v in (env or "").split(",") if v.strip()]
                                   or list(default)})
        else:
            parse = meta["parse"] or type(default)
            parser.add_argument(flag, dest=field.name, type=parse, default=env if env is not None else default,
                                help=help_text)
    return parser


def parse_settings(cls: Callable[..., Settings], parser: argparse.ArgumentParser,
                   argv: list[str] | None = None) -> Settings:
    """The settings from `argv` (default: the command line), the environment and the defaults."""
    values = vars(parser.parse_args(argv))
    for name in [k for k in values if k.startswith("_env_")]:
        from_env = values.pop(name)
        field_name = name.removeprefix("_env_")
        if values.get(field_name) is None:
            values[field_name] = from_env
    return cls(**values)
