"""SqlHistorySource on real stores (SQLite and PostgreSQL): one held DBAPI connection per serving thread,
the same rows as `queries.user_history` and every id of the history in one round trip, no transaction
left open, and a fresh connection after a failure."""

from __future__ import annotations

import dataclasses
import random
import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from db_utils import queries
from db_utils.engine import dispose_all
from inference.sources import SqlHistorySource


def t(minutes: int) -> datetime:
    return datetime(2024, 1, 1) + timedelta(minutes=minutes)


def stored_histories(engine: Engine, rng: random.Random, movies: int, users: int, most: int,
                     watched_below: float, rated_above: float, watch_minutes: int,
                     rate_minutes: int) -> dict[int, list[tuple[str, int | None]]]:
    """Random histories written to the store; returns each user's whole history (plus one unknown user),
    newest first, by `queries.user_history`. Users 1..`users` get 0..`most` of `movies` movies: a movie is
    watched when a draw is below `watched_below`, rated when above `rated_above` (both, or rated only), at
    one of few minutes (so ties are common)."""
    catalog = [f"movie+{i}+2000" for i in range(movies)]
    watches, ratings = [], []
    for user in range(1, users + 1):
        for movie in rng.sample(catalog, rng.randint(0, most)):
            kind = rng.random()
            if kind < watched_below:
                watches.append({"user_id": user, "movie_id": movie, "minute": 1,
                                "ts": t(rng.randint(0, watch_minutes))})
            if kind > rated_above:
                ratings.append({"user_id": user, "movie_id": movie, "rating": rng.randint(1, 5),
                                "ts": t(rng.randint(0, rate_minutes))})
    with engine.begin() as conn:
        queries.upsert_watches(conn, watches)
        queries.upsert_ratings(conn, ratings)
        return {u: [(h.movie_id, h.rating) for h in queries.user_history(conn, u, limit=10_000)]
                for u in range(1, users + 2)}


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


SEEN = frozenset({"a+2000", "b+2001", "c+2002"})


def test_history_matches_the_connection_query_and_reuses_the_thread_connection(source, store_engine):
    with store_engine.connect() as conn:
        expected = [(h.movie_id, h.rating) for h in queries.user_history(conn, 1)]
    assert source.recent_and_seen(1, 50, 1000) == (expected, SEEN)
    assert expected == [("c+2002", 2), ("b+2001", None), ("a+2000", 5)]
    held = source._local.held.raw
    assert source.recent_and_seen(1, 2, 1000) == (expected[:2], SEEN)  # the excluded ids are all of them
    assert source.recent_and_seen(12345, 50, 1000) == ([], frozenset())
    assert source._local.held.raw is held  # one connection for this thread, kept

    other: list = []
    thread = threading.Thread(target=lambda: other.extend([source.recent_and_seen(1, 50, 1000),
                                                           source._local.held.raw]))
    thread.start()
    thread.join(timeout=30)
    assert other[0] == (expected, SEEN) and other[1] is not held  # each serving thread holds its own


def test_a_long_history_reads_its_newest_part_and_every_id_in_one_statement(store_engine):
    """700 watched movies, 250 of them rated (some later than the watch), 100 more only rated: the newest
    50 with their ratings in order, and all 800 ids, from a single execute on the held cursor."""
    movies = [f"movie+{i}+2000" for i in range(800)]
    with store_engine.begin() as conn:
        queries.upsert_watches(conn, [{"user_id": 7, "movie_id": movies[i], "minute": 1, "ts": t(2 * i)}
                                      for i in range(700)])
        queries.upsert_ratings(conn, [{"user_id": 7, "movie_id": movies[i], "rating": 1 + i % 5,
                                       "ts": t(2 * i + (3 if i % 2 else -1))} for i in range(450, 800)])
        queries.upsert_watches(conn, [{"user_id": 8, "movie_id": movies[0], "minute": 1, "ts": t(0)}])
    with store_engine.connect() as conn:
        expected = [(h.movie_id, h.rating) for h in queries.user_history(conn, 7, limit=50)]
    src = SqlHistorySource(store_engine.url.render_as_string(hide_password=False))
    try:
        recent, seen = src.recent_and_seen(7, 50, 30_000)
        assert recent == expected and len(recent) == 50
        assert seen == frozenset(movies)
        calls: list[str] = []
        src._local.held = dataclasses.replace(src._local.held, cursor=_Counting(src._local.held.cursor, calls))
        assert src.recent_and_seen(7, 50, 30_000) == (recent, seen)
        assert len(calls) == 1
        # a bound below the history's size reads at most that many ids of each table, the first by id
        assert src.recent_and_seen(7, 50, 300)[1] == frozenset(sorted(movies[:700])[:300] + sorted(movies[450:])[:300])
        assert src.recent_and_seen(8, 50, 30_000) == ([("movie+0+2000", None)], frozenset({"movie+0+2000"}))
    finally:
        dispose_all()


