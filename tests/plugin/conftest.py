"""Fixtures for the plugin's tests in real QGIS (pytest-qgis, headless): the provider registered once,
faster polling, and development nodes shared by a module. Helpers (running an algorithm, a feedback that
records what it says) live in `plugin_helpers.py`."""
from __future__ import annotations

import gc
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from qgis.core import QgsApplication, QgsProject

from testkit.devnode import DevNode, start_devnode
from testkit.servers import ServerGroup
from tests.plugin.plugin_helpers import FAST, FIXTURE_ZIP


@pytest.fixture(autouse=True)
def freed_while_qgis_runs() -> Iterator[None]:
    """What a test leaves of Qt and QGIS objects (a closed dock, a processing context, a task's wrapper) is freed
    right after it, while QGIS still runs: left to the garbage collector at the end of the session, after QGIS
    has exited, their C++ side crashed the whole run (exit code 139 after every test had passed)."""
    yield
    gc.collect()


@pytest.fixture(scope="session")
def odx_provider(qgis_processing: None):
    """The plugin's provider, registered the way QGIS does it (classFactory, then initProcessing)."""
    from qgis_plugin import classFactory

    registry = QgsApplication.processingRegistry()
    plugin = classFactory(None)
    plugin.initProcessing()
    assert registry.providerById("odxrelay") is plugin.provider
    yield plugin.provider
    plugin.unload()


@pytest.fixture
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    from qgis_plugin.processing.base import OdxAlgorithm

    monkeypatch.setattr(OdxAlgorithm, "POLL_INTERVAL", 0.2)


@pytest.fixture(scope="module")
def devnode(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNode]:
    """One fast development node (two slots) for a whole test module."""
    with ServerGroup(tmp_path_factory.mktemp("devnode")) as group:
        node = group.start(start_devnode, slots=2, **FAST)
        assert isinstance(node, DevNode)
        yield node


@pytest.fixture(scope="session")
def photo_folder(sample_images: list[Path]) -> Path:
    return sample_images[0].parent


@pytest.fixture
def fixture_task(tmp_path: Path) -> tuple[str, Path]:
    """The real NodeODX test-mode all.zip, as if downloaded earlier: (uuid, results root)."""
    from qgis_plugin.core.cache import ResultsCache

    root = tmp_path / "results"
    cache = ResultsCache(root)
    uuid = "0f8fad5b-d9cb-469f-a165-70867728950e"
    with zipfile.ZipFile(FIXTURE_ZIP) as archive:
        archive.extractall(cache.begin(uuid))
    cache.commit(uuid, {"uuid": uuid, "name": "NodeODX fixture"})
    return uuid, root


@pytest.fixture
def clean_project() -> Iterator[QgsProject]:
    project = QgsProject.instance()
    project.clear()
    yield project
    project.clear()
