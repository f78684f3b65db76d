"""Replay held-out MovieLens users against a live service, writing the log lines the real simulator would.

For each replayed user (a seeded sample), the last ``future`` movies they rated (by time) are their
held-out future; everything before is their past (``write_past`` writes the demo stream without the
futures, to load the store with first). A session: ``GET /recommend/<user>``, then the
``recommendation request`` line (status, result, latency), then the user watches a few minutes of one
movie and rates it: the best-ranked recommended movie that is in their future when there is one
(a conversion), else their next future movie in time order. Sessions advance a simulated clock that
starts at the wall clock, so the online evaluation's window applies. Bounded by requests and seconds.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np

from evaluation.simulator.formats import rate_line, recommendation_line, watch_line

Future = Sequence[tuple[str, int]]
"""A user's held-out future: (movie id, rating 1..5) in time order."""


@dataclass(frozen=True)
class ReplayConfig:
    """Bounds and shape of a replay.

    users: how many users to replay (seeded sample of users with a future).
    max_requests: stop after this many /recommend calls; max_seconds: after this long (wall clock).
    future: held-out movies per user; minutes: minutes watched per session; timeout: per HTTP request.
    session_gap: simulated time between two sessions.
    """

    users: int = 50
    max_requests: int = 500
    max_seconds: float = 60.0
    future: int = 10
    minutes: int = 3
    timeout: float = 2.0
    seed: int = 0
    session_gap: timedelta = timedelta(minutes=30)


