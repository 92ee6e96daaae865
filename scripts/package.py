"""Build the installable QGIS plugin zip: dist/odx_relay-<version>.zip.

One folder, `odx_relay/`, holding the plugin (`qgis_plugin/` of this repository), `metadata.txt`,
`LICENSE`, and the plugin's own copies of its dependencies under `odx_relay/ext/` (`shared` and
`requests_toolbelt`), so that nothing generic is added to QGIS's `sys.path`. The archive is
reproducible (sorted entries, fixed timestamps) and is checked against the plugins.qgis.org
validator's offline rules before it is reported as built.

Usage: python -m scripts.package [--out DIR] [--check ZIP]
"""
from __future__ import annotations

import argparse
import configparser
import importlib.util
import io
import re
import sys
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "odx_relay"
MAX_BYTES = 25_000_000  # plugins.qgis.org's PLUGIN_MAX_UPLOAD_SIZE
REQUIRED_METADATA = ("name", "description", "version", "qgisMinimumVersion", "author", "email", "about",
                     "tracker", "repository")
FORBIDDEN_DIRS = ("__MACOSX", ".git", "__pycache__")
SKIPPED = ("__pycache__", ".pyc", ".pyo", ".DS_Store")
ZIP_TIME = (2024, 1, 1, 0, 0, 0)
EXT_INIT = ('"""Dependencies that travel inside the plugin (`shared`, `requests_toolbelt`), imported as\n'
            f'`{PACKAGE}.ext.*` so that no generic name is added to QGIS\'s sys.path."""\n')


def version(metadata: Path = REPO / "metadata.txt") -> str:
    parser = configparser.ConfigParser()
    parser.read(metadata, encoding="utf-8")
    return parser["general"]["version"]


def _tree(root: Path, suffixes: tuple[str, ...] | None = None) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if not path.is_file() or any(part in relative.split("/") or relative.endswith(part) for part in SKIPPED):
            continue
        if suffixes is None or path.suffix in suffixes:
            yield path


def _toolbelt() -> tuple[Path, Path | None]:
    """The installed requests_toolbelt package folder and its licence file."""
    spec = importlib.util.find_spec("requests_toolbelt")
    if spec is None or spec.origin is None:
        raise SystemExit("requests_toolbelt is not installed: run `make setup`")
    folder = Path(spec.origin).parent
    licences = sorted(folder.parent.glob("requests_toolbelt-*.dist-info/LICENSE*"))
    return folder, (licences[0] if licences else None)


def entries() -> Iterator[tuple[str, bytes]]:
    """(name inside the zip, content) for every file of the plugin."""
    for path in _tree(REPO / "qgis_plugin"):
        yield f"{PACKAGE}/{path.relative_to(REPO / 'qgis_plugin').as_posix()}", path.read_bytes()
    yield f"{PACKAGE}/metadata.txt", (REPO / "metadata.txt").read_bytes()
    yield f"{PACKAGE}/LICENSE", (REPO / "LICENSE").read_bytes()
    yield f"{PACKAGE}/ext/__init__.py", EXT_INIT.encode()
    for path in _tree(REPO / "shared", (".py", ".json")):
        yield f"{PACKAGE}/ext/shared/{path.relative_to(REPO / 'shared').as_posix()}", path.read_bytes()
    toolbelt, licence = _toolbelt()
    for path in _tree(toolbelt, (".py",)):
        yield f"{PACKAGE}/ext/requests_toolbelt/{path.relative_to(toolbelt).as_posix()}", path.read_bytes()
    if licence is not None:
        yield f"{PACKAGE}/ext/requests_toolbelt/LICENSE", licence.read_bytes()


def build(out_dir: Path = REPO / "dist") -> Path:
    for required in (REPO / "LICENSE", REPO / "metadata.txt"):
        if not required.is_file():
            raise SystemExit(f"cannot package: {required.name} is missing at the repository top")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{PACKAGE}-{version()}.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, content in sorted(entries()):
            info = zipfile.ZipInfo(name, ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, content)
    target.write_bytes(buffer.getvalue())
    return target


def check(zip_path: Path) -> list[str]:
    """Every rule of the plugins.qgis.org validator that can be checked offline; empty when it passes.

    (The site also fetches the tracker, repository and homepage URLs; that needs the network.)"""
    problems: list[str] = []
    if zip_path.stat().st_size > MAX_BYTES:
        problems.append(f"{zip_path.stat().st_size} bytes: larger than {MAX_BYTES}")
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        bad = archive.testzip()
        if bad:
            problems.append(f"bad zip member {bad}")
        for name in names:
            parts = name.split("/")
            if ".." in name or name.startswith("/"):
                problems.append(f"{name}: path information")
            if ".pyc" in name:
                problems.append(f"{name}: compiled Python")
            if any(d in parts for d in FORBIDDEN_DIRS):
                problems.append(f"{name}: forbidden folder")
        tops = {n.split("/")[0] for n in names}
        if tops != {PACKAGE} or "/" not in names[0]:
            problems.append(f"the zip must hold exactly one folder, {PACKAGE}/; it holds {sorted(tops)}")
        if not re.match(r"^[A-Za-z][A-Za-z0-9-_]+$", PACKAGE):
            problems.append("invalid package folder name")
        for required in ("__init__.py", "metadata.txt", "LICENSE"):
            if f"{PACKAGE}/{required}" not in names:
                problems.append(f"{PACKAGE}/{required} is missing")
        problems += _check_metadata(archive, names)
    return problems


def _check_metadata(archive: zipfile.ZipFile, names: Iterable[str]) -> list[str]:
    problems = []
    parser = configparser.ConfigParser()
    parser.optionxform = str
    try:
        parser.read_string(archive.read(f"{PACKAGE}/metadata.txt").decode("utf-8"))
        general = dict(parser.items("general"))
    except (KeyError, configparser.Error, UnicodeDecodeError) as exc:
        return [f"metadata.txt cannot be read: {exc}"]
    problems += [f"metadata.txt lacks {key}" for key in REQUIRED_METADATA if not general.get(key, "").strip()]
    if "/" in general.get("author", ""):
        problems.append("author must not contain slashes")
    for key in ("tracker", "repository", "homepage"):
        if key in general and not re.match(r"^https?://[^/\s]+", general[key]):
            problems.append(f"{key} is not a URL: {general[key]!r}")
    icon = general.get("icon", "").removeprefix("./")
    if icon and f"{PACKAGE}/{icon}" not in names:
        problems.append(f"icon {icon} is not in the zip")
    if general.get("hasProcessingProvider", "").lower() != "yes":
        problems.append("hasProcessingProvider must be yes")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="folder for the zip (default dist/)")
    parser.add_argument("--check", type=Path, help="only check an existing zip")
    args = parser.parse_args(argv)
    target = args.check or build(args.out)
    problems = check(target)
    for problem in problems:
        print(f"{target}: {problem}", file=sys.stderr)
    if not problems:
        print(f"{target} ({target.stat().st_size / 1024:.0f} KB) passes the plugins.qgis.org rules")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
