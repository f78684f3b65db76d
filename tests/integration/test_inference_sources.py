"""SqlHistorySource on real stores (SQLite and PostgreSQL): one held DBAPI connection per serving thread,
the same rows as `queries.user_history`, no transaction left open, and a fresh connection after a failure."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from db_utils import queries
from db_utils.engine import dispose_all
from inference.sources import SqlHistorySource


def t(minutes: int) -> datetime:
    return datetime(2024, 1, 1) + timedelta(minutes=minutes)


@pytest.fixture
def source(store_engine: Engine):
    with store_engine.begin() as conn:
        queries.upsert_watches(conn, [
            {"user_id": 1, "movie_id": "a+2000", "minute": 1, "ts": t(1)},
            {"user_id": 1, "movie_id": "b+2001", "minute": 3, "ts": t(5)},
        ])
        queries.upsert_ratings(conn, [{"user_id": 1, "movie_id": "a+2000", "rating": 5, "ts": t(2)},
                                      {"user_id": 1, "movie_id": "c+2002", "rating": 2, "ts": t(9)}])
    src = SqlHistorySource(store_engine.url.render_as_string(hide_password=False))
    yield src
    dispose_all()


def test_history_matches_the_connection_query_and_reuses_the_thread_connection(source, store_engine):
    with store_engine.connect() as conn:
        expected = [(h.movie_id, h.rating) for h in queries.user_history(conn, 1)]
    assert source.history(1, 50) == expected == [("c+2002", 2), ("b+2001", None), ("a+2000", 5)]
    held = source._local.held.raw
    assert source.history(1, 2) == expected[:2]
    assert source.history(12345, 50) == []
    assert source._local.held.raw is held  # one connection for this thread, kept

    other: list = []
    thread = threading.Thread(target=lambda: other.extend([source.history(1, 50), source._local.held.raw]))
    thread.start()
    thread.join(timeout=30)
    assert other[0] == expected and other[1] is not held  # each serving thread holds its own


def test_a_failed_read_drops_the_connection_and_the_next_read_recovers(source, store_engine):
    assert source.history(1, 50)
    with store_engine.begin() as conn:
        conn.execute(text("ALTER TABLE ratings RENAME TO ratings_away"))
    try:
        with pytest.raises(Exception, match="ratings"):
            source.history(1, 50)
        assert source._local.held is None
    finally:
        with store_engine.begin() as conn:
            conn.execute(text("ALTER TABLE ratings_away RENAME TO ratings"))
    assert source.history(1, 50) == [("c+2002", 2), ("b+2001", None), ("a+2000", 5)]


def test_no_transaction_stays_open_between_reads(source, store_engine):
    """An open read transaction would pin a snapshot: SQLite's WAL could not be checkpointed, PostgreSQL
    could not vacuum."""
    source.history(1, 50)
    driver = source._local.held.raw.driver_connection
    if store_engine.dialect.name == "sqlite":
        assert driver.in_transaction is False
        return
    pid = driver.info.backend_pid
    with store_engine.connect() as conn:
        state = conn.execute(text("SELECT state FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}).scalar()
    assert state == "idle"
