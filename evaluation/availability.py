"""Availability measured from the stream: per hour, the share of `recommendation request` lines the
simulator logged with status 200 and a latency under a limit (default 800 ms, the simulator's budget).

`availability_by_hour` is pure (rows in, hours out); `availability_report` reads the store's
recommendations_served; `update_gauges` / `serve` export `online_availability_ratio` (the latest hour
with traffic) and `online_availability_requests` (its request count) for the AvailabilityBelow99 alert
(monitoring/prometheus/fleet.yml). CLI: `python -m evaluation.availability [--limit-ms 800] [--since ISO]
[--out F] [--serve-metrics PORT]`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Gauge

from evaluation.registry import PerRegistry

DEFAULT_LIMIT_MS = 800.0


def good(status: int, latency_ms: float, limit_ms: float = DEFAULT_LIMIT_MS) -> bool:
    """An answer counts as available when it was a 200 within the latency limit (a limit itself is late)."""
    return status == 200 and latency_ms < limit_ms


def availability_by_hour(served: Iterable[Mapping[str, Any]],
                         limit_ms: float = DEFAULT_LIMIT_MS) -> list[dict[str, Any]]:
    """Hours (oldest first) with their request count, good count and availability (good / requests).

    Each row needs `ts` (datetime), `status` (int) and `latency_ms` (float); hours without a request are
    absent rather than reported as 0% or 100%."""
    if not limit_ms > 0:
        raise ValueError(f"the latency limit must be a positive number of milliseconds, not {limit_ms!r}.")
    buckets: dict[datetime, list[int]] = {}
    for row in served:
        hour = row["ts"].replace(minute=0, second=0, microsecond=0)
        counts = buckets.setdefault(hour, [0, 0])
        counts[0] += 1
        counts[1] += good(int(row["status"]), float(row["latency_ms"]), limit_ms)
    return [{"hour": hour.isoformat(), "requests": n, "good": ok, "availability": ok / n}
            for hour, (n, ok) in sorted(buckets.items())]


def read_served(engine: Any, since: datetime | None = None) -> list[dict[str, Any]]:
    """(ts, status, latency_ms) of the served lists with ts >= since (all when None), oldest first."""
    from sqlalchemy import select

    from db_utils.models import RecommendationServed

    s = RecommendationServed.__table__.c
    stmt = select(s.ts, s.status, s.latency_ms).order_by(s.ts)
    if since is not None:
        stmt = stmt.where(s.ts >= since)
    with engine.connect() as conn:
        return [{"ts": ts, "status": status, "latency_ms": latency} for ts, status, latency in conn.execute(stmt)]


def availability_report(engine: Any, limit_ms: float = DEFAULT_LIMIT_MS,
                        since: datetime | None = None) -> dict[str, Any]:
    """Per-hour availability of the store's served lists, with the overall figure and the limit used."""
    hours = availability_by_hour(read_served(engine, since), limit_ms)
    requests = sum(h["requests"] for h in hours)
    ok = sum(h["good"] for h in hours)
    return {"limit_ms": limit_ms, "requests": requests, "good": ok,
            "availability": ok / requests if requests else None, "hours": hours}


gauges: PerRegistry[tuple[Gauge, Gauge]] = PerRegistry(lambda registry: (
    Gauge("online_availability_ratio", "Share of the latest hour's recommendation requests answered 200 "
          "under the latency limit", registry=registry),
    Gauge("online_availability_requests", "Recommendation requests in the latest hour with traffic",
          registry=registry),
))
"""(`online_availability_ratio`, `online_availability_requests`) in a registry, created once."""


def update_gauges(engine: Any, limit_ms: float = DEFAULT_LIMIT_MS, registry: CollectorRegistry = REGISTRY,
                  lookback_hours: float = 2.0) -> dict[str, Any] | None:
    """Set the gauges from the latest hour with traffic (read from the last `lookback_hours` of the store's
    clock, so the cost stays bounded); returns that hour, or None (gauges untouched) when there is none."""
    from datetime import timedelta

    from sqlalchemy import func, select

    from db_utils.models import RecommendationServed

    with engine.connect() as conn:
        latest = conn.execute(select(func.max(RecommendationServed.__table__.c.ts))).scalar()
    if latest is None:
        return None
    hours = availability_by_hour(read_served(engine, latest - timedelta(hours=lookback_hours)), limit_ms)
    last = hours[-1]
    ratio, requests = gauges(registry)
    ratio.set(last["availability"])
    requests.set(last["requests"])
    return last


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.availability", description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit-ms", type=float, default=DEFAULT_LIMIT_MS)
    parser.add_argument("--since", type=datetime.fromisoformat, help="first ts counted (ISO 8601)")
    parser.add_argument("--out", help="write the JSON report here")
    parser.add_argument("--serve-metrics", type=int, metavar="PORT", help="export the gauges, refreshed each minute")
    parser.add_argument("--database-url")
    args = parser.parse_args(argv)
    try:
        from db_utils.engine import get_engine

        engine = get_engine(args.database_url)
        if args.serve_metrics:
            from evaluation.online import serve_gauge

            return serve_gauge(engine, args.serve_metrics, refresh=lambda: update_gauges(engine, args.limit_ms))
        report = availability_report(engine, args.limit_ms, args.since)
    except ValueError as exc:
        print(f"availability: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(report, indent=1)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "hours"} | {"hours": len(report["hours"])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
