"""What every ODX Relay algorithm shares: the Server parameter, the connection read on the main
thread, the bridge from Processing's feedback to the task runner, and errors turned into words.

A user-facing failure (no server, wrong token, refused option, failed task, missing file) ends as a
QgsProcessingException carrying a clear message; only a bug in the plugin would show a traceback.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFile,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from .. import settings
from ..core.cache import ResultsCache, check_uuid
from ..core.connection import SETTINGS_HINT, Connection, ConnectionError
from ..core.describe import error_message
from ..core.inputs import InputError
from ..core.runner import Canceled, NotReady, TaskRunner
from ..deps import shared
from . import closing

PLUGIN_PACKAGE = __package__.rsplit(".", 1)[0]
ICON = Path(__file__).resolve().parent.parent / "icon.svg"
USER_ERRORS = (shared.GenericError, InputError, ConnectionError, NotReady, Canceled, OSError, ValueError,
               zipfile.BadZipFile)


class FeedbackReporter:
    """The task runner's Reporter, speaking to Processing's feedback (safe from worker threads)."""

    def __init__(self, feedback: QgsProcessingFeedback | None, run: closing.Run | None = None):
        self.feedback = feedback or QgsProcessingFeedback()
        self.run = run
        self.started: list[str] = []  # tasks this run started (and follows while it runs)

    def progress(self, percent: float) -> None:
        self.feedback.setProgress(percent)

    def info(self, text: str) -> None:
        self.feedback.pushInfo(text)

    def console(self, text: str) -> None:
        self.feedback.pushConsoleInfo(text)

    def is_canceled(self) -> bool:
        return self.feedback.isCanceled()

    def leave_running(self) -> bool:
        return self.run.leaves_task_running() if self.run is not None else closing.QGIS_CLOSING.is_set()

    def task_started(self, uuid: str) -> None:
        """Remembered across sessions until its results are loaded (the task panel may load them: auto-load)."""
        settings.following_here(uuid, True)  # first: a panel that sees it remembered must also see it followed
        settings.remember_started(uuid)
        self.started.append(uuid)


class OdxAlgorithm(QgsProcessingAlgorithm):
    """Base of the plugin's algorithms. Subclasses define NAME, DISPLAY, GROUP, HELP, `initParameters`
    and `perform`; `perform` may raise any of USER_ERRORS."""

    SERVER = "SERVER"
    RESULTS_FOLDER = "RESULTS_FOLDER"
    NAME = DISPLAY = HELP = ""
    GROUP_ID, GROUP = "tasks", "Task management"
    POLL_INTERVAL = 2.0

    def __init__(self):
        super().__init__()
        self.connection: Connection | None = None
        self.connection_error: ConnectionError | None = None
        self._node: shared.Node | None = None

    # --- identity ----------------------------------------------------------------------------
    def name(self) -> str:
        return self.NAME

    def displayName(self) -> str:
        return self.tr(self.DISPLAY)

    def group(self) -> str:
        return self.tr(self.GROUP)

    def groupId(self) -> str:
        return self.GROUP_ID

    def shortHelpString(self) -> str:
        return self.tr(self.HELP + CONNECTION_HELP)

    def icon(self) -> QIcon:
        return QIcon(str(ICON))

    def createInstance(self):
        return type(self)()

    def tr(self, text: str) -> str:
        return QCoreApplication.translate("ODXRelay", text)

    # --- shared parameters -------------------------------------------------------------------
    def initAlgorithm(self, config=None):
        self.initParameters()
        server = QgsProcessingParameterString(self.SERVER, self.tr("Server (empty: the one in Settings)"),
                                              optional=True)
        server.setMetadata({"widget_wrapper": {"class": f"{PLUGIN_PACKAGE}.gui.server_widget.ServerWidgetWrapper"}})
        self.addParameter(server)

    def initParameters(self) -> None:
        raise NotImplementedError

    def addResultsFolderParameter(self) -> None:
        folder = QgsProcessingParameterFile(self.RESULTS_FOLDER, self.tr("Keep results under (empty: the plugin's "
                                            "results folder)"), behavior=QgsProcessingParameterFile.Behavior.Folder,
                                            optional=True)
        folder.setFlags(folder.flags() | QgsProcessingParameterDefinition.Flag.FlagAdvanced)
        self.addParameter(folder)

    def cache(self, parameters: dict, context: QgsProcessingContext) -> ResultsCache:
        chosen = self.parameterAsFile(parameters, self.RESULTS_FOLDER, context)
        return ResultsCache(Path(chosen) if chosen else settings.results_folder())

    # --- running -----------------------------------------------------------------------------
    def prepareAlgorithm(self, parameters, context, feedback):
        """On the main thread: read the server and token (the token may need the master password).
        A missing server is reported only when one is needed: cached results load without one."""
        try:
            self.connection = settings.connection(self.parameterAsString(parameters, self.SERVER, context))
        except ConnectionError as exc:
            self.connection_error = exc
        return True

    def processAlgorithm(self, parameters, context, feedback):
        feedback = feedback or QgsProcessingFeedback()
        run = closing.begin_run(feedback.cancel)  # QGIS closing stops it without canceling the remote task
        reporter = FeedbackReporter(feedback, run)
        try:
            results = self.perform(parameters, context, reporter)
            for uuid in reporter.started:  # followed to its end here: its results are this run's
                settings.forget_started(uuid)
            return results
        except USER_ERRORS as exc:
            url = self.connection.display_url if self.connection else ""
            raise QgsProcessingException(error_message(exc, url)) from None
        finally:
            for uuid in reporter.started:
                settings.following_here(uuid, False)
            closing.end_run(run)
            if self._node is not None:
                self._node.session.close()

    def perform(self, parameters: dict, context: QgsProcessingContext, reporter: FeedbackReporter) -> dict[str, Any]:
        raise NotImplementedError

    def node(self) -> shared.Node:
        """The server of this run (one HTTP session, closed when the run ends)."""
        if self.connection is None:
            raise self.connection_error or ConnectionError(f"No server set; see {SETTINGS_HINT}")
        if self._node is None:
            self._node = self.connection.node()
        return self._node

    def runner(self, parameters: dict, context: QgsProcessingContext, reporter: FeedbackReporter) -> TaskRunner:
        return TaskRunner(self.node(), reporter, self.cache(parameters, context), self.POLL_INTERVAL)

    def task_uuid(self, parameters: dict, context: QgsProcessingContext, key: str = "TASK") -> str:
        return check_uuid(self.parameterAsString(parameters, key, context))


CONNECTION_HELP = (
    "<p><b>Server</b>: an ODX Relay or a NodeODX node, for example <code>http://relay.example.com:3000</code>. "
    f"Leave it empty to use the one in {SETTINGS_HINT} (where the token is kept in QGIS's authentication "
    "database; the “Settings…” button beside the field opens them). Scripts without saved settings can put "
    "<code>?token=…</code> in the address or set ODX_RELAY_URL and ODX_RELAY_TOKEN.</p>")
