"""Pure batching: aggregated rows have the same effect as the events one by one; rejected lines are capped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from data_parsing.batch import MAX_RAW_CHARS, RejectSampler, aggregate, rejected_row
from data_parsing.config import ParserSettings
from data_parsing.parser import RateEvent, RecommendationEvent, Rejected, WatchEvent

T0 = datetime(2026, 1, 1)


def _merge(store: dict, rows) -> None:
    """A model of the contract's upsert semantics (max minute, first/last ts, latest rating, etc.)."""
    for r in rows.users:
        first, last = store.setdefault(("user", r["id"]), (r["first_seen"], r["last_seen"]))
        store[("user", r["id"])] = (min(first, r["first_seen"]), max(last, r["last_seen"]))
    for r in rows.watches + rows.watches_last:
        key = ("watch", r["user_id"], r["movie_id"])
        minute, first, last = store.get(key, (r["minute"], r["ts"], r["ts"]))
        store[key] = (max(minute, r["minute"]), min(first, r["ts"]), max(last, r["ts"]))
    for r in rows.ratings:
        key = ("rating", r["user_id"], r["movie_id"])
        if key not in store or r["ts"] >= store[key][1]:
            store[key] = (r["rating"], r["ts"])
    for r in rows.served:
        store[("served", r["user_id"], r["ts"])] = (r["server"], r["status"], r["latency_ms"], r["movie_ids"])


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
        st.just("s:1"),
        st.just(200),
        st.just(("a+1999", "b")),
        st.just(3.0),
    ),
)


@given(st.lists(events, max_size=60))
def test_aggregate_equals_events_one_by_one(stream: list) -> None:
    batched: dict = {}
    _merge(batched, aggregate(stream))
    single: dict = {}
    for event in stream:
        _merge(single, aggregate([event]))
    assert batched == single


@given(st.lists(events, max_size=60), st.integers(1, 60))
def test_aggregate_is_indifferent_to_batch_boundaries(stream: list, cut: int) -> None:
    whole: dict = {}
    _merge(whole, aggregate(stream))
    split: dict = {}
    _merge(split, aggregate(stream[:cut]))
    _merge(split, aggregate(stream[cut:]))
    assert whole == split


def test_aggregate_writes_each_key_once_and_counts_kinds() -> None:
    stream = [
        WatchEvent(T0, 1, "m", 1),
        WatchEvent(T0 + timedelta(minutes=2), 1, "m", 2),
        WatchEvent(T0 + timedelta(minutes=1), 1, "m", 5),
        RateEvent(T0, 1, "m", 3),
        RateEvent(T0, 1, "m", 4),
        RecommendationEvent(T0, 2, "s", 200, ("m",), 1.5),
    ]
    rows = aggregate(stream)
    assert rows.watches == [{"user_id": 1, "movie_id": "m", "minute": 5, "ts": T0}]
    assert rows.watches_last == [
        {"user_id": 1, "movie_id": "m", "minute": 5, "ts": T0 + timedelta(minutes=2)}
    ]
    assert rows.ratings == [{"user_id": 1, "movie_id": "m", "rating": 4, "ts": T0}]
    assert rows.served == [
        {"user_id": 2, "ts": T0, "server": "s", "status": 200, "latency_ms": 1.5, "movie_ids": ["m"]}
    ]
    assert sorted(r["id"] for r in rows.users) == [1, 2]
    assert rows.counts == {"watch": 3, "rate": 2, "recommendation": 1}


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
    settings = ParserSettings.from_env(
        {"PARSER_METRICS_PORT": "9999", "KAFKA_GROUP_ID": "g", "PARSER_BATCH_SIZE": "7"}
    )
    assert (settings.metrics_port, settings.kafka_group_id, settings.batch_size) == (9999, "g", 7)
    assert ParserSettings.from_env({}) == ParserSettings()
    with pytest.raises(ValueError, match="PARSER_BATCH_SIZE"):
        ParserSettings.from_env({"PARSER_BATCH_SIZE": "many"})
