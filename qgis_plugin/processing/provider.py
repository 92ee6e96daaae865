"""The `odxrelay` Processing provider: ODX Relay's algorithms in the toolbox, in models and in qgis_process."""
from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .. import stream_sources
from .base import ICON
from .cancel_task import CancelTask
from .find_results import FindResults
from .list_tasks import ListTasks
from .load_results import LoadResults
from .process_images import ProcessImages
from .remove_task import RemoveTask
from .restart_task import RestartTask

ALGORITHMS = (ProcessImages, LoadResults, FindResults, ListTasks, CancelTask, RestartTask, RemoveTask)


class OdxRelayProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "odxrelay"

    def name(self) -> str:
        return "ODX Relay"

    def longName(self) -> str:
        return "ODX Relay: drone photogrammetry on NodeODX nodes"

    def icon(self) -> QIcon:
        return QIcon(str(ICON))

    def load(self) -> bool:
        stream_sources.register()  # saved projects' streamed layers get fresh links when read
        return super().load()

    def unload(self) -> None:
        stream_sources.unregister()
        super().unload()

    def loadAlgorithms(self) -> None:
        for algorithm in ALGORITHMS:
            self.addAlgorithm(algorithm())
