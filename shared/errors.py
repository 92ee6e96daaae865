"""Exceptions raised by the protocol library, with pyodx's names so existing callers keep working.

    GenericError
    ├── NodeConnectionError    the server could not be reached (refused, DNS, timeout)
    ├── NodeServerError        the server answered with an HTTP error status (4xx/5xx)
    ├── NodeResponseError      the server answered 200 with {"error": ...}, or with something unreadable
    ├── TaskFailedError        the task ended FAILED or CANCELED while we waited for it
    ├── RangeNotAvailableError a ranged download was refused part way
    └── OptionsError           task options failed validation before anything was sent
"""
from __future__ import annotations


class GenericError(Exception):
    """Base of every error this library raises."""


class NodeConnectionError(GenericError):
    """The node or relay could not be reached."""


class NodeServerError(GenericError):
    """The server answered with an HTTP error status."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class NodeResponseError(GenericError):
    """The server answered, but with an error message or a body we cannot read."""


class TaskFailedError(GenericError):
    """The task did not complete."""

    def __init__(self, message: str, status: object | None = None):
        super().__init__(message)
        self.status = status


class RangeNotAvailableError(GenericError):
    """The server stopped honouring Range requests part way through a download."""


class OptionsError(GenericError):
    """Task options or inputs were refused before upload; `problems` lists each one."""

    def __init__(self, problems: list):
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems) or "invalid options")
