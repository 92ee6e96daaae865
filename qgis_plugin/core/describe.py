"""Words for people: a server's `/info`, a task's state, and what went wrong.

Errors reach the user as the algorithm's message, never as a traceback, so each failure a user can
cause or fix (a wrong address, a wrong token, a refused option) says what happened and where to fix it.
"""
from __future__ import annotations

import re
from typing import Any

from ..deps import shared
from .connection import SETTINGS_HINT, ConnectionError
from .inputs import InputError

TaskStatus = shared.TaskStatus
STATUS_WORDS = {TaskStatus.QUEUED: "queued", TaskStatus.RUNNING: "running", TaskStatus.FAILED: "failed",
                TaskStatus.COMPLETED: "completed", TaskStatus.CANCELED: "canceled"}


def gigabytes(size: float | None) -> str:
    """NodeODX reports memory in bytes."""
    return "unknown" if size is None else f"{size / 1024 ** 3:.1f} GB"


class NoNodeOnline(ConnectionError):
    """The server is a relay with no node online: it cannot check options nor take a task now."""


def relay_nodes(info: shared.NodeInfo) -> dict[str, Any] | None:
    """The relay's own counts from `/info` (its `relay` key: nodes, online, offline, locked, queued), or
    None when the server is a NodeODX node."""
    relay = info.extra.get("relay")
    return relay if isinstance(relay, dict) else None


def no_node_online(info: shared.NodeInfo, url: str = "") -> str | None:
    """Why a relay cannot take a task now (no node of it online), in words; None when it can, or it is a node."""
    relay = relay_nodes(info)
    if relay is None or int(relay.get("online") or 0) > 0:
        return None
    total = int(relay.get("nodes") or 0)
    where = f" at {url}" if url else ""
    if total == 0:
        return f"The ODX Relay{where} has no nodes: its administrator must add one before it can process anything."
    parts = [f"{int(relay.get('offline') or 0)} offline"]
    if relay.get("locked"):
        parts.append(f"{int(relay['locked'])} locked")
    return (f"No node of the ODX Relay{where} is online (0 of {total} online; {', '.join(parts)}), so it cannot "
            "check options or process a task now. Try again later, or ask its administrator.")


def describe_info(info: shared.NodeInfo, url: str = "") -> str:
    """The `/info` reply as a few sentences: what the server is, how busy, how much memory. A relay with no
    node online says so first: its sums (memory, slots) are then zero, which is no sign of health."""
    engine = f"{info.engine} {info.engine_version}".strip()
    relay = relay_nodes(info)
    kind = "ODX Relay" if relay is not None else "NodeODX"
    lines = [f"Connected to {kind} {info.version or '(version unknown)'}"
             + (f" at {url}" if url else "") + (f", running {engine}" if engine else "") + "."]
    if relay is not None:
        down = no_node_online(info)
        if down:
            return "\n".join([lines[0], down])
        locked = int(relay.get("locked") or 0)
        lines.append(f"Nodes: {int(relay.get('online') or 0)} of {int(relay.get('nodes') or 0)} online"
                     + (f", {locked} locked" if locked else "") + ".")
    slots = info.max_parallel_tasks
    queue = info.task_queue_count
    if slots:
        lines.append(f"Queue: {queue} task(s) running or waiting, for {slots} parallel slot(s).")
    else:
        lines.append(f"Queue: {queue} task(s) running or waiting.")
    if info.max_images:
        lines.append(f"Takes up to {info.max_images} images per task.")
    else:
        lines.append("No limit on the number of images per task.")
    if info.total_memory is not None or info.available_memory is not None:
        lines.append(f"Memory: {gigabytes(info.available_memory)} free of {gigabytes(info.total_memory)}"
                     + (f"; {info.cpu_cores} CPU cores." if info.cpu_cores else "."))
    return "\n".join(lines)


def duration(milliseconds: int | float | None) -> str:
    """`3723000` → `1 h 02 min`; short tasks in seconds."""
    seconds = int((milliseconds or 0) / 1000)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


#: The columns of the task table, in order: (field name, kind) with kind one of str, int, float.
TASK_FIELDS = (("uuid", "str"), ("name", "str"), ("status", "str"), ("progress", "float"),
               ("images", "int"), ("created", "str"), ("processing_s", "int"), ("processing", "str"),
               ("error", "str"))


def task_row(info: shared.TaskInfo) -> dict[str, Any]:
    """A task as one row of the task table (see TASK_FIELDS)."""
    return {
        "uuid": info.uuid,
        "name": info.name,
        "status": STATUS_WORDS.get(info.status, str(info.status)),
        "progress": round(float(info.progress), 1),
        "images": int(info.images_count),
        "created": info.date_created.strftime("%Y-%m-%d %H:%M:%S UTC") if info.date_created else "",
        "processing_s": int(info.processing_time / 1000) if info.processing_time > 0 else 0,
        "processing": duration(info.processing_time) if info.processing_time > 0 else "",
        "error": info.last_error,
    }


def task_summary(info: shared.TaskInfo) -> str:
    words = STATUS_WORDS.get(info.status, str(info.status))
    name = f" “{info.name}”" if info.name else ""
    detail = f", {info.progress:.0f} %" if info.status == TaskStatus.RUNNING else ""
    error = f": {info.last_error}" if info.last_error else ""
    return f"Task {info.uuid}{name}: {words}{detail}, {info.images_count} images{error}"


_TOKEN_WORDS = re.compile(r"token|unauthori[sz]ed|forbidden|authenticat|not allowed|permission", re.I)
_NETWORK_REASONS = (("Connection refused", "nothing answers at that address and port"),
                    ("Name or service not known", "the host name is unknown"),
                    ("nodename nor servname", "the host name is unknown"),
                    ("Temporary failure in name resolution", "the host name cannot be resolved"),
                    ("timed out", "it did not answer in time"),
                    ("CERTIFICATE_VERIFY_FAILED", "its TLS certificate is not trusted"),
                    ("ProxyError", "the proxy refused the connection (see QGIS › Options › Network)"))


def error_message(exc: BaseException, url: str = "") -> str:
    """One clear message for an error a user can meet; the technical text only where it helps."""
    where = f" at {url}" if url else ""
    if isinstance(exc, shared.OptionsError):
        listed = "\n".join(f"  • {p}" for p in exc.problems)
        return f"The server{where} would refuse this task, so nothing was uploaded:\n{listed}"
    if isinstance(exc, shared.NodeConnectionError):
        text = str(exc)
        reason = next((why for key, why in _NETWORK_REASONS if key in text), None)
        if reason is None:
            reason = text
        return (f"Cannot reach the server{where}: {reason}. Check the address in {SETTINGS_HINT} "
                "and that the server is running.")
    status = getattr(exc, "status", None)
    if isinstance(exc, (shared.NodeResponseError, shared.NodeServerError)) and (
            status in (401, 403) or _TOKEN_WORDS.search(str(exc))):
        return (f"The server{where} refused the token ({exc}). Set the right token in {SETTINGS_HINT}, "
                "or ask the server's administrator for one.")
    if isinstance(exc, shared.TaskFailedError):
        return f"The task did not complete: {exc}"
    if isinstance(exc, shared.GenericError):
        return f"The server{where} answered with an error: {exc}"
    if isinstance(exc, (InputError, ConnectionError)):
        return str(exc)
    if isinstance(exc, OSError):
        name = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return f"A local file could not be used{name}: {exc.strerror or exc}"
    return str(exc)

