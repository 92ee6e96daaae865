"""Fixtures for the plugin's tests in real QGIS (pytest-qgis, headless): the provider registered once,
a feedback that records what the algorithms say, and development nodes shared by a module."""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Iterator

import pytest
from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback, QgsProject
from qgis.PyQt.QtCore import Qt

from testkit.devnode import DevNode, start_devnode
from testkit.servers import ServerGroup

REPO = Path(__file__).resolve().parents[2]
FIXTURE_ZIP = REPO / "tests" / "fixtures" / "nodeodx-test-all.zip"
FAST = {"seconds_per_image": 0.02}


class RecordingFeedback(QgsProcessingFeedback):
    """Keeps every message and progress value an algorithm reports."""

    def __init__(self) -> None:
        super().__init__()
        self.infos: list[str] = []
        self.console: list[str] = []
        self.warnings: list[str] = []
        self.errors: list[str] = []
        self.progress_values: list[float] = []
        # direct: the upload reports progress from its own threads, and no event loop runs meanwhile
        self.progressChanged.connect(self.progress_values.append, Qt.ConnectionType.DirectConnection)

    def pushInfo(self, info: str) -> None:  # noqa: N802 - QGIS's names
        self.infos.append(info)

    def pushConsoleInfo(self, info: str) -> None:  # noqa: N802
        self.console.append(info)

    def pushWarning(self, warning: str) -> None:  # noqa: N802
        self.warnings.append(warning)

    def reportError(self, error: str, fatalError: bool = False) -> None:  # noqa: N802, N803
        self.errors.append(error)

    def text(self) -> str:
        return "\n".join(self.infos + self.warnings + self.errors)


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


def run_algorithm(algorithm: str, parameters: dict[str, Any], feedback: RecordingFeedback | None = None,
                  load: bool = False) -> tuple[dict, QgsProcessingContext, RecordingFeedback]:
    """`processing.run` (or `runAndLoadResults`) with a context on the current project."""
    import processing

    feedback = feedback or RecordingFeedback()
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    run = processing.runAndLoadResults if load else processing.run
    results = run(algorithm, parameters, feedback=feedback, context=context)
    return results, context, feedback


def layers_to_load(context: QgsProcessingContext) -> dict:
    """{layer name: layer} of what the algorithm queued to load on completion."""
    return {details.name: context.temporaryLayerStore().mapLayer(layer_id)
            for layer_id, details in context.layersToLoadOnCompletion().items()}


@pytest.fixture(scope="module")
def devnode(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNode]:
    """One fast development node (two slots) for a whole test module."""
    group = ServerGroup(tmp_path_factory.mktemp("devnode"))
    try:
        node = group.start(start_devnode, slots=2, **FAST)
        assert isinstance(node, DevNode)
        yield node
    finally:
        group.stop_all()


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
