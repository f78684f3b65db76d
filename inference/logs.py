"""JSON-lines logging with a request id: one access line per request, plus the service's own events.

Every line has the same shape (`ts`, `level`, `logger`, `msg`, then the fields). The service's own events
go through `logging` and `JsonFormatter`; the access line, written once per request, goes through
`access_line`, which writes the same shape directly: the logging machinery (a LogRecord, handler locks, a
scan of the record's attributes) cost more than the rest of a cached recommendation's bookkeeping.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import re
import sys
import time
from typing import Any

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}", re.ASCII)
ACCESS_LOGGER = "inference.access"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any `extra` fields."""

    _skip = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in self._skip and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, separators=(",", ":"))


class StderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is at emit time (so captured output in tests sees it too)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def setup_logging(level: int = logging.INFO) -> None:
    """Send the `inference` loggers to stderr as JSON lines (idempotent)."""
    logger = logging.getLogger("inference")
    if any(isinstance(h, StderrHandler) for h in logger.handlers):
        return
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


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


class _Clock:
    """`ts` strings as JsonFormatter writes them, with the seconds part formatted once per second."""

    def __init__(self) -> None:
        self.second = -1
        self.text = ""

    def ts(self, now: float) -> str:
        second = int(now)
        if second != self.second:
            self.second, self.text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self.text}.{int((now - second) * 1000):03d}Z"


_clock = _Clock()
_access = logging.getLogger(ACCESS_LOGGER)


def access_line(fields: dict[str, Any]) -> None:
    """Write one access line (logger `inference.access`, level info, msg `request`) with `fields` to
    stderr, when that logger is enabled for info."""
    if not _access.isEnabledFor(logging.INFO):
        return
    doc = {"ts": _clock.ts(time.time()), "level": "info", "logger": ACCESS_LOGGER, "msg": "request", **fields}
    with contextlib.suppress(OSError, ValueError):  # a closed or full stderr must never fail a request
        sys.stderr.write(json.dumps(doc, default=str, separators=(",", ":")) + "\n")