@dataclass
class ReplayStats:
    """What a replay did."""

    requests: int = 0
    errors: int = 0
    conversions: int = 0
    lines: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        return {"requests": self.requests, "errors": self.errors, "conversions": self.conversions,
                "conversion_rate": self.conversions / self.requests if self.requests else 0.0,
                "lines": self.lines, "p50_ms": lat[len(lat) // 2] if lat else None,
                "p95_ms": lat[int(len(lat) * 0.95)] if lat else None}


class Sink(Protocol):
    def write(self, user_id: int, line: str) -> None: ...

    def close(self) -> None: ...


class FileSink:
    """Appends lines to a file (the parser reads it with ``--source file:PATH``)."""

    def __init__(self, path: str):
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def write(self, user_id: int, line: str) -> None:
        self._fh.write(line + "\n")

    def close(self) -> None:
        self._fh.close()


class KafkaSink:
    """Produces lines to a topic, keyed by user id (one user's lines stay in order on one partition)."""

    def __init__(self, bootstrap: str, topic: str):
        from confluent_kafka import Producer

        self.topic = topic
        self._producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
        self.failed = 0

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failed += 1

    def write(self, user_id: int, line: str) -> None:
        self._producer.produce(self.topic, line.encode(), key=str(user_id).encode(), on_delivery=self._delivered)
        self._producer.poll(0)

    def close(self) -> None:
        remaining = self._producer.flush(30)
        if remaining or self.failed:
            raise OSError(f"{remaining + self.failed} lines were not delivered to Kafka topic {self.topic}")


def open_sink(target: str) -> Sink:
    """``file:PATH`` or ``kafka://HOST:PORT/TOPIC``; anything else is a ValueError."""
    if target.startswith("file:"):
        return FileSink(target.removeprefix("file:"))
    if target.startswith("kafka://"):
        parsed = urllib.parse.urlparse(target)
        topic = parsed.path.strip("/")
        if not parsed.netloc or not topic:
            raise ValueError(f"a Kafka target looks like kafka://HOST:PORT/TOPIC, got {target!r}")
        return KafkaSink(parsed.netloc, topic)
    raise ValueError(f"--to must be file:PATH or kafka://HOST:PORT/TOPIC, got {target!r}")


def fetch(url: str, user_id: int, timeout: float) -> tuple[int, list[str], float]:
    """GET /recommend/<user>: (status, ids, latency ms); status 0 when the service cannot be reached."""
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/recommend/{user_id}", timeout=timeout) as resp:
            body = resp.read().decode("utf-8", errors="replace")
            status = resp.status
    except urllib.error.HTTPError as exc:
        return exc.code, [], (time.perf_counter() - started) * 1000
    except (urllib.error.URLError, OSError, TimeoutError):
        return 0, [], (time.perf_counter() - started) * 1000
    ids = [m.strip() for m in body.strip().split(",") if m.strip()]
    return status, ids, (time.perf_counter() - started) * 1000


def choose(recommended: Sequence[str], future: Future) -> tuple[int, bool]:
    """Index in ``future`` of the movie the user watches next, and whether it was recommended: the
    best-ranked recommended movie in the future, else the next one in time order. Pure."""
    position = {m: i for i, (m, _) in enumerate(future)}
    for movie in recommended:
        if movie in position:
            return position[movie], True
    return 0, False


def replay(url: str, futures: Mapping[int, Future], sink: Sink, config: ReplayConfig,
           fetcher: Callable[[str, int, float], tuple[int, list[str], float]] = fetch,
           start: datetime | None = None, clock: Callable[[], float] = time.monotonic) -> ReplayStats:
    """Play the users' futures against the service at ``url`` (see the module docstring)."""
    server = urllib.parse.urlparse(url).netloc or url
    remaining = {u: list(f) for u, f in futures.items() if f}
    users = sorted(remaining)
    stats = ReplayStats()
    now = start or datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    deadline = clock() + config.max_seconds
    while users and stats.requests < config.max_requests and clock() < deadline:
        for user in list(users):
            if stats.requests >= config.max_requests or clock() >= deadline:
                break
            status, ids, latency = fetcher(url, user, config.timeout)
            stats.requests += 1
            stats.latencies_ms.append(latency)
            if status != 200:
                stats.errors += 1
            lines = [recommendation_line(now, user, server, status, ids, max(0, round(latency)))]
            index, converted = choose(ids if status == 200 else [], remaining[user])
            movie, rating = remaining[user].pop(index)
            stats.conversions += converted
            for minute in range(config.minutes):
                lines.append(watch_line(now + timedelta(minutes=1 + minute), user, movie, minute))
            lines.append(rate_line(now + timedelta(minutes=1 + config.minutes), user, movie, rating))
            for line in lines:
                sink.write(user, line)
            stats.lines += len(lines)
            now += config.session_gap
            if not remaining[user]:
                users.remove(user)
    return stats


def movielens_futures(config: ReplayConfig) -> tuple[dict[int, list[tuple[str, int]]], set[tuple[int, str]]]:
    """A seeded sample of MovieLens users with their last ``future`` rated movies (ties by id), and the
    set of held-out (user, movie) pairs (to leave out of the past)."""
    from embeddings.movielens import demo_ratings

    rows = demo_ratings()
    by_user: dict[int, list[tuple[int, str, int]]] = {}
    for user, slug, rating, stamp in rows:
        by_user.setdefault(user, []).append((stamp, slug, rating))
    eligible = sorted(u for u, r in by_user.items() if len(r) > config.future)
    rng = np.random.default_rng(config.seed)
    chosen = sorted(int(u) for u in rng.choice(eligible, size=min(config.users, len(eligible)), replace=False))
    futures: dict[int, list[tuple[str, int]]] = {}
    for user in chosen:
        ordered = sorted(by_user[user])
        futures[user] = [(slug, rating) for _, slug, rating in ordered[-config.future:]]
    held = {(u, m) for u, f in futures.items() for m, _ in f}
    return futures, held


def write_past(events_path: str, out_path: str, held: set[tuple[int, str]]) -> int:
    """Copy the demo stream without the replayed users' futures; returns lines written."""
    from data_parsing.parser import parse

    kept = 0
    with open(events_path, encoding="utf-8") as src, open(out_path, "w", encoding="utf-8") as out:
        for line in src:
            event = parse(line)
            key = (getattr(event, "user_id", None), getattr(event, "movie_id", None))
            if key in held:
                continue
            out.write(line)
            kept += 1
    return kept


def summary_line(stats: ReplayStats) -> str:
    return json.dumps(stats.summary())

