"""db_utils.queries.upsert_stream_batch (the parser's one-statement-per-table path) on SQLite and PostgreSQL:
same effect as the single-kind upserts, idempotent when replayed."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from db_utils import queries
from tests.fixtures.stores import clear_store, store_state

T0 = datetime(2026, 1, 1, 12, 0, 0)
WATCHES = [{"user_id": 1, "movie_id": "up+2009", "minute": m, "ts": T0 + timedelta(minutes=m)} for m in (0, 4, 2)]
RATINGS = [
    {"user_id": 1, "movie_id": "up+2009", "rating": 3, "ts": T0 + timedelta(minutes=9)},
    {"user_id": 1, "movie_id": "heat+1995", "rating": 5, "ts": T0},
]
SERVED = [{"user_id": 2, "ts": T0, "server": "s:1", "status": 200, "latency_ms": 4.5, "movie_ids": ["up+2009", "x"]}]


def _batch() -> dict:
    return {
        "users": [
            {"id": 1, "first_seen": T0, "last_seen": T0 + timedelta(minutes=9)},
            {"id": 2, "first_seen": T0, "last_seen": T0},
        ],
        "movie_ids": ["up+2009", "heat+1995"],
        "watched": [
            {"user_id": 1, "movie_id": "up+2009", "max_minute": 4, "first_ts": T0, "last_ts": T0 + timedelta(minutes=4)}
        ],
        "ratings": RATINGS,
        "served": SERVED,
    }


def test_stream_batch_equals_single_upserts_and_replays_change_nothing(store_engine: Engine) -> None:
    with store_engine.begin() as conn:
        queries.upsert_watches(conn, WATCHES)
        queries.upsert_ratings(conn, RATINGS)
        queries.upsert_served(conn, SERVED)
    expected = store_state(store_engine)
    clear_store(store_engine)
    for _ in range(2):
        with store_engine.begin() as conn:
            queries.upsert_stream_batch(conn, **_batch())
        assert store_state(store_engine) == expected


@pytest.mark.parametrize(
    ("table", "row"),
    [
        ("watched", {"max_minute": 10_001}),
        ("watched", {"max_minute": -1}),
        ("watched", {"first_ts": T0 + timedelta(minutes=5)}),  # after last_ts
        ("served", {"status": 1000}),
        ("served", {"latency_ms": -0.5}),
    ],
)
def test_store_constraints_refuse_malformed_rows(store_engine: Engine, table: str, row: dict) -> None:
    """Migration 0004: whatever the writer, a malformed stream row never reaches the tables."""
    batch = _batch()
    batch[table] = [{**batch[table][0], **row}]
    with pytest.raises(IntegrityError), store_engine.begin() as conn:
        queries.upsert_stream_batch(conn, **batch)
    with store_engine.connect() as conn:
        assert queries.count_rows(conn, "users") == 0  # the whole batch rolled back


def test_constraints_migration_keeps_rows_and_downgrades(tmp_path) -> None:
    """0004 on a store holding rows (SQLite copies the tables): rows kept; down to 0003 and back up."""
    from alembic import command

    from db_utils import migrate
    from db_utils.engine import create

    url = f"sqlite:///{tmp_path}/recsys.db"
    migrate.upgrade(url, "0003")
    engine = create(url)
    with engine.begin() as conn:
        queries.upsert_watches(conn, WATCHES)
        queries.upsert_served(conn, SERVED)
    before = store_state(engine)
    migrate.upgrade(url)
    assert store_state(engine) == before
    command.downgrade(migrate.alembic_config(url), "0003")
    migrate.upgrade(url)
    assert store_state(engine) == before
    with pytest.raises(IntegrityError), engine.begin() as conn:
        queries.upsert_watches(conn, [{**WATCHES[0], "minute": 10_001}])
    engine.dispose()
