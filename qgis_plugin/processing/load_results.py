"""odxrelay:loadresults — load the results of a task that already exists, without processing again: downloaded
into a local copy, or streamed from the relay (read over HTTP as the map draws, nothing downloaded)."""
from __future__ import annotations

from qgis.core import QgsProcessingParameterBoolean, QgsProcessingParameterEnum

from ..core.runner import TaskRunner
from ..core.streaming import StreamingUnavailable, stream_task
from ..deps import shared
from .base import FeedbackReporter, OdxAlgorithm
from .results import add_result_outputs, result_outputs, streamed_outputs
from .task_actions import task_parameter

#: The MODE parameter's choices, by index.
KEEP_LOCAL_COPY, STREAM = 0, 1
MODES = ("Download and keep a local copy", "Stream from the relay (nothing downloaded; appears in seconds)")


def add_mode_parameter(alg: OdxAlgorithm, default: int = KEEP_LOCAL_COPY) -> None:
    alg.addParameter(QgsProcessingParameterEnum(alg.MODE, alg.tr("How to load the results"),
                                                options=[alg.tr(m) for m in MODES], defaultValue=default))


def load_task(runner: TaskRunner, uuid: str, wait: bool, stream: bool, context,
              reporter: FeedbackReporter) -> dict:
    """Load one task's results: a local copy already there, else streamed when asked (and the server can),
    else downloaded into the cache."""
    if stream and not runner.cache.has(uuid):
        _, info = runner.completed(uuid, wait)
        try:
            streamed = stream_task(runner.node, uuid)
        except StreamingUnavailable as exc:
            reporter.feedback.pushWarning(f"{exc}: downloading them.")
        else:
            return streamed_outputs(streamed, info.name, context, reporter)
    return result_outputs(runner.load(uuid, wait), context, reporter)


class LoadResults(OdxAlgorithm):
    NAME = "loadresults"
    DISPLAY = "Load results of a task"
    GROUP_ID, GROUP = "photogrammetry", "Photogrammetry"
    TASK, WAIT, MODE = "TASK", "WAIT", "MODE"
    HELP = (
        "<p>Loads the orthophoto, elevation models and point cloud of an existing task, by its uuid: one sent "
        "earlier (also one still running when QGIS closed), or one sent by someone else with the same token. "
        "Nothing is processed again, and results already downloaded are not downloaded again. "
        "“List tasks” shows the uuids.</p>"
        "<p><b>How to load</b>: a local copy downloads the task's all.zip first; streaming (from an ODX Relay) "
        "adds the orthophoto, DSM and DTM as Cloud-Optimized GeoTIFFs and the point cloud as EPT read over HTTP "
        "as the map draws them, so a large result appears in seconds. Streamed layers use links that expire "
        "(12 hours) and never hold the token; a project saved with them renews the links when it is opened "
        "again, with the token saved for that relay in Settings.</p>")

    def initParameters(self) -> None:
        self.addParameter(task_parameter(self.TASK, (shared.TaskStatus.QUEUED, shared.TaskStatus.RUNNING,
                                                     shared.TaskStatus.COMPLETED)))
        self.addParameter(QgsProcessingParameterBoolean(self.WAIT, self.tr("Wait for the task if it is still running"),
                                                        defaultValue=True))
        add_mode_parameter(self)
        self.addResultsFolderParameter()
        add_result_outputs(self)

    def perform(self, parameters, context, reporter):
        uuid = self.task_uuid(parameters, context)
        wait = self.parameterAsBoolean(parameters, self.WAIT, context)
        stream = self.parameterAsEnum(parameters, self.MODE, context) == STREAM
        cache = self.cache(parameters, context)
        node = None if cache.has(uuid) else self.node()  # cached results load without a server
        runner = TaskRunner(node, reporter, cache, self.POLL_INTERVAL)
        return load_task(runner, uuid, wait, stream, context, reporter)
