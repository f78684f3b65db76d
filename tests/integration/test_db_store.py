"""db_utils against real engines: SQLite and PostgreSQL (through the `store_engine` fixture)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import IntegrityError

from db_utils import queries
from db_utils.models import User, Watched
from tests.fixtures.stores import clear_store, store_state

T0 = datetime(2026, 1, 1, 12, 0, 0)


def t(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_migration_creates_every_table_and_index(store_engine: Engine) -> None:
    insp = inspect(store_engine)
    tables = set(insp.get_table_names())
    assert {
        "movies",
        "users",
        "watched",
        "ratings",
        "recommendations_served",
        "rejected_lines",
        "alembic_version",
    } <= tables
    assert "ix_watched_user_last_ts" in {ix["name"] for ix in insp.get_indexes("watched")}


def test_upgrading_a_0001_store_adds_keywords_and_keeps_its_rows(tmp_path) -> None:
    from db_utils import migrate
    from db_utils.engine import create

    url = f"sqlite:///{tmp_path}/old.db"
    migrate.upgrade(url, "0001")
    engine = create(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO movies (id, title, content_hash, embedded_hash) "
                          "VALUES ('heat+1995', 'Heat', 'h1', 'h1')"))
    assert "keywords" not in {c["name"] for c in inspect(engine).get_columns("movies")}
    migrate.upgrade(url)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT title, content_hash, embedded_hash, keywords FROM movies")).one()
    assert tuple(row) == ("Heat", "h1", "h1", None)
    engine.dispose()


def test_watches_merge_max_minute_and_first_last_time(store_engine: Engine) -> None:
    rows = [
        {"user_id": 7, "movie_id": "up+2009", "minute": 3, "ts": t(3)},
        {"user_id": 7, "movie_id": "up+2009", "minute": 1, "ts": t(1)},
    ]
    with store_engine.begin() as conn:
        queries.upsert_watches(conn, rows)
    with store_engine.begin() as conn:
        queries.upsert_watches(conn, [{"user_id": 7, "movie_id": "up+2009", "minute": 2, "ts": t(9)}])
    with store_engine.connect() as conn:
        w = Watched.__table__.c
        row = conn.execute(select(w.max_minute, w.first_ts, w.last_ts)).one()
        assert tuple(row) == (3, t(1), t(9))
        # unknown user and movie were registered, movie awaiting metadata
        assert conn.execute(text("SELECT id, title FROM movies")).one() == ("up+2009", None)
        u = User.__table__.c
        assert tuple(conn.execute(select(u.first_seen, u.last_seen).where(u.id == 7)).one()) == (t(1), t(9))


def test_latest_rating_wins_whatever_the_arrival_order(store_engine: Engine) -> None:
    late = {"user_id": 1, "movie_id": "heat+1995", "rating": 2, "ts": t(10)}
    early = {"user_id": 1, "movie_id": "heat+1995", "rating": 5, "ts": t(5)}
    with store_engine.begin() as conn:
        queries.upsert_ratings(conn, [late])
        queries.upsert_ratings(conn, [early])
    with store_engine.connect() as conn:
        assert conn.execute(text("SELECT rating FROM ratings")).scalar_one() == 2


def test_history_is_most_recent_first_with_ratings(store_engine: Engine) -> None:
    with store_engine.begin() as conn:
        queries.upsert_watches(
            conn,
            [
                {"user_id": 1, "movie_id": "a+2000", "minute": 1, "ts": t(1)},
                {"user_id": 1, "movie_id": "b+2001", "minute": 1, "ts": t(5)},
                {"user_id": 2, "movie_id": "c+2002", "minute": 1, "ts": t(9)},
            ],
        )
        queries.upsert_ratings(
            conn,
            [
                {"user_id": 1, "movie_id": "a+2000", "rating": 4, "ts": t(2)},
                {"user_id": 1, "movie_id": "d+2003", "rating": 1, "ts": t(7)},  # rated, never watched
            ],
        )
    with store_engine.connect() as conn:
        hist = queries.user_history(conn, 1)
        assert [(h.movie_id, h.rating) for h in hist] == [("d+2003", 1), ("b+2001", None), ("a+2000", 4)]
        assert [h.movie_id for h in queries.user_history(conn, 1, limit=2)] == ["d+2003", "b+2001"]
        assert queries.user_history(conn, 999) == []
    # the request path's DBAPI form of the same statement gives the same rows
    raw = store_engine.raw_connection()
    try:
        cursor = raw.cursor()
        assert queries.user_history_dbapi(cursor, store_engine.dialect, 1) == [
            ("d+2003", 1), ("b+2001", None), ("a+2000", 4)]
        assert queries.user_history_dbapi(cursor, store_engine.dialect, 1, limit=2) == [
            ("d+2003", 1), ("b+2001", None)]
        assert queries.user_history_dbapi(cursor, store_engine.dialect, 999) == []
        cursor.close()
    finally:
        raw.close()


def test_popular_movies_counts_distinct_viewers_since(store_engine: Engine) -> None:
    with store_engine.begin() as conn:
        queries.upsert_watches(
            conn,
            [
                {"user_id": u, "movie_id": m, "minute": 1, "ts": t(ts)}
                for u, m, ts in [(1, "a", 1), (2, "a", 2), (2, "a", 3), (3, "b", 50), (4, "b", 51), (5, "c", 52)]
            ],
        )
    with store_engine.connect() as conn:
        assert queries.popular_movies(conn, limit=2) == [("a", 2), ("b", 2)]
        assert queries.popular_movies(conn, since=t(10)) == [("b", 2), ("c", 1)]


def test_served_and_rejected_round_trip(store_engine: Engine) -> None:
    served = {
        "user_id": 3,
        "ts": t(1),
        "server": "17645-team06.x:8082",
        "status": 200,
        "latency_ms": 12.5,
        "movie_ids": ["a+2000", "b+2001"],
    }
    with store_engine.begin() as conn:
        queries.upsert_served(conn, [served, {**served, "movie_ids": ["other"]}])
        queries.insert_rejected(
            conn, [{"source": "file:x", "offset": 4, "raw": "x" * 5000, "reason": "too_long", "ts": t(1)}]
        )
    with store_engine.connect() as conn:
        assert conn.execute(text("SELECT movie_ids FROM recommendations_served")).scalar_one() == "a+2000,b+2001"
        raw, offset = conn.execute(text("SELECT raw, source_offset FROM rejected_lines")).one()
        assert len(raw) == 1024 and offset == 4


def test_upsert_movies_replaces_named_fields_only(store_engine: Engine) -> None:
    with store_engine.begin() as conn:
        queries.ensure_movies(conn, ["toy+story+1995"])
        queries.upsert_movies(
            conn,
            [
                {
                    "id": "toy+story+1995",
                    "title": "Toy Story",
                    "year": 1995,
                    "genres": "Animation|Children",
                    "content_hash": "h1",
                }
            ],
        )
        queries.upsert_movies(conn, [{"id": "toy+story+1995", "overview": "Toys come alive."}])
        queries.ensure_movies(conn, ["toy+story+1995"])  # must not wipe the metadata
    with store_engine.connect() as conn:
        row = conn.execute(text("SELECT title, year, overview, content_hash FROM movies")).one()
        assert tuple(row) == ("Toy Story", 1995, "Toys come alive.", "h1")


def test_rating_out_of_range_is_refused_and_transaction_rolls_back(store_engine: Engine) -> None:
    with pytest.raises(IntegrityError), store_engine.begin() as conn:
        queries.upsert_watches(conn, [{"user_id": 1, "movie_id": "a", "minute": 1, "ts": t(1)}])
        queries.upsert_ratings(conn, [{"user_id": 1, "movie_id": "a", "rating": 9, "ts": t(1)}])
    with store_engine.connect() as conn:  # nothing of the failed batch is left half-applied
        assert queries.count_rows(conn, "watched") == 0


# ----------------------------------------------------------------------- property: idempotent upserts

users = st.integers(0, 4)
movies = st.sampled_from(["a+1990", "b+1991", "c+1992"])
times = st.integers(0, 50).map(t)
watch = st.fixed_dictionaries({"user_id": users, "movie_id": movies, "minute": st.integers(0, 120), "ts": times})
rating = st.fixed_dictionaries({"user_id": users, "movie_id": movies, "rating": st.integers(1, 5), "ts": times})
served = st.fixed_dictionaries(
    {
        "user_id": users,
        "ts": times,
        "server": st.just("s"),
        "status": st.just(200),
        "latency_ms": st.just(3.0),
        "movie_ids": st.lists(movies, max_size=3),
    }
)
event = st.one_of(watch.map(lambda r: ("w", r)), rating.map(lambda r: ("r", r)), served.map(lambda r: ("s", r)))


def apply(engine: Engine, events: list[tuple[str, dict]]) -> None:
    with engine.begin() as conn:
        queries.upsert_watches(conn, [r for k, r in events if k == "w"])
        queries.upsert_ratings(conn, [r for k, r in events if k == "r"])
        queries.upsert_served(conn, [r for k, r in events if k == "s"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(event, max_size=30), cuts=st.lists(st.integers(0, 30), max_size=4))
def test_any_batch_once_twice_or_split_gives_the_same_state(store_engine: Engine, events, cuts) -> None:
    clear_store(store_engine)
    apply(store_engine, events)
    once = store_state(store_engine)
    apply(store_engine, events)
    assert store_state(store_engine) == once

    clear_store(store_engine)
    bounds = [0, *sorted(c for c in cuts if c <= len(events)), len(events)]
    for lo, hi in itertools.pairwise(bounds):
        apply(store_engine, events[lo:hi])
    assert store_state(store_engine) == once
