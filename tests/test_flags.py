"""Settings declared once (shared/flags.py): flag beats variable beats default, for every kind of field."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.flags import build_parser, parse_settings, setting


@dataclass
class Example:
    port: int = setting(3000, "port")
    ratio: float = setting(0.5, "a ratio")
    folder: Path | None = setting(None, "a folder", parse=Path, shown="nowhere")
    on: bool = setting(False, "a switch")
    urls: list[str] = setting(help="repeat me", flag="--url", repeat=True, default_factory=list)
    secret: str = setting("", "a secret", also_env="OTHER_SECRET")
    hidden: str = "not a flag"


def parse(argv: list[str]) -> Example:
    return parse_settings(Example, build_parser(Example, "example", "test", "EX_"), argv)


def test_defaults_variables_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse([]) == Example()
    monkeypatch.setenv("EX_PORT", "4000")
    monkeypatch.setenv("EX_FOLDER", "/tmp/x")
    monkeypatch.setenv("EX_ON", "yes")
    monkeypatch.setenv("EX_URL", "http://a, http://b")
    monkeypatch.setenv("OTHER_SECRET", "s1")
    from_env = parse([])
    assert (from_env.port, from_env.folder, from_env.on, from_env.urls, from_env.secret) == (
        4000, Path("/tmp/x"), True, ["http://a", "http://b"], "s1")
    given = parse(["--port", "5000", "--url", "http://c", "--ratio", "2"])
    assert (given.port, given.urls, given.ratio) == (5000, ["http://c"], 2.0)
    monkeypatch.setenv("EX_SECRET", "s2")  # its own variable wins over the other one
    assert parse([]).secret == "s2"


def test_help_names_each_default_and_variable() -> None:
    text = build_parser(Example, "example", "test", "EX_").format_help()
    for expected in ("(default 3000; env EX_PORT)", "(default nowhere; env EX_FOLDER)", "env EX_URL", "--on"):
        assert expected in " ".join(text.split()), text
    assert "--hidden" not in text
