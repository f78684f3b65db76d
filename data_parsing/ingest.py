"""The ingest loop (imperative shell): source -> parse -> batch -> one DB transaction -> commit offsets.

Order of effects per batch, which is what makes a crash at any point harmless:
1. the batch's rows are written in ONE database transaction (db_utils' idempotent upserts);
2. only after that transaction committed are the source positions committed (Kafka offsets).
A crash between 1 and 2 re-delivers the batch; re-applying it changes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from data_parsing import metrics
from data_parsing.batch import BatchRows, RejectSampler, aggregate, rejected_row
from data_parsing.config import ParserSettings
from data_parsing.parser import Event, Rejected, parse
from data_parsing.quality import WindowTracker, strongest, verdict
from data_parsing.sources import Record, Source
from db_utils import queries

log = logging.getLogger("data_parsing.ingest")

MAX_BACKOFF_SECONDS = 30.0
MAX_KNOWN_IDS = 5_000_000
_EPOCH = datetime(1970, 1, 1)


def known_ids(engine: sa.Engine, limit: int = MAX_KNOWN_IDS) -> tuple[list[int], list[str]]:
    """The users and movies the store knows at start (the drift statistics' "known"); none if it cannot
    be read (the first batches will then retry the database as usual)."""
    try:
        with engine.connect() as conn:
            return queries.known_stream_ids(conn, limit)
    except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.ProgrammingError):
        return [], []


class StopWhileDatabaseDown(RuntimeError):
    """Asked to stop while the database is unreachable: the batch in hand stays unapplied, uncommitted."""


def write_batch(conn: sa.Connection, rows: BatchRows, rejected_max_rows: int | None = None) -> None:
    """Apply one batch's rows inside the caller's transaction: one statement per table; when rejects were
    stored, the oldest beyond `rejected_max_rows` are deleted (the audit table stays bounded)."""
    queries.upsert_stream_batch(
        conn,
        users=rows.users,
        movie_ids=rows.movie_ids,
        watched=rows.watched,
        ratings=rows.ratings,
        served=rows.served,
    )
    if rows.rejected:
        queries.insert_rejected(conn, rows.rejected)
        if rejected_max_rows is not None:
            queries.prune_rejected(conn, rejected_max_rows)


@dataclass
class Totals:
    """What one run did (also the figures of the progress line)."""

    lines: int = 0
    events: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    rejected_stored: int = 0
    batches: int = 0


class Ingestor:
    """Reads a source, applies batches bounded by size and time, commits positions after each transaction."""

    def __init__(
        self,
        source: Source,
        engine: sa.Engine,
        settings: ParserSettings,
        stop: threading.Event | None = None,
        known: tuple[list[int], list[str]] = ([], []),
    ) -> None:
        self.source = source
        self.engine = engine
        self.settings = settings
        self.stop = stop or threading.Event()
        self.totals = Totals()
        self._sampler = RejectSampler(settings.rejected_cap)
        self._events: list[Event] = []
        self._rejected_rows: list[queries.RejectedRow] = []
        self._rejected_counts: Counter[str] = Counter()
        self._positions: dict[int, int] = {}
        self._batch_started: float | None = None
        self._kafka = source.label.startswith("kafka:")
        # the drift statistics; `known` seeds the users and movies that count as known (`known_ids`)
        self.quality = WindowTracker(settings.quality_window_seconds, settings.quality_min_count, *known)
        if hasattr(source, "on_revoke"):
            source.on_revoke = self.flush

    # -- feeding -----------------------------------------------------------------------------------
    def feed(self, records: list[Record]) -> None:
        """Parse records into the batch in hand; remember the last position of each partition."""
        if not records:
            return
        if self._batch_started is None:
            self._batch_started = time.monotonic()
        events = self._events
        append = events.append
        for record in records:
            result = parse(record.value)
            if type(result) is Rejected:
                self._reject(result, record)
            else:
                append(result)
        positions = self._positions
        for record in records:
            positions[record.partition] = record.offset
        self.totals.lines += len(records)

    def _reject(self, rejected: Rejected, record: Record) -> None:
        self._rejected_counts[rejected.reason] += 1
        if self._sampler.admit(rejected.reason, time.time()):
            label = f"{self.source.label}/{record.partition}" if self._kafka else self.source.label
            now = datetime.now(UTC).replace(tzinfo=None)  # the store keeps naive UTC times
            self._rejected_rows.append(rejected_row(rejected, label, record.offset, now))

    @property
    def pending(self) -> int:
        """Records in hand, not yet applied."""
        return len(self._events) + sum(self._rejected_counts.values())

    # -- applying ----------------------------------------------------------------------------------
    def flush(self) -> None:
        """Apply the batch in hand in one transaction (retrying while the database is down), then commit."""
        if not self._positions:
            return
        started = time.monotonic()
        rows = aggregate(self._events)
        rows.rejected = self._rejected_rows
        self._apply_with_retry(rows)
        metrics.BATCH_SECONDS.observe(time.monotonic() - started)
        self.source.commit(self._positions)
        metrics.LAST_APPLIED.set(time.time())
        lag = self.source.lag()
        if lag is not None:
            metrics.CONSUMER_LAG.set(lag)
        for kind, n in rows.counts.items():
            metrics.EVENTS.labels(kind=kind).inc(n)
        for reason, n in self._rejected_counts.items():
            metrics.REJECTED.labels(reason=reason).inc(n)
        self._score_windows()
        self.totals.events.update(rows.counts)
        self.totals.rejected.update(self._rejected_counts)
        self.totals.rejected_stored += len(self._rejected_rows)
        self.totals.batches += 1
        self._events = []
        self._rejected_rows = []
        self._rejected_counts = Counter()
        self._positions = {}
        self._batch_started = None

    def _apply_with_retry(self, rows: BatchRows) -> None:
        backoff = 0.5
        while True:
            try:
                with self.engine.begin() as conn:
                    write_batch(conn, rows, self.settings.rejected_max_rows)
                return
            except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
                if self.stop.is_set():
                    raise StopWhileDatabaseDown("stopped while the database was unreachable") from exc
                log.warning(
                    {
                        "event": "database_unavailable",
                        "error": str(exc.orig if hasattr(exc, "orig") else exc).splitlines()[0][:200],
                        "retry_in_s": backoff,
                    }
                )
                self.stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def _score_windows(self) -> None:
        """Feed the applied batch to the drift statistics; export and log each window that closed."""
        for window, scores in self.quality.observe(self._events, self._rejected_counts):
            for feature, score in scores.items():  # an unscored feature is unknown again (NaN)
                metrics.DRIFT.labels(feature=feature).set(float("nan") if score is None else score)
            end = window.start + timedelta(seconds=self.quality.seconds)
            metrics.WINDOW_END.set((end - _EPOCH).total_seconds())
            top = strongest(scores)
            log.info({"event": "window", "start": window.start.isoformat(), "lines": window.lines,
                      "reference": not scores, "strongest": top[0] if top else None,
                      "score": round(top[1], 4) if top else None, "drift": verdict(top[1] if top else None)})

    # -- the loop ----------------------------------------------------------------------------------
    def run(self, max_idle: float | None = None, progress_seconds: float = 5.0) -> Totals:
        """Ingest until the source ends, `stop` is set, or nothing arrived for `max_idle` seconds while the
        source was ready (a Kafka consumer waiting to join its group is not idle)."""
        size = self.settings.batch_size
        window = self.settings.batch_seconds
        last_record = last_progress = time.monotonic()
        lines_at_progress = 0
        try:
            while not self.stop.is_set():
                timeout = 0.5
                if self._batch_started is not None:
                    timeout = max(0.0, min(timeout, window - (time.monotonic() - self._batch_started)))
                records = self.source.poll(max(1, size - self.pending), timeout)
                now = time.monotonic()
                if records or not self.source.ready:  # idle time counts only while partitions are held
                    last_record = now
                self.feed(records)
                full = self.pending >= size
                if full or (self._batch_started is not None and now - self._batch_started >= window):
                    self.flush()
                if self.source.exhausted:
                    break
                if max_idle is not None and now - last_record >= max_idle and not self._positions:
                    break
                if now - last_progress >= progress_seconds:
                    self._progress(now - last_progress, self.totals.lines - lines_at_progress)
                    last_progress, lines_at_progress = now, self.totals.lines
            self.flush()
        finally:
            lag = self.source.lag()
            if lag is not None:
                metrics.CONSUMER_LAG.set(lag)
        return self.totals

    def _progress(self, seconds: float, lines: int) -> None:
        lag = self.source.lag()
        if lag is not None:
            metrics.CONSUMER_LAG.set(lag)
        log.info(
            {
                "event": "progress",
                "events_per_s": round(lines / seconds, 1) if seconds > 0 else None,
                "lines": self.totals.lines,
                "events": sum(self.totals.events.values()),
                "rejected": sum(self.totals.rejected.values()),
                "lag": lag,
            }
        )