class _Counting:
    """A DBAPI cursor that records each statement it executes."""

    def __init__(self, cursor, calls: list[str]) -> None:
        self._cursor, self._calls = cursor, calls

    def execute(self, sql, *args, **kwargs):
        self._calls.append(sql)
        return self._cursor.execute(sql, *args, **kwargs)

    def fetchall(self):
        return self._cursor.fetchall()


def test_a_failed_read_drops_the_connection_and_the_next_read_recovers(source, store_engine):
    assert source.recent_and_seen(1, 50, 1000)[0]
    with store_engine.begin() as conn:
        conn.execute(text("ALTER TABLE ratings RENAME TO ratings_away"))
    try:
        with pytest.raises(Exception, match="ratings"):
            source.recent_and_seen(1, 50, 1000)
        assert source._local.held is None
    finally:
        with store_engine.begin() as conn:
            conn.execute(text("ALTER TABLE ratings_away RENAME TO ratings"))
    assert source.recent_and_seen(1, 50, 1000) == ([("c+2002", 2), ("b+2001", None), ("a+2000", 5)], SEEN)


def test_no_transaction_stays_open_between_reads(source, store_engine):
    """An open read transaction would pin a snapshot: SQLite's WAL could not be checkpointed, PostgreSQL
    could not vacuum."""
    source.recent_and_seen(1, 50, 1000)
    driver = source._local.held.raw.driver_connection
    if store_engine.dialect.name == "sqlite":
        assert driver.in_transaction is False
        return
    pid = driver.info.backend_pid
    with store_engine.connect() as conn:
        state = conn.execute(text("SELECT state FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}).scalar()
    assert state == "idle"


def test_the_newest_rows_equal_the_whole_ordered_history_on_random_histories(store_engine):
    """Users of 0 to 200 movies, watched, rated or both, on few distinct times (so ties are common): the
    bounded read of the newest 10 equals the first 10 of the whole history sorted, for every user."""
    expected = stored_histories(store_engine, random.Random(17), movies=300, users=40, most=200, watched_below=0.8,
                                      rated_above=0.5, watch_minutes=30, rate_minutes=30)
    src = SqlHistorySource(store_engine.url.render_as_string(hide_password=False))
    try:
        for user, whole in expected.items():
            assert src.recent_and_seen(user, 10, 30_000) == (whole[:10], frozenset(m for m, _ in whole)), user
    finally:
        dispose_all()


def test_both_forms_of_the_statement_give_the_whole_ordered_history_on_random_histories(store_engine):
    """The join form (SQLite's) and the primary-key lookup form (the servers') on this dialect: the newest
    rows with their ratings, ties by id, and every id, for users watching, rating or both, some rated
    movies unwatched and rated after the newest watches."""
    expected = stored_histories(store_engine, random.Random(23), movies=120, users=30, most=90, watched_below=0.7,
                                      rated_above=0.4, watch_minutes=20, rate_minutes=25)
    raw = store_engine.raw_connection()
    try:
        cursor = raw.cursor()
        for lookups in (False, True):
            for user, whole in expected.items():
                for recent in (1, 5, 20):
                    rows, seen = queries.recent_and_seen_dbapi(cursor, store_engine.dialect, user, recent, 30_000,
                                                               lookups=lookups)
                    assert ([tuple(r) for r in rows], set(filter(None, seen.split(",")))) == (
                        whole[:recent], {m for m, _ in whole}), (lookups, user, recent)
    finally:
        raw.close()


@pytest.mark.parametrize("store_engine", ["postgresql"], indirect=True)  # a PostgreSQL planner question
def test_the_servers_generic_plan_looks_each_row_up_instead_of_filtering_the_whole_history(store_engine):
    """PostgreSQL plans the prepared statement once for any user (a generic plan, estimated on the average
    history). Its join of the newest watches to their ratings became a filter over the user's whole
    ratings for every row (28 to 433 ms at 2,391 movies on the demo store): with per-row primary-key lookups no
    row of the plan may join by filtering."""
    with store_engine.begin() as conn:
        queries.upsert_watches(conn, [{"user_id": u, "movie_id": f"movie+{m}+2000", "minute": 1, "ts": t(m)}
                                      for u in range(1, 200) for m in range(u % 7, 60)])
        queries.upsert_ratings(conn, [{"user_id": u, "movie_id": f"movie+{m}+2000", "rating": 3, "ts": t(m)}
                                      for u in range(1, 200) for m in range(0, 60, 2)])
        conn.exec_driver_sql("ANALYZE watched")
        conn.exec_driver_sql("ANALYZE ratings")
    sql = str(queries.recent_and_seen_statement(50, 30_000, True).compile(dialect=store_engine.dialect))
    with store_engine.connect() as conn:
        conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        conn.exec_driver_sql("PREPARE history(int) AS " + sql.replace("%(user_id)s", "$1"))
        plan = "\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN EXECUTE history(1)"))
        conn.exec_driver_sql("DEALLOCATE history")
        conn.rollback()
    assert "Join Filter" not in plan and "Hash Join" not in plan and "Anti Join" not in plan, plan
    assert "ratings_pkey" in plan and "watched_pkey" in plan, plan
