"""The development node's settings are declared once (devnode/config.py): each field is a flag and a
variable of the same name, with the field's default, and the command line offers what it always did."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from devnode.__main__ import build_parser, env_name
from devnode.app import create_app
from devnode.config import ENV_PREFIX, Config
from shared.flags import parse_settings

#: The flags `python -m devnode --help` listed before the settings were declared once, and split-merge's one.
FLAGS = {"--host", "--port", "--slots", "--max-images", "--memory-gb", "--seconds-per-image", "--token",
         "--data-dir", "--options-file", "--fail-tasks", "--drop-uploads", "--range", "--die-after",
         "--log-level", "--version", "-h", "--help", "--sm-retry-seconds"}
#: A value for each setting, as text (for a variable) and as the field holds it.
VALUES = {"host": ("0.0.0.0", "0.0.0.0"), "port": ("4000", 4000), "slots": ("3", 3), "max_images": ("9", 9),
          "memory_gb": ("2.5", 2.5), "seconds_per_image": ("0.5", 0.5), "token": ("t", "t"),
          "data_dir": ("/tmp/dn", Path("/tmp/dn")), "options_file": ("o.json", Path("o.json")),
          "fail_tasks": ("yes", True), "drop_uploads": ("0.25", 0.25), "range": ("1", True),
          "die_after": ("2", 2), "log_level": ("DEBUG", "DEBUG"), "sm_retry_seconds": ("0.5", 0.5)}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for field in dataclasses.fields(Config):
        monkeypatch.delenv(env_name("--" + field.name.replace("_", "-")), raising=False)


def test_the_command_line_offers_the_same_flags_with_the_fields_defaults() -> None:
    parser = build_parser()
    assert {flag for action in parser._actions for flag in action.option_strings} == FLAGS
    assert parse_settings(Config, parser, []) == Config()
    assert set(VALUES) == {field.name for field in dataclasses.fields(Config)}


def test_each_setting_reads_its_variable_and_the_flag_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, (text, _) in VALUES.items():
        monkeypatch.setenv(ENV_PREFIX + name.upper(), text)
    from_env = parse_settings(Config, build_parser(), [])
    assert {name: getattr(from_env, name) for name in VALUES} == {name: value for name, (_, value) in VALUES.items()}
    assert parse_settings(Config, build_parser(), ["--port", "5000"]).port == 5000


def test_help_names_each_default_once() -> None:
    text = " ".join(build_parser().format_help().split())
    for expected in ("(default 3000; env ODX_DEVNODE_PORT)", "(default 0: no limit; env ODX_DEVNODE_MAX_IMAGES)",
                     "(default a temporary folder; env ODX_DEVNODE_DATA_DIR)", "exit with status 3"):
        assert expected in text, text


def test_an_application_needs_a_data_dir() -> None:
    with pytest.raises(ValueError, match="data_dir"):
        create_app(Config())
