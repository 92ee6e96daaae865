"""ODX Relay's protocol library: NodeODX types, paths, option validation, the all.zip catalogue, a client.

Pure Python (requests + requests-toolbelt); no Qt, no aiohttp, so the plugin, the relay and any script
can share it. The public names follow pyodx, so `from shared import Node` reads like `from pyodx import Node`.
"""
from . import endpoints, inputs  # modules the plugin reaches as `shared.endpoints`, `shared.inputs`
from .client import Node, Task
from .errors import (
    GenericError,
    NodeConnectionError,
    NodeResponseError,
    NodeServerError,
    OptionsError,
    RangeNotAvailableError,
    TaskFailedError,
)
from .types import NodeInfo, NodeOption, TaskInfo, TaskStatus

__version__ = "0.1.0"

__all__ = [
    "Node", "Task", "TaskStatus", "TaskInfo", "NodeInfo", "NodeOption", "GenericError",
    "NodeConnectionError", "NodeServerError", "NodeResponseError", "TaskFailedError",
    "RangeNotAvailableError", "OptionsError", "endpoints", "inputs",
]
