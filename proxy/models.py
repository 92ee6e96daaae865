"""The relay's own records: tasks it routes, nodes it knows, user accounts. Plain data, JSON-able."""
from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class Stage(str, Enum):
    """Where a task is in the relay's hands. Status codes on the node are a separate matter."""

    UPLOADING = "uploading"      # init done, files arriving, not committed
    QUEUED = "queued"            # committed, waiting in the relay's queue for a node with room
    DISPATCHING = "dispatching"  # being sent from the staging folder to a node
    COMMITTING = "committing"    # commit asked of `node_id` (intake's forward node): whether it took it is unknown
    ON_NODE = "on_node"          # committed on `node_id`; the node is the source of truth
    CANCELED = "canceled"        # canceled while still in the relay's queue
    FAILED = "failed"            # the relay itself could not run it (reason in `error`)


@dataclass
class TaskRecord:
    uuid: str
    owner: str = ""
    name: str | None = None   # None: the client sent no name field (NodeODX then shows no name either)
    created_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    stage: Stage = Stage.UPLOADING
    node_id: str | None = None
    forward_node_id: str | None = None
    image_count: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    webhook: str = ""
    skip_post_processing: bool = False
    outputs: list[str] | None = None
    last_info: dict[str, Any] | None = None
    error: str = ""
    ended_ms: int | None = None
    runs: int = 0             # restarts so far: each run ends (and is announced to the client) once
    notified_run: int = -1    # the run whose end the client's webhook was called for
    archived_run: int = -1    # the run whose all.zip the results store holds (results.py)
    off_node: bool = False    # its node's copy was removed after archiving: the relay answers from what it stored
    parent_uuid: str | None = None  # a submodel's split-merge parent (see split_merge.py)

    def to_json(self) -> dict:
        data = asdict(self)
        data["stage"] = self.stage.value
        return data

    @classmethod
    def from_json(cls, data: dict) -> TaskRecord:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["stage"] = Stage(known.get("stage", Stage.UPLOADING))
        return cls(**known)


@dataclass
class NodeRecord:
    """A node as registered. The token is a secret: it never leaves the relay except towards the node."""

    id: str
    url: str
    token: str = ""
    label: str = ""
    locked: bool = False

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def shown_url(self) -> str:
        """The URL without a Basic-auth password, for the admin API and log lines."""
        return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", self.url)

    @classmethod
    def from_json(cls, data: dict) -> NodeRecord:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class UserRecord:
    username: str
    salt: str
    password_hash: str
    token_hash: str

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> UserRecord:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
