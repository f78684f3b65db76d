"""The simulator's log line formats (pure functions); movie-id slugs are `core.ids`.

    <time>,<userid>,GET /data/m/<movieid>/<minute>.mpg
    <time>,<userid>,GET /rate/<movieid>=<rating>
    <time>,<userid>,recommendation request <server>, status <code>, result: <id, id, ...>, <N> ms
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from data_parsing.parser import RateEvent, RecommendationEvent, WatchEvent

# The line formats themselves belong to the parser (its events re-serialise to the canonical line); the
# simulator writes through them so that what it writes and what the parser reads cannot drift apart.


def watch_line(ts: datetime, user_id: int, movie_id: str, minute: int) -> str:
    return WatchEvent(ts.replace(microsecond=0), user_id, movie_id, minute).to_line()


def rate_line(ts: datetime, user_id: int, movie_id: str, rating: int) -> str:
    return RateEvent(ts.replace(microsecond=0), user_id, movie_id, rating).to_line()


def recommendation_line(ts: datetime, user_id: int, server: str, status: int, movie_ids: Iterable[str],
                        latency_ms: float) -> str:
    return RecommendationEvent(ts.replace(microsecond=0), user_id, server, status, tuple(movie_ids),
                               float(latency_ms)).to_line()
