"""evaluation.availability: per-hour share of 200s under the latency limit, the store reader and gauges."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from db_utils import migrate
from db_utils.engine import create
from db_utils.models import RecommendationServed, User
from evaluation.availability import DEFAULT_LIMIT_MS, availability_by_hour, availability_report, main, update_gauges

T0 = datetime(2026, 1, 5, 10, 0, 0)


def row(minutes: float, status: int = 200, latency: float = 50.0) -> dict:
    return {"ts": T0 + timedelta(minutes=minutes), "status": status, "latency_ms": latency}


def test_hours_count_only_200s_under_the_limit() -> None:
    rows = [row(1), row(2, status=500), row(3, latency=800.0), row(4, latency=799.9), row(5, status=0),
            row(61), row(62)]
    hours = availability_by_hour(rows)
    assert hours == [
        {"hour": "2026-01-05T10:00:00", "requests": 5, "good": 2, "availability": 0.4},
        {"hour": "2026-01-05T11:00:00", "requests": 2, "good": 2, "availability": 1.0},
    ]
    assert DEFAULT_LIMIT_MS == 800.0


def test_limit_is_a_parameter_and_hours_without_traffic_are_absent() -> None:
    rows = [row(0, latency=300.0), row(180, latency=100.0)]
    assert [h["good"] for h in availability_by_hour(rows, limit_ms=200.0)] == [0, 1]
    assert [h["hour"][11:13] for h in availability_by_hour(rows)] == ["10", "13"]
    assert availability_by_hour([]) == []


@pytest.mark.parametrize("limit", [0.0, -5.0, float("nan")])
def test_a_bad_limit_is_one_clear_sentence(limit: float) -> None:
    with pytest.raises(ValueError, match="latency limit must be a positive number"):
        availability_by_hour([row(0)], limit_ms=limit)


def _store(tmp_path: Path, rows: list[dict]):
    url = f"sqlite:///{tmp_path}/a.db"
    migrate.upgrade(url)
    engine = create(url)
    with engine.begin() as conn:
        conn.execute(User.__table__.insert(), [{"id": 1, "first_seen": T0, "last_seen": T0}])
        conn.execute(RecommendationServed.__table__.insert(), [
            {"user_id": 1, "ts": r["ts"], "server": "s", "status": r["status"], "latency_ms": r["latency_ms"],
             "movie_ids": "a,b"} for r in rows])
    return url, engine


def test_report_and_gauges_from_the_store(tmp_path: Path) -> None:
    rows = [row(1), row(2, status=503), row(70), row(71), row(72, latency=900.0), row(73)]
    url, engine = _store(tmp_path, rows)
    report = availability_report(engine)
    assert (report["requests"], report["good"], len(report["hours"])) == (6, 4, 2)
    registry = CollectorRegistry()
    latest = update_gauges(engine, registry=registry)
    assert latest is not None and latest["requests"] == 4
    assert registry.get_sample_value("online_availability_ratio") == 0.75
    assert registry.get_sample_value("online_availability_requests") == 4
    out = tmp_path / "r.json"
    assert main(["--database-url", url, "--out", str(out)]) == 0
    assert '"good": 4' in out.read_text()
    assert main(["--database-url", url, "--limit-ms", "0"]) == 1
