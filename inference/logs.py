"""The service's logs: request ids, and one access line per request, in `core.logs`' JSON-lines shape.

The service's own events go through `logging` and `core.logs.JsonFormatter`; the access line, written once
per request, goes through `access_line`, which writes the same shape directly (with `core.logs.Clock`):
the logging machinery (a LogRecord, handler locks, a scan of the record's attributes) cost more than the
rest of a cached recommendation's bookkeeping.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import sys
import time
from typing import Any

from core.logs import Clock, JsonFormatter, StderrHandler, dumps, setup

__all__ = ["ACCESS_LOGGER", "JsonFormatter", "StderrHandler", "access_line", "request_id", "setup_logging"]

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}", re.ASCII)
ACCESS_LOGGER = "inference.access"


def setup_logging(level: int = logging.INFO) -> None:
    """Send the `inference` loggers to stderr as JSON lines (`core.logs.setup`; idempotent)."""
    if not any(isinstance(h, StderrHandler) for h in logging.getLogger("inference").handlers):
        setup(level, "inference", propagate=False)


class _Ids:
    """Fresh request ids: 16 random hex digits per process (drawn again in a forked child) and a 16-digit
    counter, 32 hex digits in all, unique across workers and restarts without a uuid4 per request."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count()

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter) & 0xFFFFFFFFFFFFFFFF:016x}"


_ids = _Ids()


def request_id(header: str | None) -> str:
    """The caller's X-Request-ID when it is a sane token, else a fresh one (32 hex digits)."""
    if header and REQUEST_ID.fullmatch(header):
        return header
    return _ids.next()


_clock = Clock()
_access = logging.getLogger(ACCESS_LOGGER)


def access_line(fields: dict[str, Any]) -> None:
    """Write one access line (logger `inference.access`, level info, msg `request`) with `fields` to
    stderr, when that logger is enabled for info."""
    if not _access.isEnabledFor(logging.INFO):
        return
    # The same shape as core.logs.JsonFormatter (line_head, then msg, then the fields; the unit test compares
    # them), written inline: this runs once per request.
    doc = {"ts": _clock.ts(time.time()), "level": "info", "logger": ACCESS_LOGGER, "msg": "request", **fields}
    with contextlib.suppress(OSError, ValueError):  # a closed or full stderr must never fail a request
        sys.stderr.write(dumps(doc) + "\n")
