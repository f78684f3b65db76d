"""One JSON line per served answer, so any answer can be traced to the version that gave it.

Each line: ts (UTC ISO), request_id, user_id, version, kind (personalized, cold_start, fallback) and ids;
in an experiment also experiment (its name) and arm (control, treatment).
Every gunicorn worker appends to the same file (opened O_APPEND; a line is one write, so lines from
several processes never interleave). `python -m training provenance --user U [--at T]` reads it back and
joins the version's row (data watermark, code revision). Rotate it with logrotate's copytruncate.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from core.logs import Clock, dumps


class UtcMicros:
    """`ts` as `datetime.now(UTC).isoformat(timespec="microseconds")` writes it
    (`2026-12-03T18:22:00.123456+00:00`), from integer nanoseconds, the date and time of day from the log
    lines' per-second `core.logs.Clock`: a datetime and its isoformat per answer cost more than the rest of
    the line but its JSON encoding."""

    def __init__(self, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self._clock_ns = clock_ns
        self._seconds = Clock()

    def now(self) -> str:
        """The current time as an ISO string in UTC with microseconds."""
        second, fraction = divmod(self._clock_ns() // 1000, 1_000_000)
        return f"{self._seconds.seconds(second)}.{fraction:06d}+00:00"


class ProvenanceLog:
    """Appends provenance lines to `path` ('' or None: a no-op)."""

    def __init__(self, path: str | None):
        self.path = path or None
        self._fd: int | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._clock = UtcMicros()

    def _open(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # never share a descriptor across a fork
            directory = os.path.dirname(os.path.abspath(self.path or "."))
            os.makedirs(directory, exist_ok=True)
            self._fd = os.open(self.path or "", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._pid = os.getpid()
        return self._fd

    def write(self, request_id: str, user_id: int, version: str, kind: str, ids: Sequence[str],
              experiment: str | None = None, arm: str | None = None) -> None:
        """Append one answer's line; a failing disk never fails the answer (the line is dropped)."""
        if self.path is None:
            return
        doc = {"ts": self._clock.now(), "request_id": request_id, "user_id": user_id, "version": version,
               "kind": kind, "ids": ids if isinstance(ids, list) else list(ids)}
        if experiment is not None:
            doc["experiment"], doc["arm"] = experiment, arm
        data = (dumps(doc) + "\n").encode("utf-8")
        try:
            with self._lock:
                os.write(self._open(), data)
        except OSError:
            self._fd = None


def read_lines(path: str) -> Iterator[dict[str, Any]]:
    """The provenance lines of a file, oldest first; unreadable lines are skipped."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for raw in fh:
            try:
                doc = json.loads(raw)
            except ValueError:
                continue
            if isinstance(doc, dict) and "user_id" in doc:
                yield doc


def find_answer(lines: Iterator[dict[str, Any]], user_id: int, at: datetime | None = None) -> dict[str, Any] | None:
    """The last answer to `user_id` given at or before `at` (default: the last one)."""
    found: dict[str, Any] | None = None
    for doc in lines:
        if doc.get("user_id") != user_id:
            continue
        if at is not None:
            when = datetime.fromisoformat(str(doc.get("ts")))
            if when > at:
                continue
        found = doc
    return found
