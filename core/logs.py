"""JSON-lines logs, one shape for every role (service, parser, jobs, evaluation).

Each line is one JSON object::

    {"ts": "2026-12-03T06:41:26.123Z", "level": "info", "logger": "embeddings.job",
     "event": "batch_committed", "request_id": "...", ...fields}

`ts` is UTC with milliseconds; `level` is lower-case; then `event` when the message is a dict carrying one
(``log.info({"event": "batch_committed", "movies": 8})``: the preferred form, its other keys become
fields) or `msg` for a plain message; `request_id` when the record has one; then every other field (a dict
message's keys, `extra=` keys); `exc` for an exception. Nobody builds JSON strings by hand: a dict message
or `extra` fields go through `JsonFormatter`, and `setup` installs it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

TS_FORMAT = "%Y-%m-%dT%H:%M:%S"
_RECORD_KEYS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class Clock:
    """`ts` strings in the one shape, with the seconds part formatted once per second (the service writes
    a line per request: strftime per line would cost more than the rest of the line)."""

    def __init__(self) -> None:
        self.head: tuple[int, str] = (-1, "")
        """(second, its text): one reference, so a thread never pairs one second with another's text."""

    def seconds(self, second: int) -> str:
        """`second` (since the epoch) as TS_FORMAT's UTC text, formatted once per second."""
        head = self.head
        if second != head[0]:
            head = self.head = (second, time.strftime(TS_FORMAT, time.gmtime(second)))
        return head[1]

    def ts(self, now: float) -> str:
        second = int(now)
        return f"{self.seconds(second)}.{int((now - second) * 1000):03d}Z"


def format_ts(created: float) -> str:
    """A record's time as the lines carry it: ``2026-12-03T06:41:26.123Z`` (UTC, milliseconds)."""
    return time.strftime(TS_FORMAT, time.gmtime(created)) + f".{int((created % 1) * 1000):03d}Z"


_ENCODER = json.JSONEncoder(default=str, separators=(",", ":"))
"""Built once: json.dumps with arguments builds an encoder per call (the service writes a line per request)."""


def dumps(doc: dict[str, Any]) -> str:
    """One JSON line (compact; anything not JSON-native written as its str)."""
    return _ENCODER.encode(doc)


def line_head(ts: str, level: str, logger: str) -> dict[str, Any]:
    """The first three keys of every line, in order."""
    return {"ts": ts, "level": level, "logger": logger}


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON line in the shape of the module docstring."""

    def format(self, record: logging.LogRecord) -> str:
        doc = line_head(format_ts(record.created), record.levelname.lower(), record.name)
        fields: dict[str, Any] = {}
        if isinstance(record.msg, dict):
            fields.update(record.msg)
            if "event" in fields:
                doc["event"] = fields.pop("event")
        else:
            doc["msg"] = record.getMessage()
        for key, value in record.__dict__.items():
            if key not in _RECORD_KEYS and not key.startswith("_"):
                fields[key] = value
        if "request_id" in fields:
            doc["request_id"] = fields.pop("request_id")
        doc.update(fields)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return dumps(doc)


class StderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is at emit time (so output captured by tests sees it too)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def setup(level: int = logging.INFO, logger: str | None = None, propagate: bool = True) -> logging.Logger:
    """Send `logger` (default: the root logger, so every role's loggers) to stderr as JSON lines at `level`.

    Idempotent: a second call changes the level only. `propagate=False` keeps a named logger's lines from
    reaching the root's handlers too (the service does so for `inference`).
    """
    target = logging.getLogger(logger)
    if not any(isinstance(h, StderrHandler) for h in target.handlers):
        handler = StderrHandler()
        handler.setFormatter(JsonFormatter())
        target.addHandler(handler)
    target.setLevel(level)
    if logger is not None:
        target.propagate = propagate
    return target
