"""Online evaluation against a hand-built store (db_utils upserts into a migrated SQLite file)."""

from __future__ import annotations

import threading
import urllib.request
from datetime import datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from db_utils import migrate, queries
from db_utils.engine import create
from evaluation import online
from evaluation.__main__ import main
from tests.fixtures.services import free_port, wait_for

T0 = datetime(2026, 3, 1, 10, 0, 0)


@pytest.fixture
def store_engine(tmp_path):
    """A migrated, empty SQLite store (the PostgreSQL path of the same queries is tested by db_utils)."""
    url = f"sqlite:///{tmp_path}/recsys.db"
    migrate.upgrade(url)
    engine = create(url)
    yield engine
    engine.dispose()


def build_store(engine: Engine) -> None:
    """Five served lists on two days; by hand:
    u1 at T0 [a, b]: watches b 2 h later, rates it 4            -> converted, rating 4
    u2 at T0 [c, d]: watches c 30 h later (outside 24 h)         -> not converted
    u3 at T0 [e]: had started e before T0                         -> not converted
    u4 at T0+1d [f, g]: watches g 1 h later, unrated; status 200  -> converted, no rating
    u5 at T0+1d: status 500 with no ids                           -> failed, not counted
    u6 at T0+3d [a]: the store's last activity is T0+3d+1h        -> pending, not counted
    """
    served = [
        (1, T0, 200, ["a", "b"]), (2, T0, 200, ["c", "d"]), (3, T0, 200, ["e"]),
        (4, T0 + timedelta(days=1), 200, ["f", "g"]), (5, T0 + timedelta(days=1), 500, []),
        (6, T0 + timedelta(days=3), 200, ["a"]),
    ]
    watches = [
        (1, "b", T0 + timedelta(hours=2)), (2, "c", T0 + timedelta(hours=30)),
        (3, "e", T0 - timedelta(hours=1)), (3, "e", T0 + timedelta(hours=1)),
        (4, "g", T0 + timedelta(days=1, hours=1)), (6, "z", T0 + timedelta(days=3, hours=1)),
    ]
    with engine.begin() as conn:
        queries.upsert_served(conn, [{"user_id": u, "ts": ts, "server": "h:8082", "status": st, "latency_ms": 5.0,
                                      "movie_ids": ids} for u, ts, st, ids in served])
        queries.upsert_watches(conn, [{"user_id": u, "movie_id": m, "minute": 0, "ts": ts} for u, m, ts in watches])
        queries.upsert_ratings(conn, [{"user_id": 1, "movie_id": "b", "rating": 4, "ts": T0 + timedelta(hours=3)},
                                      {"user_id": 2, "movie_id": "c", "rating": 1, "ts": T0 + timedelta(hours=31)}])


def test_gauge_looks_back_a_bounded_time(store_engine: Engine) -> None:
    build_store(store_engine)  # last activity T0+3d+1h
    registry = CollectorRegistry()
    # 60 h back reaches T0+13h: u4 (converted) and u5 (failed) count, the T0 lists do not
    assert online.update_gauge(store_engine, registry=registry, lookback_hours=60) == 1.0
    # 26 h back only u6 is left, still pending: nothing to judge yet
    assert online.update_gauge(store_engine, registry=registry, lookback_hours=26) == 0.0


def test_conversion_report_by_hand(store_engine: Engine) -> None:
    build_store(store_engine)
    report = online.conversion_report(store_engine, window_hours=24)
    assert (report["served"], report["converted"], report["pending"], report["failed"]) == (4, 2, 1, 1)
    assert report["online_conversion_rate"] == 0.5
    assert report["mean_rating"] == 4.0 and report["rated_conversions"] == 1
    assert report["by_day"] == {
        "2026-03-01": {"served": 3, "converted": 1, "conversion_rate": pytest.approx(1 / 3), "mean_rating": 4.0,
                       "rated": 1},
        "2026-03-02": {"served": 1, "converted": 1, "conversion_rate": 1.0, "mean_rating": None, "rated": 0},
    }
    wider = online.conversion_report(store_engine, window_hours=48)  # u2's watch at 30 h now counts
    assert wider["converted"] == 3 and wider["mean_rating"] == pytest.approx(2.5)


def test_snapshots_by_hand(store_engine: Engine) -> None:
    build_store(store_engine)
    report = online.snapshots_report(store_engine, T0 + timedelta(minutes=1), T0 + timedelta(days=2))
    # users served by the first time: 1, 2, 3; new watches after it: u1 b, u2 c (u3's e started before)
    assert report["users"] == 3 and report["users_with_new_watches"] == 2
    assert report["converted"] == 2 and report["conversion_rate"] == pytest.approx(2 / 3)
    assert report["share_of_new_watches_recommended"] == 1.0
    with pytest.raises(ValueError, match="after the first"):
        online.snapshots_report(store_engine, T0, T0)


def test_empty_store_gives_zero_not_an_error(store_engine: Engine) -> None:
    report = online.conversion_report(store_engine)
    assert report["served"] == 0 and report["online_conversion_rate"] == 0.0 and report["mean_rating"] is None


def test_gauge_is_set_and_served(store_engine: Engine) -> None:
    build_store(store_engine)
    registry = CollectorRegistry()
    assert online.update_gauge(store_engine, registry=registry) == 0.5
    assert registry.get_sample_value("online_conversion_rate") == 0.5
    port, stop = free_port(), threading.Event()
    thread = threading.Thread(target=online.serve_gauge, args=(store_engine, port),
                              kwargs={"refresh_seconds": 0.2, "max_seconds": 30, "stop": stop, "addr": "127.0.0.1"})
    thread.start()
    try:
        def exported() -> bool:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            return "online_conversion_rate 0.5" in body
        wait_for(exported, timeout=20, what="the gauge")
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_cli_writes_the_report_and_rejects_bad_input(store_engine: Engine, tmp_path, capsys) -> None:
    build_store(store_engine)
    url = store_engine.url.render_as_string(hide_password=False)
    out = tmp_path / "online.json"
    assert main(["online", "--database-url", url, "--out", str(out)]) == 0
    assert '"online_conversion_rate": 0.5' in out.read_text()
    assert main(["online", "--database-url", url, "--out", str(out), "--window-hours", "0"]) == 1
    assert "window must be a positive" in capsys.readouterr().err
    assert main(["online", "--database-url", url, "--out", str(out), "--mode", "snapshots"]) == 1
