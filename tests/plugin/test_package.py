"""The installable zip: its layout and the plugins.qgis.org rules, its vendored dependencies, and
`qgis_process.bin` running the installed plugin in a clean profile against a development node."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from qgis.core import QgsRasterLayer

from scripts import demo_qgis, package
from testkit.servers import free_port
from tests.plugin.plugin_helpers import FAST

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def plugin_zip(tmp_path_factory) -> Path:
    return package.build(tmp_path_factory.mktemp("dist"))


def test_zip_layout_and_validator_rules(plugin_zip):
    assert plugin_zip.name == f"odx_relay-{package.version()}.zip"
    assert package.check(plugin_zip) == []
    names = zipfile.ZipFile(plugin_zip).namelist()
    assert {n.split("/")[0] for n in names} == {"odx_relay"}
    for required in ("__init__.py", "metadata.txt", "LICENSE", "icon.svg", "deps.py", "ext/__init__.py",
                     "ext/shared/client.py", "ext/shared/data/nodeodx-options.json",
                     "ext/requests_toolbelt/multipart/encoder.py", "ext/requests_toolbelt/LICENSE",
                     "processing/provider.py", "core/runner.py"):
        assert f"odx_relay/{required}" in names, required
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))]
    assert not [n for n in names if n.startswith("odx_relay/tests")]
    assert plugin_zip.stat().st_size < 25_000_000
    assert package.build(plugin_zip.parent).read_bytes() == plugin_zip.read_bytes()  # reproducible


def test_validator_catches_broken_packages(tmp_path):
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("odx_relay/__init__.py", "")
        archive.writestr("odx_relay/__pycache__/x.cpython-311.pyc", "")
        archive.writestr("odx_relay/metadata.txt", "[general]\nname=x\nauthor=a/b\n")
        archive.writestr("other/file.txt", "")
    problems = "\n".join(package.check(broken))
    for expected in ("compiled Python", "forbidden folder", "exactly one folder", "LICENSE is missing",
                     "lacks qgisMinimumVersion", "author must not contain slashes"):
        assert expected in problems


def test_installed_plugin_uses_only_its_own_dependencies(plugin_zip, tmp_path):
    """Imported as QGIS imports it, the plugin finds `shared` and `requests_toolbelt` inside itself and
    adds no generic names (`shared`, `requests_toolbelt`) to sys.modules."""
    plugins = tmp_path / "plugins"
    demo_qgis.install_plugin(plugin_zip, plugins)
    code = ("import sys; sys.path.insert(0, sys.argv[1])\n"
            "import odx_relay.core.runner, odx_relay.deps as deps\n"
            "print(deps.shared.__name__, deps.shared.client.MultipartEncoder.__module__,"
            " 'shared' in sys.modules, 'requests_toolbelt' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(plugins)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert out.stdout.split() == ["odx_relay.ext.shared", "odx_relay.ext.requests_toolbelt.multipart.encoder",
                                  "False", "False"], out.stderr


def test_qgis_process_runs_the_installed_plugin_and_the_demo_builds_a_map(plugin_zip, devnode_factory,
                                                                         sample_images, tmp_path, qgis_app):
    """The demo path end to end: zip installed into a clean profile, `plugins enable`, processimages run by
    qgis_process.bin against a development node, then a .qgz project and a non-blank PNG."""
    node = devnode_factory(slots=2, **FAST)
    out = tmp_path / "demo"
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "scripts.demo_qgis", node.url, str(sample_images[0].parent),
                           "--out", str(out), "--zip", str(plugin_zip), "--name", "Demo field"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    printed = dict(line.split(maxsplit=1) for line in done.stdout.splitlines() if line.strip())
    project, png = Path(printed["project:"]), Path(printed["render:"].split(" (")[0])
    assert project.is_file() and project.suffix == ".qgz" and png.is_file()
    share, colours = demo_qgis.painted_share(png)
    assert share > 0.3 and colours > 100, (share, colours)
    for key in ("orthophoto", "dsm", "dtm"):
        path = Path(printed[key])
        assert path.is_relative_to(out / "results") and QgsRasterLayer(str(path), key).isValid()
    assert printed["point_cloud"].endswith("ept.json")
    # a clean profile: only what the test made is in it
    assert (out / "qgis-profile" / "profiles" / "default").is_dir()
    print(f"demo (qgis_process processimages + project + render): {seconds:.1f} s")


def test_qgis_process_reports_user_errors_in_words(plugin_zip, tmp_path):
    plugins, profile = tmp_path / "plugins", tmp_path / "profile"
    demo_qgis.install_plugin(plugin_zip, plugins)
    demo_qgis.enable_plugin(profile, plugins)
    photos = tmp_path / "photos"
    photos.mkdir()
    args = ["run", "odxrelay:processimages", "--json", "--", f"IMAGE_FOLDER={photos}",
            f"SERVER=http://127.0.0.1:{free_port()}"]
    done = subprocess.run([demo_qgis.QGIS_PROCESS, *args], env=demo_qgis.qgis_process_env(profile, plugins),
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "No images to process (the folder" in done.stderr and "Traceback" not in done.stderr
    listing = subprocess.run([demo_qgis.QGIS_PROCESS, "help", "odxrelay:processimages", "--json"],
                             env=demo_qgis.qgis_process_env(profile, plugins), cwd=tmp_path, capture_output=True,
                             text=True, timeout=120)
    described = json.loads(listing.stdout)
    assert described["algorithm_details"]["id"] == "odxrelay:processimages"
    assert {"IMAGES", "IMAGE_FOLDER", "PRESET", "OPTIONS", "SERVER"} <= set(described["parameters"])
