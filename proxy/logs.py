"""The relay's log lines: one line per event, with no secret in it.

Every record goes through one formatter that folds an exception into the same line (its type, its
message and where it was raised, never a multi-line traceback) and blanks what must not be kept in
logs: `token=`/`sig=` query values, `Bearer` credentials and Basic-auth passwords in URLs. aiohttp's
own records (a malformed request line, a client gone mid-upload) pass through it too.
"""
from __future__ import annotations

import logging
import re
import sys
import traceback

SECRETS = [
    (re.compile(r"((?:token|sig|admin_token|password)=)[^&\s\"']+", re.I), r"\1***"),
    (re.compile(r"(Bearer\s+)[^\s\"']+", re.I), r"\1***"),
    (re.compile(r"(//[^:/@\s]*:)[^@/\s]*@"), r"\1***@"),
]


def redact(text: str) -> str:
    for pattern, replacement in SECRETS:
        text = pattern.sub(replacement, text)
    return text


class OneLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        exc_info, record.exc_info, record.exc_text = record.exc_info, None, None
        try:
            line = super().format(record)
        finally:
            record.exc_info = exc_info
        if exc_info and exc_info[1] is not None:
            where = traceback.extract_tb(exc_info[2])[-1] if exc_info[2] else None
            place = f" at {where.filename.rsplit('/', 1)[-1]}:{where.lineno}" if where else ""
            line += f" | {type(exc_info[1]).__name__}: {exc_info[1]}{place}"
        return redact(line.replace("\n", " ⏎ "))


def configure(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
