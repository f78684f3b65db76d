"""Where log lines come from: a file, stdin, or a Kafka topic through a consumer group.

Each source hands out `Record`s (partition, offset, raw bytes) and is told, after the database
transaction holding their effects has committed, which positions are done (`commit`). Only the Kafka
source persists them (committed offsets of the consumer group), which gives at-least-once delivery;
with the idempotent upserts every event's effect lands exactly once.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Protocol, cast
from urllib.parse import urlsplit

if TYPE_CHECKING:  # imported at run time only when a Kafka source opens
    from confluent_kafka import Consumer, KafkaError, TopicPartition

log = logging.getLogger("data_parsing.sources")


class SourceUnavailable(RuntimeError):
    """The source cannot be opened at start (missing file, unreachable broker, unknown topic)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One raw line with its position: partition (0 for files) and offset (line number for files)."""

    partition: int
    offset: int
    value: bytes


class Source(Protocol):
    """What the ingest loop needs from a source."""

    label: str

    def poll(self, max_records: int, timeout: float) -> list[Record]:
        """Up to `max_records` records, waiting at most `timeout` seconds for the first."""
        ...

    def commit(self, positions: dict[int, int]) -> None:
        """Mark records up to `positions[partition]` (inclusive) as applied."""
        ...

    def lag(self) -> int | None:
        """Records known to be waiting, summed over partitions (None when unknown)."""
        ...

    @property
    def exhausted(self) -> bool:
        """True when the source will never yield another record (end of a file)."""
        ...

    @property
    def ready(self) -> bool:
        """True when records can flow (a consumer holds partitions); idle time only counts then."""
        ...

    def close(self) -> None: ...


class LineSource:
    """Lines of a binary stream (a file or stdin); the offset is the 1-based line number."""

    def __init__(self, stream: BinaryIO, label: str) -> None:
        self._stream = stream
        self.label = label
        self._line_no = 0
        self._done = False

    @classmethod
    def open_file(cls, path: str) -> LineSource:
        """Open `path` for reading; SourceUnavailable when it cannot be read."""
        try:
            return cls(open(path, "rb", buffering=1 << 20), f"file:{path}")
        except OSError as exc:
            raise SourceUnavailable(f"cannot read {path}: {exc.strerror}") from None

    def poll(self, max_records: int, timeout: float) -> list[Record]:
        out: list[Record] = []
        if self._done:
            return out
        readline = self._stream.readline
        line_no = self._line_no
        for _ in range(max_records):
            line = readline()
            if not line:
                self._done = True
                break
            line_no += 1
            out.append(Record(0, line_no, line))
        self._line_no = line_no
        return out

    def commit(self, positions: dict[int, int]) -> None:
        """Nothing to persist: a file is replayed from its start (the upserts make that harmless)."""

    def lag(self) -> int | None:
        return None

    @property
    def exhausted(self) -> bool:
        return self._done

    @property
    def ready(self) -> bool:
        return True

    def close(self) -> None:
        self._stream.close()


class StdinSource(LineSource):
    """Lines of stdin, read by a daemon thread so that a stop signal is never stuck behind a blocking read.

    The thread reads the raw file descriptor (os.read), not sys.stdin's buffered object: a daemon thread
    blocked inside a buffered read would hold its lock and abort the interpreter at exit."""

    def __init__(self, fd: int | None = None, label: str = "stdin", queue_size: int = 50000) -> None:
        self._fd = sys.stdin.fileno() if fd is None else fd
        self.label = label
        self._line_no = 0
        self._done = False
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=queue_size)
        threading.Thread(target=self._pump, name="stdin-reader", daemon=True).start()

    def _pump(self) -> None:
        rest = b""
        while True:
            try:
                chunk = os.read(self._fd, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                break
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            for line in lines:
                self._queue.put(line + b"\n")
        if rest:
            self._queue.put(rest)
        self._queue.put(None)

    def poll(self, max_records: int, timeout: float) -> list[Record]:
        out: list[Record] = []
        if self._done:
            return out
        try:
            line = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return out
        while True:
            if line is None:
                self._done = True
                break
            self._line_no += 1
            out.append(Record(0, self._line_no, line))
            if len(out) >= max_records:
                break
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
        return out

    def close(self) -> None:
        """The reader thread is a daemon: it ends with the process; stdin is not ours to close."""


class KafkaSource:
    """A consumer in group `group_id` on `topic`; offsets are committed synchronously, only when told.

    Before partitions are revoked in a rebalance, `on_revoke` (the ingest loop's flush) runs inside
    the consumer's poll, so the batch in hand is applied and its offsets committed before another
    consumer takes the partitions over.
    """

    def __init__(
        self, bootstrap: str, topic: str, group_id: str, start_timeout: float = 10.0, session_timeout_ms: int = 6000
    ) -> None:
        from confluent_kafka import Consumer, KafkaException

        self.label = f"kafka:{topic}"
        self.topic = topic
        self.on_revoke: Callable[[], None] | None = None
        self._lags: dict[int, int] = {}
        self._assigned: set[int] = set()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": session_timeout_ms,
                "heartbeat.interval.ms": max(100, session_timeout_ms // 6),
                "statistics.interval.ms": 2000,
                "stats_cb": self._on_stats,
                "error_cb": self._on_error,
                "logger": log,
            }
        )
        try:
            meta = self._consumer.list_topics(topic=topic, timeout=start_timeout)
        except KafkaException as exc:
            self._consumer.close()
            raise SourceUnavailable(f"Kafka broker at {bootstrap} is unreachable: {exc.args[0]}") from None
        info = meta.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            self._consumer.close()
            raise SourceUnavailable(f"Kafka topic {topic!r} does not exist on {bootstrap}")
        self._consumer.subscribe([topic], on_assign=self._assigned_cb, on_revoke=self._revoked_cb)

    @classmethod
    def from_url(
        cls, url: str, group_id: str, start_timeout: float = 10.0, session_timeout_ms: int = 6000
    ) -> KafkaSource:
        """`kafka://HOST:PORT[,HOST:PORT...]/TOPIC`."""
        parts = urlsplit(url)
        topic = parts.path.strip("/")
        if not parts.netloc or not topic:
            raise SourceUnavailable(f"a Kafka source looks like kafka://HOST:PORT/TOPIC, got {url!r}")
        return cls(parts.netloc, topic, group_id, start_timeout, session_timeout_ms)

    def _assigned_cb(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned = {p.partition for p in partitions}
        log.info({"event": "partitions_assigned", "partitions": sorted(self._assigned)})

    def _revoked_cb(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info({"event": "partitions_revoked", "partitions": [p.partition for p in partitions]})
        if self.on_revoke is not None:
            self.on_revoke()
        self._assigned = set()
        self._lags = {}

    def _on_stats(self, stats_json: str) -> None:
        try:
            parts = json.loads(stats_json)["topics"][self.topic]["partitions"]
        except (KeyError, ValueError):
            return
        self._lags = {
            int(p): int(v.get("consumer_lag", -1)) for p, v in parts.items() if int(p) >= 0 and v.get("fetch_state")
        }

    def _on_error(self, err: KafkaError) -> None:
        log.warning({"event": "kafka_error", "error": str(err), "fatal": err.fatal()})

    def poll(self, max_records: int, timeout: float) -> list[Record]:
        out: list[Record] = []
        for msg in self._consumer.consume(num_messages=max_records, timeout=timeout):
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise RuntimeError(f"Kafka consumer failed: {err}")
                log.warning({"event": "kafka_message_error", "error": str(err)})
                continue
            # a consumed message without an error always has its partition and offset
            out.append(Record(cast(int, msg.partition()), cast(int, msg.offset()), msg.value() or b""))
        return out

    def commit(self, positions: dict[int, int]) -> None:
        """Commit `offset + 1` per partition, synchronously; a failure is logged (re-delivery is safe)."""
        from confluent_kafka import KafkaException, TopicPartition

        if not positions:
            return
        offsets = [TopicPartition(self.topic, p, o + 1) for p, o in positions.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning({"event": "commit_failed", "error": str(exc.args[0])})

    def lag(self) -> int | None:
        lags = [v for p, v in self._lags.items() if p in self._assigned and v >= 0]
        return sum(lags) if lags else None

    @property
    def exhausted(self) -> bool:
        return False

    @property
    def ready(self) -> bool:
        return bool(self._assigned)

    def close(self) -> None:
        self._consumer.close()


def open_source(spec: str, group_id: str, start_timeout: float = 10.0, session_timeout_ms: int = 6000) -> Source:
    """`file:PATH`, `-` (stdin) or `kafka://HOST:PORT/TOPIC`; SourceUnavailable with one clear sentence."""
    if spec == "-":
        return StdinSource()
    if spec.startswith("file:"):
        return LineSource.open_file(spec[len("file:") :])
    if spec.startswith("kafka://"):
        return KafkaSource.from_url(spec, group_id, start_timeout, session_timeout_ms)
    raise SourceUnavailable(f"unknown source {spec!r}: use file:PATH, - or kafka://HOST:PORT/TOPIC")
