"""Streamed layers in saved projects: QGIS hands every layer source of a project being read to a path
preprocessor; this one renews the relay's signed URLs that have expired (core/streaming.py, `Renewer`), with
the token saved for that relay (Settings, or ODX_RELAY_TOKEN), before the layer opens them. A source that
cannot be renewed stays as it was: QGIS then shows the layer as unavailable, and loading the task's results
again makes new ones. Registered while the plugin's Processing provider is loaded.
"""
from __future__ import annotations

from qgis.core import Qgis, QgsMessageLog, QgsPathResolver

from . import settings
from .core.streaming import Renewer
from .deps import shared

RENEW_TIMEOUT = 15.0  # seconds: the project waits for the relay while it is read

_registered: dict[str, object] = {}


def connect(base: str) -> shared.Node:
    """A client for the relay at `base` with the token saved for it (main thread: QGIS reads projects there)."""
    return settings.connection(base).node(RENEW_TIMEOUT)


def log(text: str) -> None:
    QgsMessageLog.logMessage(text, "ODX Relay", Qgis.MessageLevel.Warning)


def register() -> Renewer:
    """Renew expired signed sources from now on; counted, so that each `register` is undone by one `unregister`
    (a second provider, made and unloaded, must not take the first one's away)."""
    if "id" not in _registered:
        renewer = Renewer(connect, log)
        _registered.update(renewer=renewer, id=QgsPathResolver.setPathPreprocessor(renewer.renewed_source), users=0)
    _registered["users"] += 1  # type: ignore[operator]
    return _registered["renewer"]  # type: ignore[return-value]


def unregister() -> None:
    if "id" not in _registered:
        return
    _registered["users"] -= 1  # type: ignore[operator]
    if _registered["users"] <= 0:  # type: ignore[operator]
        QgsPathResolver.removePathPreprocessor(_registered["id"])
        _registered.clear()
