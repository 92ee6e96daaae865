"""NodeODX data types, named as pyodx names them, parsed leniently from real node replies."""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class TaskStatus(IntEnum):
    QUEUED = 10
    RUNNING = 20
    FAILED = 30
    COMPLETED = 40
    CANCELED = 50

    @property
    def is_final(self) -> bool:
        return self in (TaskStatus.FAILED, TaskStatus.COMPLETED, TaskStatus.CANCELED)


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


@dataclass
class NodeOption:
    """One entry of `/options`: the option's name, type, default value, domain and help text."""

    name: str
    type: str
    value: str = ""
    domain: Any = ""
    help: str = ""

    @classmethod
    def from_json(cls, data: dict) -> NodeOption:
        return cls(
            name=str(data["name"]),
            type=str(data.get("type", "string")),
            value="" if data.get("value") is None else str(data.get("value")),
            domain=data.get("domain", ""),
            help=str(data.get("help", "")),
        )

    def to_json(self) -> dict:
        return {"name": self.name, "type": self.type, "value": self.value,
                "domain": self.domain, "help": self.help}


@dataclass
class NodeInfo:
    """The `/info` reply. `extra` keeps fields this library does not know (a relay adds some)."""

    version: str = ""
    task_queue_count: int = 0
    total_memory: int | None = None
    available_memory: int | None = None
    cpu_cores: int | None = None
    max_images: int | None = None
    max_parallel_tasks: int | None = None
    engine: str = ""
    engine_version: str = ""
    extra: dict = field(default_factory=dict)

    _KEYS = {
        "version": "version", "taskQueueCount": "task_queue_count", "totalMemory": "total_memory",
        "availableMemory": "available_memory", "cpuCores": "cpu_cores", "maxImages": "max_images",
        "maxParallelTasks": "max_parallel_tasks", "engine": "engine", "engineVersion": "engine_version",
    }

    @classmethod
    def from_json(cls, data: dict) -> NodeInfo:
        info = cls(extra={k: v for k, v in data.items() if k not in cls._KEYS and k != "odmVersion"})
        info.version = str(data.get("version", ""))
        info.task_queue_count = _int(data.get("taskQueueCount"))
        for key in ("totalMemory", "availableMemory", "cpuCores", "maxImages", "maxParallelTasks"):
            raw = data.get(key)
            setattr(info, cls._KEYS[key], None if raw is None else _int(raw))
        info.engine = str(data.get("engine") or "odm")
        info.engine_version = str(data.get("engineVersion") or data.get("odmVersion") or "")
        return info

    def to_json(self) -> dict:
        out = {json_key: getattr(self, attr) for json_key, attr in self._KEYS.items()}
        out.update(self.extra)
        return out


@dataclass
class TaskInfo:
    """The `/task/{uuid}/info` reply. `output` is filled when asked with `with_output`."""

    uuid: str
    name: str = ""
    date_created: _dt.datetime | None = None
    processing_time: int = 0
    status: TaskStatus = TaskStatus.QUEUED
    last_error: str = ""
    options: dict = field(default_factory=dict)
    images_count: int = 0
    progress: float = 0.0
    output: list = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict) -> TaskInfo:
        status = data.get("status") or {}
        code = status.get("code") if isinstance(status, dict) else status
        created = data.get("dateCreated")
        return cls(
            uuid=str(data.get("uuid", "")),
            name=str(data.get("name") or ""),
            date_created=(_dt.datetime.fromtimestamp(_int(created) / 1000.0, tz=_dt.UTC)
                          if created is not None else None),
            processing_time=_int(data.get("processingTime")),
            status=TaskStatus(_int(code, TaskStatus.QUEUED)),
            last_error=str(status.get("errorMessage", "") if isinstance(status, dict) else ""),
            options={o["name"]: o.get("value") for o in data.get("options") or [] if "name" in o},
            images_count=_int(data.get("imagesCount")),
            progress=float(data.get("progress") or 0.0),
            output=list(data.get("output") or []),
        )
