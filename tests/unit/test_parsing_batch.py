"""Batching: aggregated rows, applied by db_utils' upserts, equal the events one by one; rejects are capped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine

from data_parsing.batch import MAX_RAW_CHARS, RejectSampler, aggregate, rejected_row
from data_parsing.config import ParserSettings
from data_parsing.ingest import write_batch
from data_parsing.parser import RateEvent, RecommendationEvent, Rejected, WatchEvent
from db_utils import queries
from db_utils.models import Base

T0 = datetime(2026, 1, 1)


def _state(engine) -> dict:
    with engine.connect() as conn:
        state = {t.name: sorted(tuple(r) for r in conn.execute(t.select())) for t in Base.metadata.sorted_tables}
    engine.dispose()
    return state


def _fresh_engine():
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    return engine


def _store_after(*batches: list) -> dict:
    """Each batch aggregated and applied by the parser's writer, one transaction each (in-memory SQLite)."""
    engine = _fresh_engine()
    for batch in batches:
        with engine.begin() as conn:
            write_batch(conn, aggregate(batch))
    return _state(engine)


def _reference(stream: list) -> dict:
    """Every event applied on its own through db_utils' single-kind upserts (the contract's semantics)."""
    engine = _fresh_engine()
    with engine.begin() as conn:
        for e in stream:
            if isinstance(e, WatchEvent):
                queries.upsert_watches(
                    conn, [{"user_id": e.user_id, "movie_id": e.movie_id, "minute": e.minute, "ts": e.ts}]
                )
            elif isinstance(e, RateEvent):
                queries.upsert_ratings(
                    conn, [{"user_id": e.user_id, "movie_id": e.movie_id, "rating": e.rating, "ts": e.ts}]
                )
            else:
                row = {
                    "user_id": e.user_id,
                    "ts": e.ts,
                    "server": e.server,
                    "status": e.status,
                    "latency_ms": e.latency_ms,
                    "movie_ids": list(e.movie_ids),
                }
                queries.upsert_served(conn, [row])
    return _state(engine)


users = st.integers(0, 5)
movies = st.sampled_from(["a+1999", "b", "c+2"])
times = st.integers(0, 50).map(lambda m: T0 + timedelta(minutes=m))
events = st.one_of(
    st.builds(WatchEvent, times, users, movies, st.integers(0, 100)),
    st.builds(RateEvent, times, users, movies, st.integers(1, 5)),
    st.builds(
        RecommendationEvent,
        times,
        users,
        st.sampled_from(["s:1", "s:2"]),
        st.sampled_from([200, 500]),
        st.sampled_from([("a+1999", "b"), ()]),
        st.just(3.0),
    ),
)


@settings(max_examples=25, deadline=None)
@given(st.lists(events, max_size=40))
def test_aggregate_equals_events_one_by_one(stream: list) -> None:
    """The pre-aggregated batch leaves the store exactly as db_utils' upserts of each event one by one."""
    assert _store_after(stream) == _reference(stream)


@settings(max_examples=25, deadline=None)
@given(st.lists(events, max_size=40), st.integers(1, 40))
def test_aggregate_is_indifferent_to_batch_boundaries_and_replays(stream: list, cut: int) -> None:
    """Split anywhere, or with the first part applied twice (a crash before the commit): same store."""
    whole = _reference(stream)
    assert whole == _store_after(stream)
    assert whole == _store_after(stream[:cut], stream[cut:])
    assert whole == _store_after(stream[:cut], stream[:cut], stream[cut:])


def test_aggregate_writes_each_key_once_and_counts_kinds() -> None:
    stream = [
        WatchEvent(T0, 1, "m", 1),
        WatchEvent(T0 + timedelta(minutes=2), 1, "m", 2),
        WatchEvent(T0 + timedelta(minutes=1), 1, "m", 5),
        RateEvent(T0, 1, "m", 3),
        RateEvent(T0, 1, "m", 4),
        RecommendationEvent(T0, 2, "s", 200, ("m",), 1.5),
        RecommendationEvent(T0, 2, "s", 500, (), 9.0),
    ]
    rows = aggregate(stream)
    assert rows.watched == [
        {"user_id": 1, "movie_id": "m", "max_minute": 5, "first_ts": T0, "last_ts": T0 + timedelta(minutes=2)}
    ]
    assert rows.ratings == [{"user_id": 1, "movie_id": "m", "rating": 4, "ts": T0}]
    assert rows.served == [
        {"user_id": 2, "ts": T0, "server": "s", "status": 200, "latency_ms": 1.5, "movie_ids": ["m"]}
    ]
    assert rows.users == [
        {"id": 1, "first_seen": T0, "last_seen": T0 + timedelta(minutes=2)},
        {"id": 2, "first_seen": T0, "last_seen": T0},
    ]
    assert rows.movie_ids == ["m"]
    assert rows.counts == {"watch": 3, "rate": 2, "recommendation": 2}


