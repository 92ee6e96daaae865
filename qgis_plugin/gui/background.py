"""Network work off the GUI thread: a function runs in a worker thread, and only its result comes back to the
main thread, through a queued signal, where a callback may touch widgets."""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from qgis.PyQt.QtCore import QObject, Qt, pyqtSignal


class Background(QObject):
    """Runs a function in a worker thread and hands its result to a callback on the main thread.

    Owned by a widget, it goes with it: a result that comes back later finds no receiver and is dropped, and the
    pool's idle threads end when it is garbage-collected. Nothing is connected to the widget's `destroyed`: a
    Python slot called while the widget is being torn down crashed QGIS."""

    done = pyqtSignal(object, object)

    def __init__(self, parent: QObject | None = None, name: str = "odx-relay-panel"):
        super().__init__(parent)
        self.pool = ThreadPoolExecutor(2, thread_name_prefix=name)
        self.closed = False
        self.done.connect(self._deliver, Qt.ConnectionType.QueuedConnection)

    def submit(self, work: Callable[[], Any], callback: Callable[[Any], None]) -> bool:
        """False once closed (the plugin is unloading): nothing more is started."""
        if self.closed:
            return False

        def run() -> None:
            try:
                result: Any = work()
            except Exception as exc:  # noqa: BLE001 - handed to the main thread, which says it in words
                result = exc
            try:
                self.done.emit(callback, result)
            except RuntimeError:  # its widget was deleted meanwhile (a dialog closed): nobody waits for it
                pass
        self.pool.submit(run)
        return True

    def _deliver(self, callback: Callable[[Any], None], result: Any) -> None:
        if not self.closed:
            callback(result)

    def close(self) -> None:
        self.closed = True
        self.pool.shutdown(wait=False, cancel_futures=True)
