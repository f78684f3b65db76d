"""Online evaluation from the store: did users watch what they were served, and did they like it?

Conversion (default mode): a served list (status 200, at least one id) converts when its user starts
watching one of the listed movies within the window after it was served: the (user, movie) row of
``watched`` has ``first_ts`` in [served ts, served ts + window]. A movie the user had started before the
list was served does not count. The rating of a converted movie is the user's stored rating of it, if any.
Lists whose window has not ended by the store's latest activity (its own clock, so replayed historical
streams work) are reported as pending and left out of the rate.

Snapshots (the original team's comparison): the users' histories at two times; for each user served a
list at or before the first time (their latest one), the movies first watched between the two times are
compared with that list.

`online_conversion_rate` (gauge 0..1) is the conversion rate with a 24-hour window: `update_gauge` sets it
in a registry (the parser can call it periodically), `serve_gauge` exports it on its own port.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Gauge

from evaluation.registry import PerRegistry

log = logging.getLogger("evaluation.online")


# ------------------------------------------------------------------------------------------- pure core


def _index_watches(watched: Iterable[Mapping[str, Any]]) -> dict[tuple[int, str], datetime]:
    return {(int(w["user_id"]), str(w["movie_id"])): w["first_ts"] for w in watched}


def _index_ratings(ratings: Iterable[Mapping[str, Any]]) -> dict[tuple[int, str], int]:
    return {(int(r["user_id"]), str(r["movie_id"])): int(r["rating"]) for r in ratings}


def conversions(served: Sequence[Mapping[str, Any]], watched: Iterable[Mapping[str, Any]],
                ratings: Iterable[Mapping[str, Any]], window: timedelta, as_of: datetime | None) -> dict[str, Any]:
    """The conversion report of served lists against watches and ratings (plain dicts; see the module
    docstring for the rules)."""
    first_watch = _index_watches(watched)
    rating_of = _index_ratings(ratings)
    days: dict[str, dict[str, Any]] = defaultdict(lambda: {"served": 0, "converted": 0, "ratings": []})
    totals = {"served": 0, "converted": 0, "pending": 0, "failed": 0}
    all_ratings: list[int] = []
    for row in served:
        ids = list(row["movie_ids"])
        if int(row.get("status", 200)) != 200 or not ids:
            totals["failed"] += 1
            continue
        ts: datetime = row["ts"]
        if as_of is not None and ts + window > as_of:
            totals["pending"] += 1
            continue
        user = int(row["user_id"])
        hits = [m for m in ids if (user, m) in first_watch and ts <= first_watch[(user, m)] <= ts + window]
        day = days[ts.date().isoformat()]
        day["served"] += 1
        totals["served"] += 1
        if hits:
            day["converted"] += 1
            totals["converted"] += 1
            rated = [rating_of[(user, m)] for m in hits if (user, m) in rating_of]
            day["ratings"].extend(rated)
            all_ratings.extend(rated)
    by_day = {d: {"served": v["served"], "converted": v["converted"],
                  "conversion_rate": v["converted"] / v["served"] if v["served"] else 0.0,
                  "mean_rating": sum(v["ratings"]) / len(v["ratings"]) if v["ratings"] else None,
                  "rated": len(v["ratings"])}
              for d, v in sorted(days.items())}
    return {
        "mode": "conversion",
        "window_hours": window.total_seconds() / 3600,
        "as_of": as_of,
        **totals,
        "online_conversion_rate": totals["converted"] / totals["served"] if totals["served"] else 0.0,
        "mean_rating": sum(all_ratings) / len(all_ratings) if all_ratings else None,
        "rated_conversions": len(all_ratings),
        "by_day": by_day,
    }


def snapshots(served: Sequence[Mapping[str, Any]], watched: Iterable[Mapping[str, Any]], first: datetime,
              second: datetime) -> dict[str, Any]:
    """Compare histories at ``first`` and ``second`` with each user's latest list served by ``first``."""
    latest: dict[int, list[str]] = {}
    for row in sorted(served, key=lambda r: r["ts"]):
        if row["ts"] <= first and int(row.get("status", 200)) == 200 and row["movie_ids"]:
            latest[int(row["user_id"])] = list(row["movie_ids"])
    new: dict[int, set[str]] = defaultdict(set)
    for w in watched:
        user = int(w["user_id"])
        if user in latest and first < w["first_ts"] <= second:
            new[user].add(str(w["movie_id"]))
    converted = sum(1 for u, listed in latest.items() if new[u] & set(listed))
    new_total = sum(len(new[u]) for u in latest)
    recommended_new = sum(len(new[u] & set(listed)) for u, listed in latest.items())
    users = len(latest)
    return {
        "mode": "snapshots", "first": first, "second": second, "users": users,
        "users_with_new_watches": sum(1 for u in latest if new[u]),
        "converted": converted,
        "conversion_rate": converted / users if users else 0.0,
        "new_watches": new_total,
        "share_of_new_watches_recommended": recommended_new / new_total if new_total else 0.0,
    }