def test_reject_sampler_caps_per_reason_per_hour() -> None:
    sampler = RejectSampler(cap=2)
    hour = 1_800_000_000.0 - 1_800_000_000.0 % 3600
    assert [sampler.admit("bad_time", hour + i) for i in range(4)] == [True, True, False, False]
    assert sampler.admit("bad_user", hour + 5)
    assert sampler.admit("bad_time", hour + 3600)


def test_rejected_row_is_capped_and_storable() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    row = rejected_row(Rejected("control_chars", "a\x00b" + "z" * 5000), "file:x", 7, now)
    assert row["raw"].startswith("a\\x00b")
    assert len(row["raw"]) == MAX_RAW_CHARS
    assert row == {"source": "file:x", "offset": 7, "raw": row["raw"], "reason": "control_chars", "ts": now}


def test_settings_from_env() -> None:
    settings = ParserSettings.from_env({"PARSER_METRICS_PORT": "9999", "KAFKA_GROUP_ID": "g", "PARSER_BATCH_SIZE": "7"})
    assert (settings.metrics_port, settings.kafka_group_id, settings.batch_size) == (9999, "g", 7)
    assert ParserSettings.from_env({}) == ParserSettings()
    with pytest.raises(ValueError, match="PARSER_BATCH_SIZE"):
        ParserSettings.from_env({"PARSER_BATCH_SIZE": "many"})


maybe_times = st.one_of(st.none(), times)
user_rows = st.fixed_dictionaries({
    "id": st.integers(0, 3), "first_seen": maybe_times, "last_seen": maybe_times,
    "age": st.one_of(st.none(), st.integers(10, 90)), "occupation": st.sampled_from([None, "x", "y"]),
    "gender": st.sampled_from([None, "F", "M"]),
})


@settings(max_examples=40, deadline=None)
@given(st.lists(user_rows, max_size=12))
def test_spec_fold_equals_sql_row_by_row(rows: list) -> None:
    """The Python fold compiled from an UpsertSpec (NULLs, min, max, coalesce) equals the SQL upsert built
    from the same spec, applied one row at a time."""
    folded, one_by_one = _fresh_engine(), _fresh_engine()
    with folded.begin() as conn:
        queries.upsert_users(conn, rows)  # aggregate() first, then one statement
    with one_by_one.begin() as conn:
        for row in rows:
            queries._execute_upsert(conn, queries.USERS, [row])
    assert _state(folded) == _state(one_by_one)


def test_folder_is_compiled_once_per_spec_and_columns() -> None:
    columns = ("max_minute", "first_ts", "last_ts")
    assert queries.folder(queries.WATCHED, columns) is queries.folder(queries.WATCHED, columns)
    assert queries.folder(queries.WATCHED, columns[::-1]) is not queries.folder(queries.WATCHED, columns)
    acc: dict = {}
    fold = queries.folder(queries.WATCHED, columns[::-1])  # (last_ts, first_ts, max_minute)
    fold(acc, "k", 5, 5, 1)
    fold(acc, "k", 3, 3, 9)
    assert acc == {"k": [5, 3, 9]}


@given(st.one_of(st.datetimes(), st.datetimes(timezones=st.just(UTC)), st.none()))
def test_fast_sqlite_datetime_writes_what_sqlalchemy_writes(value) -> None:
    """The writer's fast DateTime formatting is SQLAlchemy's own SQLite text, byte for byte (MIN/MAX in SQL
    compare those strings, so one differing character would break the merge rules)."""
    from sqlalchemy import DateTime
    from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

    dialect = SQLiteDialect_pysqlite()
    reference = DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert queries._sqlite_datetime(reference)(value) == reference(value)


def test_quality_and_rejected_settings_from_env() -> None:
    settings = ParserSettings.from_env({"PARSER_QUALITY_WINDOW_SECONDS": "60", "PARSER_QUALITY_MIN_COUNT": "10",
                                        "PARSER_REJECTED_MAX_ROWS": "5"})
    assert (settings.quality_window_seconds, settings.quality_min_count, settings.rejected_max_rows) == (60, 10, 5)
    bad = r"PARSER_QUALITY_WINDOW_SECONDS='0' is not valid: expected a number >= 0\.001"
    with pytest.raises(ValueError, match=bad):
        ParserSettings.from_env({"PARSER_QUALITY_WINDOW_SECONDS": "0"})
