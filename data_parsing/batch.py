"""Pure batching: parsed events of one batch -> the rows db_utils' idempotent upserts take.

A batch is pre-aggregated so that one transaction writes each key once (or twice for watches), whatever
the number of events: applying the aggregate has the same effect as applying every event one by one,
because each upsert is a max/min/latest-wins merge. Rejected lines are sampled (`RejectSampler`) so
that a flood of garbage cannot fill the disk; every rejection is still counted by the caller.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from data_parsing.parser import Event, RateEvent, RecommendationEvent, Rejected, WatchEvent

MAX_RAW_CHARS = 1024
_UNPRINTABLE_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


@dataclass
class BatchRows:
    """Rows for one transaction, one per key, in the shapes of `db_utils.queries.upsert_stream_batch`."""

    users: list[dict] = field(default_factory=list)
    movie_ids: list[str] = field(default_factory=list)
    watched: list[dict] = field(default_factory=list)
    ratings: list[dict] = field(default_factory=list)
    served: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)


def aggregate(events: Iterable[Event]) -> BatchRows:
    """Fold one batch of events (in stream order) into one row per key, with db_utils' merge rules.

    - users: the first and last time the user appears in any event;
    - movie_ids: every movie watched or rated (registered without metadata when new);
    - watched: per (user, movie) the highest minute and the first and last time;
    - ratings: per (user, movie) the latest time wins; on equal times the higher rating (order-free);
    - served: per (user, time) the first line wins.
    """
    users: dict[int, list[datetime]] = {}
    watches: dict[tuple[int, str], list] = {}
    ratings: dict[tuple[int, str], RateEvent] = {}
    served: dict[tuple[int, datetime], RecommendationEvent] = {}
    counts: Counter[str] = Counter()
    for event in events:
        ts = event.ts
        span = users.get(event.user_id)
        if span is None:
            users[event.user_id] = [ts, ts]
        elif ts < span[0]:
            span[0] = ts
        elif ts > span[1]:
            span[1] = ts
        kind = type(event)
        if kind is WatchEvent:
            key = (event.user_id, event.movie_id)
            agg = watches.get(key)
            if agg is None:
                watches[key] = [event.minute, ts, ts]
            else:
                if event.minute > agg[0]:
                    agg[0] = event.minute
                if ts < agg[1]:
                    agg[1] = ts
                elif ts > agg[2]:
                    agg[2] = ts
        elif kind is RateEvent:
            key = (event.user_id, event.movie_id)
            previous = ratings.get(key)
            if previous is None or (ts, event.rating) > (previous.ts, previous.rating):
                ratings[key] = event
        else:
            served.setdefault((event.user_id, ts), event)
        counts[event.kind] += 1
    movies = dict.fromkeys(m for _, m in watches)
    movies.update(dict.fromkeys(m for _, m in ratings))
    return BatchRows(
        users=[{"id": uid, "first_seen": span[0], "last_seen": span[1]} for uid, span in users.items()],
        movie_ids=list(movies),
        watched=[
            {"user_id": uid, "movie_id": movie, "max_minute": agg[0], "first_ts": agg[1], "last_ts": agg[2]}
            for (uid, movie), agg in watches.items()
        ],
        ratings=[
            {"user_id": e.user_id, "movie_id": e.movie_id, "rating": e.rating, "ts": e.ts} for e in ratings.values()
        ],
        served=[
            {
                "user_id": e.user_id,
                "ts": e.ts,
                "server": e.server,
                "status": e.status,
                "latency_ms": e.latency_ms,
                "movie_ids": list(e.movie_ids),
            }
            for e in served.values()
        ],
        counts=counts,
    )


def rejected_row(rejected: Rejected, source: str, offset: int, now: datetime) -> dict:
    """The stored form of a rejected line: raw text capped, control characters escaped (storable anywhere)."""
    raw = rejected.raw[:MAX_RAW_CHARS]
    raw = _UNPRINTABLE_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", raw)[:MAX_RAW_CHARS]
    return {"source": source, "offset": offset, "raw": raw, "reason": rejected.reason, "ts": now}


class RejectSampler:
    """Admit at most `cap` rejected lines per reason per clock hour for storage (all are still counted)."""

    def __init__(self, cap: int, window_seconds: float = 3600.0) -> None:
        self.cap = cap
        self.window_seconds = window_seconds
        self._window: float | None = None
        self._stored: Counter[str] = Counter()

    def admit(self, reason: str, now_seconds: float) -> bool:
        """True when this rejection should be stored; `now_seconds` is a unix time."""
        window = now_seconds // self.window_seconds
        if window != self._window:
            self._window = window
            self._stored.clear()
        if self._stored[reason] >= self.cap:
            return False
        self._stored[reason] += 1
        return True
