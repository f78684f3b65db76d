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

from data_parsing.parser import Event, RateEvent, Rejected, WatchEvent
from db_utils import queries

MAX_RAW_CHARS = 1024
_UNPRINTABLE_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


@dataclass
class BatchRows:
    """Rows for one transaction, one per key, in the shapes of `db_utils.queries.upsert_stream_batch`."""

    users: list[queries.UserRow] = field(default_factory=list)
    movie_ids: list[str] = field(default_factory=list)
    watched: list[queries.WatchedRow] = field(default_factory=list)
    ratings: list[queries.RatingRow] = field(default_factory=list)
    served: list[queries.ServedRow] = field(default_factory=list)
    rejected: list[queries.RejectedRow] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)


# The per-table folds, compiled from db_utils' UpsertSpec tables once at import: the spec owns each merge
# rule (the SQL upserts are built from the same table), and the generated function is as fast as a
# hand-written fold.
_USER_COLUMNS = ("first_seen", "last_seen")
_WATCH_COLUMNS = ("max_minute", "first_ts", "last_ts")
_RATING_COLUMNS = ("rating", "ts")
_SERVED_COLUMNS = ("server", "status", "latency_ms", "movie_ids")
_fold_user = queries.folder(queries.USERS, _USER_COLUMNS)
_fold_watch = queries.folder(queries.WATCHED, _WATCH_COLUMNS)
_fold_rating = queries.folder(queries.RATINGS, _RATING_COLUMNS)
_fold_served = queries.folder(queries.SERVED, _SERVED_COLUMNS)


def aggregate(events: Iterable[Event]) -> BatchRows:
    """Fold one batch of events (in stream order) into one row per key, with db_utils' merge rules.

    - users: the first and last time the user appears in any event;
    - movie_ids: every movie watched or rated (registered without metadata when new);
    - watched: per (user, movie) the highest minute and the first and last time;
    - ratings: per (user, movie) the latest time wins; on equal times the higher rating (order-free);
    - served: per (user, time) the first line wins.
    """
    users: dict[int, list] = {}
    watches: dict[tuple[int, str], list] = {}
    ratings: dict[tuple[int, str], list] = {}
    served: dict[tuple[int, datetime], list] = {}
    counts: Counter[str] = Counter()
    fold_user, fold_watch, fold_rating, fold_served = _fold_user, _fold_watch, _fold_rating, _fold_served
    for event in events:
        ts = event.ts
        fold_user(users, event.user_id, ts, ts)
        if type(event) is WatchEvent:
            fold_watch(watches, (event.user_id, event.movie_id), event.minute, ts, ts)
        elif type(event) is RateEvent:
            fold_rating(ratings, (event.user_id, event.movie_id), event.rating, ts)
        else:
            fold_served(served, (event.user_id, ts), event.server, event.status, event.latency_ms, event.movie_ids)
        counts[event.kind] += 1
    movies = dict.fromkeys(m for _, m in watches)
    movies.update(dict.fromkeys(m for _, m in ratings))
    return BatchRows(
        users=[{"id": uid, "first_seen": first, "last_seen": last} for uid, (first, last) in users.items()],
        movie_ids=list(movies),
        watched=[
            {"user_id": uid, "movie_id": movie, "max_minute": minute, "first_ts": first, "last_ts": last}
            for (uid, movie), (minute, first, last) in watches.items()
        ],
        ratings=[
            {"user_id": uid, "movie_id": movie, "rating": rating, "ts": ts}
            for (uid, movie), (rating, ts) in ratings.items()
        ],
        served=[
            {"user_id": uid, "ts": ts, "server": server, "status": status, "latency_ms": latency,
             "movie_ids": list(ids)}
            for (uid, ts), (server, status, latency, ids) in served.items()
        ],
        counts=counts,
    )


def rejected_row(rejected: Rejected, source: str, offset: int, now: datetime) -> queries.RejectedRow:
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