# --------------------------------------------------------------------------------------------- shell


def _read(engine: Any, since: datetime | None = None, until: datetime | None = None):
    from db_utils import queries

    with engine.connect() as conn:
        served = queries.served_recommendations(conn, since=since, until=until)
        watched, ratings = queries.activity_of_users(conn, (r["user_id"] for r in served))
        as_of = queries.latest_activity(conn)
    return served, watched, ratings, as_of


def conversion_report(engine: Any, window_hours: float = 24.0, since: datetime | None = None,
                      until: datetime | None = None) -> dict[str, Any]:
    """Conversion of the lists served in [since, until) (both optional), judged at the store's latest time."""
    if window_hours <= 0:
        raise ValueError("the window must be a positive number of hours")
    served, watched, ratings, as_of = _read(engine, since, until)
    return conversions(served, watched, ratings, timedelta(hours=window_hours), as_of)


def snapshots_report(engine: Any, first: datetime, second: datetime) -> dict[str, Any]:
    """The two-snapshot comparison between ``first`` and ``second``."""
    if second <= first:
        raise ValueError("the second snapshot time must be after the first")
    served, watched, _, _ = _read(engine, until=first + timedelta(microseconds=1))
    return snapshots(served, watched, first, second)


conversion_gauge: PerRegistry[Gauge] = PerRegistry(lambda registry: Gauge(
    "online_conversion_rate", "Share of served recommendations followed by a watch of a recommended movie "
    "within 24 h", registry=registry))
"""The `online_conversion_rate` gauge in a registry (created once per registry)."""


def update_gauge(engine: Any, window_hours: float = 24.0, registry: CollectorRegistry = REGISTRY,
                 lookback_hours: float = 168.0) -> float:
    """Recompute the conversion rate of the lists served in the last ``lookback_hours`` (a week by default,
    by the store's clock, so the cost stays bounded as the table grows) and set the gauge; returns it."""
    from db_utils import queries

    with engine.connect() as conn:
        as_of = queries.latest_activity(conn)
    since = None if as_of is None else as_of - timedelta(hours=lookback_hours)
    value = float(conversion_report(engine, window_hours, since=since)["online_conversion_rate"])
    conversion_gauge(registry).set(value)
    return value


def serve_gauge(engine: Any, port: int, window_hours: float = 24.0, refresh_seconds: float = 60.0,
                max_seconds: float | None = None, stop: threading.Event | None = None, addr: str = "0.0.0.0",
                refresh: Callable[[], Any] | None = None) -> int:
    """Export the gauge on ``port`` and refresh it every ``refresh_seconds`` until ``stop`` is set, SIGTERM,
    or ``max_seconds`` have passed. A failing refresh keeps the last value and is logged. ``refresh``
    replaces the gauge's update (the experiment report's gauges use the same loop)."""
    import signal

    from prometheus_client import start_http_server

    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server, thread = start_http_server(port, addr=addr, registry=REGISTRY)
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    try:
        while not stop.is_set():
            try:
                refresh() if refresh is not None else update_gauge(engine, window_hours)
            except Exception as exc:  # the store may be briefly unavailable: keep the last value
                log.warning({"event": "gauge_refresh_failed", "error": str(exc).splitlines()[0][:200]})
            wait = refresh_seconds if deadline is None else min(refresh_seconds, deadline - time.monotonic())
            if wait <= 0 or stop.wait(wait):
                break
    finally:
        server.shutdown()
        thread.join(timeout=5)
    return 0
