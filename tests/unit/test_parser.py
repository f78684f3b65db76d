"""The pure log-line parser: every line kind, every rejection reason, and properties over arbitrary input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_parsing.parser import (
    MAX_LINE_BYTES,
    REASONS,
    SLUG_ALPHABET,
    RateEvent,
    RecommendationEvent,
    Rejected,
    WatchEvent,
    parse,
)

T = "2026-11-25T16:04:15"
TS = datetime(2026, 11, 25, 16, 4, 15)


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (f"{T},123,GET /data/m/the+lion+king+1994/12.mpg", WatchEvent(TS, 123, "the+lion+king+1994", 12)),
        (f"{T},0,GET /data/m/a/0.mpg\n", WatchEvent(TS, 0, "a", 0)),
        (f"{T},1000000000,GET /data/m/x/10000.mpg\r\n", WatchEvent(TS, 10**9, "x", 10_000)),
        ("2026-11-25T16:04,5,GET /data/m/m/1.mpg", WatchEvent(datetime(2026, 11, 25, 16, 4), 5, "m", 1)),
        (
            "2026-11-25T16:04:15.25,5,GET /data/m/m/1.mpg",
            WatchEvent(datetime(2026, 11, 25, 16, 4, 15, 250_000), 5, "m", 1),
        ),
        (
            f"{T},7,GET /data/m/don't+look+up:+the+(re)make!+&+more?+2.0_b-1/3.mpg",
            WatchEvent(TS, 7, "don't+look+up:+the+(re)make!+&+more?+2.0_b-1", 3),
        ),
        (f"{T},9,GET /rate/toy+story+1995=4", RateEvent(TS, 9, "toy+story+1995", 4)),
        (f"{T},9,GET /rate/toy+story+1995=1", RateEvent(TS, 9, "toy+story+1995", 1)),
        (
            f"{T},77,recommendation request team01.example.org:8082, status 200, "
            "result: a+1, b+2, c, 123.5 ms",
            RecommendationEvent(TS, 77, "team01.example.org:8082", 200, ("a+1", "b+2", "c"), 123.5),
        ),
        (
            f"{T},77,recommendation request 127.0.0.1:8082, status 0, result: , 10000 ms",
            RecommendationEvent(TS, 77, "127.0.0.1:8082", 0, (), 10000.0),
        ),
        (b"2026-11-25T16:04:15,1,GET /rate/m=5\n", RateEvent(TS, 1, "m", 5)),
    ],
)
def test_accepts_each_line_kind(line: str | bytes, event: object) -> None:
    assert parse(line) == event


NANO = datetime(2023, 10, 27, 10, 0, 0, 122692)


@pytest.mark.parametrize(
    ("stamp", "ts"),
    [
        ("2023-10-27T10:00:00", datetime(2023, 10, 27, 10, 0, 0)),
        ("2023-10-27T10:00", datetime(2023, 10, 27, 10, 0)),
        ("2023-10-27T10:00:00.1", datetime(2023, 10, 27, 10, 0, 0, 100_000)),
        ("2023-10-27T10:00:00.122", datetime(2023, 10, 27, 10, 0, 0, 122_000)),
        ("2023-10-27T10:00:00.122692", NANO),
        ("2023-10-27T10:00:00.122692921", NANO),  # nanoseconds: truncated, never rounded
        ("2023-10-27T10:00:00.122692999999", NANO),
        ("2023-10-27T10:00:00.122692921Z", NANO),
        ("2023-10-27T10:00:00Z", datetime(2023, 10, 27, 10, 0, 0)),
        ("2023-10-27T10:00Z", datetime(2023, 10, 27, 10, 0)),
        ("2023-10-27T12:00:00.122692921+02:00", NANO),
        ("2023-10-27T15:30:00.122692+05:30", NANO),
        ("2023-10-27T02:00:00.122692-0800", NANO),
        ("2023-10-27T11:00:00.122692921+01", NANO),
        ("2023-10-27T00:30:00-09:30", datetime(2023, 10, 27, 10, 0)),
        ("2023-10-26T23:00:00-11:00", datetime(2023, 10, 27, 10, 0)),  # the offset crosses midnight
        ("2024-01-01T00:30:00+01:00", datetime(2023, 12, 31, 23, 30)),  # and the year
    ],
)
@pytest.mark.parametrize("as_bytes", [False, True])
def test_every_time_precision_and_zone_is_kept_as_utc(stamp: str, ts: datetime, as_bytes: bool) -> None:
    for line in (f"{stamp},12,GET /data/m/pulp+fiction+1994/3.mpg", f"{stamp},12,GET /rate/pulp+fiction+1994=4"):
        result = parse(line.encode() if as_bytes else line)
        assert not isinstance(result, Rejected), result
        assert result.ts == ts


@pytest.mark.parametrize(
    "movie",
    ["monsters_+inc.+2001", "the+hunger+games+mockingjay+-+part+1+2014", "wall-e+2008", "8+1+2+1963",
     "amelie+2001", "star+wars+episode+iv+-+a+new+hope+1977", "se7en+1995", "m+a+s+h+1970", "x+2"],
)
@pytest.mark.parametrize("ending", ["", "\n", "\r\n", "\r"])
def test_simulator_ids_and_line_endings_are_kept(movie: str, ending: str) -> None:
    watch = f"{T},5,GET /data/m/{movie}/7.mpg{ending}"
    rate = f"{T},5,GET /rate/{movie}=2{ending}"
    reco = f"{T},5,recommendation request h:1, status 200, result: {movie}, {movie}, 3 ms{ending}"
    for line in (watch, watch.encode()):
        assert parse(line) == WatchEvent(TS, 5, movie, 7)
    for line in (rate, rate.encode()):
        assert parse(line) == RateEvent(TS, 5, movie, 2)
    assert parse(reco) == RecommendationEvent(TS, 5, "h:1", 200, (movie, movie), 3.0)


WATCH = f"{T},1,GET /data/m/movie+2000/3.mpg"
RATE = f"{T},1,GET /rate/movie+2000=3"
RECO = f"{T},1,recommendation request host:8082, status 200, result: a, b, 12 ms"


REJECTIONS = [
    ("x" * (MAX_LINE_BYTES + 1), "too_long"),
    ("é" * (MAX_LINE_BYTES // 2 + 1), "too_long"),
    (b"y" * (MAX_LINE_BYTES + 1) + b"\n", "too_long"),
    (WATCH.encode() + b"\xff", "invalid_utf8"),
    (b"\xc3\x28", "invalid_utf8"),
    ("\ud800" + WATCH, "invalid_utf8"),
    (WATCH.replace("movie", "mo\x00vie"), "control_chars"),
    (WATCH + "\t", "control_chars"),
    ((WATCH + "\r\r").encode(), "control_chars"),
    ((WATCH + "\n\n").encode(), "control_chars"),
    ((WATCH + "\n\r").encode(), "control_chars"),
    (WATCH.replace(T, "2026-02-30T16:04:15").encode(), "bad_time"),
    (WATCH.replace("movie", "mo\x85vie"), "control_chars"),
    ("", "malformed"),
    (T, "malformed"),
    (f"{T},1", "malformed"),
    (WATCH[:-4], "malformed"),
    (WATCH + ",extra", "malformed"),
    (f"{T},1,GET /data/m/movie", "malformed"),
    (f"{T},1,GET /rate/movie", "malformed"),
    (RECO[:-3], "malformed"),
    (RECO + ", extra", "malformed"),
    (RECO + ", 3 ms", "bad_result"),
    (RECO.replace(", status 200", ""), "malformed"),
    (f"{T},1,POST /data/m/movie/3.mpg", "unknown_kind"),
    (f"{T},1,get /rate/movie=3", "unknown_kind"),
    (WATCH.replace(T, "1,2026-11-25T16:04:15"), "bad_time"),
    (WATCH.replace(T, "2026-13-25T16:04:15"), "bad_time"),
    (WATCH.replace(T, "2026-02-30T16:04:15"), "bad_time"),
    (WATCH.replace(T, "2026-11-25 16:04:15"), "bad_time"),
    (WATCH.replace(T, "2026-11-25T16"), "bad_time"),
    (WATCH.replace(T, T + "z"), "bad_time"),
    (WATCH.replace(T, T + " Z"), "bad_time"),
    (WATCH.replace(T, T + "."), "bad_time"),
    (WATCH.replace(T, "2026-11-25T16:04.5"), "bad_time"),
    (WATCH.replace(T, T + "+25:00"), "bad_time"),
    (WATCH.replace(T, T + "+05:3"), "bad_time"),
    (WATCH.replace(T, T + "+5"), "bad_time"),
    (WATCH.replace(T, T + "UTC"), "bad_time"),
    (WATCH.replace(T, "0001-01-01T00:00:00+01:00"), "bad_time"),
    ((WATCH.replace(T, "0001-01-01T00:00:00+01:00")).encode(), "bad_time"),
    (WATCH.replace(T, "20261125T160415"), "bad_time"),
    (WATCH.replace(T, "2026-W48-3T16:04:15"), "bad_time"),
    (WATCH.replace(",1,", ",-1,"), "bad_user"),
    (WATCH.replace(",1,", ",1000000001,"), "bad_user"),
    (WATCH.replace(",1,", ",abc,"), "bad_user"),
    (WATCH.replace(",1,", ",1.0,"), "bad_user"),
    (WATCH.replace(",1,", ",,"), "bad_user"),
    (WATCH.replace("movie+2000", "Movie+2000"), "bad_movie"),
    (WATCH.replace("movie+2000", "movie 2000"), "bad_movie"),
    (WATCH.replace("movie+2000", "+movie"), "bad_movie"),
    (WATCH.replace("movie+2000", "m" * 251), "bad_movie"),
    (WATCH.replace("movie+2000", "café"), "bad_movie"),
    (WATCH.replace("movie+2000", ""), "bad_movie"),
    (WATCH.replace("movie+2000", "a/b"), "bad_movie"),
    (RATE.replace("movie+2000", "a=b"), "bad_rating"),
    (WATCH.replace("/3.mpg", "/10001.mpg"), "bad_minute"),
    (WATCH.replace("/3.mpg", "/-3.mpg"), "bad_minute"),
    (WATCH.replace("/3.mpg", "/x.mpg"), "bad_minute"),
    (WATCH.replace("/3.mpg", "/.mpg"), "bad_minute"),
    (RATE.replace("=3", "=0"), "bad_rating"),
    (RATE.replace("=3", "=6"), "bad_rating"),
    (RATE.replace("=3", "=3.0"), "bad_rating"),
    (RATE.replace("=3", "="), "bad_rating"),
    (RATE.replace("=3", "=four"), "bad_rating"),
    (RATE.replace("movie+2000", "Movie"), "bad_movie"),
    (RECO.replace("host:8082", "host 8082"), "bad_server"),
    (RECO.replace("host:8082", ""), "bad_server"),
    (RECO.replace("status 200", "status ok"), "bad_status"),
    (RECO.replace("status 200", "status -1"), "bad_status"),
    (RECO.replace("status 200", "status 2000"), "bad_status"),
    (RECO.replace("result: a, b", "result: a, B"), "bad_result"),
    (RECO.replace("result: a, b", "result: a, , b"), "bad_result"),
    (RECO.replace("result: a, b", "result: " + ", ".join(["m"] * 101)), "bad_result"),
    (RECO.replace("12 ms", "twelve ms"), "bad_latency"),
    (RECO.replace("12 ms", "-12 ms"), "bad_latency"),
    (RECO.replace("12 ms", "1e3 ms"), "bad_latency"),
]


@pytest.mark.parametrize(("line", "reason"), REJECTIONS)
def test_rejects_with_reason(line: str | bytes, reason: str) -> None:
    result = parse(line)
    assert isinstance(result, Rejected), result
    assert result.reason == reason
    assert reason in REASONS


def test_every_reason_is_exercised() -> None:
    """The table above covers the whole reason vocabulary (so the metric labels are all tested)."""
    covered = {reason for _, reason in REJECTIONS}
    assert covered == set(REASONS)


def test_rejected_keeps_the_raw_text() -> None:
    line = WATCH.replace("/3.mpg", "/x.mpg")
    assert parse(line) == Rejected("bad_minute", line)
    assert parse(b"ab\xffcd") == Rejected("invalid_utf8", "ab\\xffcd")


def test_a_hundred_result_ids_are_accepted() -> None:
    line = RECO.replace("result: a, b", "result: " + ", ".join(f"m{i}" for i in range(100)))
    result = parse(line)
    assert isinstance(result, RecommendationEvent)
    assert len(result.movie_ids) == 100


# --- properties ---------------------------------------------------------------------------------------

slugs = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789"),
    st.text(alphabet=SLUG_ALPHABET, max_size=40),
)
times = st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31))
users = st.integers(0, 10**9)
latencies = st.builds(
    lambda whole, frac: float(f"{whole}.{frac:06d}"), st.integers(0, 999_999_999), st.integers(0, 999_999)
)
servers = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:[]/", min_size=1
)
events = st.one_of(
    st.builds(WatchEvent, times, users, slugs, st.integers(0, 10_000)),
    st.builds(RateEvent, times, users, slugs, st.integers(1, 5)),
    st.builds(
        RecommendationEvent,
        times,
        users,
        servers,
        st.integers(0, 999),
        st.lists(slugs, max_size=100).map(tuple),
        latencies,
    ),
)


@given(st.text(max_size=300))
def test_never_raises_on_text(text: str) -> None:
    result = parse(text)
    assert isinstance(result, WatchEvent | RateEvent | RecommendationEvent | Rejected)
    if isinstance(result, Rejected):
        assert result.reason in REASONS


@given(st.binary(max_size=300))
def test_never_raises_on_bytes(data: bytes) -> None:
    result = parse(data)
    assert isinstance(result, WatchEvent | RateEvent | RecommendationEvent | Rejected)


@given(events, st.sampled_from(["", "\n", "\r\n", "\r"]))
def test_events_round_trip_through_their_line(event: object, ending: str) -> None:
    line = event.to_line()  # type: ignore[attr-defined]
    assert parse(line + ending) == event
    assert parse((line + ending).encode()) == event


@given(st.text(alphabet="0123456789-T:.,/ =abcGETdatmrpgsulq", max_size=120))
def test_accepted_lines_reserialise_to_equivalent_lines(text: str) -> None:
    result = parse(text)
    if not isinstance(result, Rejected):
        assert parse(result.to_line()) == result


def _corrupt(line: str, how: int, cut: int, junk: bytes) -> bytes:
    """One certainly-invalid variant of a valid line."""
    data = line.encode()
    if how == 0:  # truncation: a strict prefix of a valid line is never valid
        return data[: cut % len(data)]
    if how == 1:  # swapped fields: the user id lands where the time belongs
        time_s, user_s, body = line.split(",", 2)
        return f"{user_s},{time_s},{body}".encode()
    position = cut % (len(data) + 1)  # junk bytes: a control character or a byte that is never UTF-8
    return data[:position] + junk + data[position:]


@settings(max_examples=60)
@given(
    st.lists(
        st.tuples(
            events,
            st.integers(0, 4),
            st.integers(0, 10_000),
            st.sampled_from([b"\x00", b"\x1b", b"\xff", b"\xc0"]),
        ),
        max_size=40,
    )
)
def test_corrupted_stream_yields_exactly_the_good_events(plan: list) -> None:
    """Truncations, swapped fields, junk bytes and duplicates mixed in: only the good events come out."""
    stream: list[bytes] = []
    expected: list[object] = []
    for event, how, cut, junk in plan:
        line = event.to_line()
        stream.append(line.encode() + b"\n")
        expected.append(event)
        if how <= 2:
            stream.append(_corrupt(line, how, cut, junk) + b"\n")
        else:  # duplicates are good events too: the upserts make them harmless
            stream.append(line.encode() + b"\n")
            expected.append(event)
    parsed = [parse(raw) for raw in stream]
    assert [p for p in parsed if not isinstance(p, Rejected)] == expected


def _stamp(ts: datetime, digits: int, zone: timedelta | None) -> str:
    """`ts` (naive UTC) written with `digits` fraction digits (0: none, beyond 6: padded) in `zone`."""
    if zone is None:
        local, suffix = ts, ""
    else:
        local = (ts.replace(tzinfo=UTC) + zone).replace(tzinfo=None)
        minutes = int(zone.total_seconds()) // 60
        sign, hours, rest = "+" if minutes > 0 else "-", abs(minutes) // 60, abs(minutes) % 60
        suffix = "Z" if minutes == 0 else f"{sign}{hours:02d}:{rest:02d}"
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{local.microsecond:06d}{'7' * max(0, digits - 6)}"[:digits]
    return text + suffix


def _truncated(ts: datetime, digits: int) -> datetime:
    keep = min(digits, 6)
    return ts.replace(microsecond=ts.microsecond // 10 ** (6 - keep) * 10 ** (6 - keep))


zones = st.one_of(st.none(), st.integers(-14 * 4, 14 * 4).map(lambda q: timedelta(minutes=15 * q)))
titles = st.text(min_size=0, max_size=60)
sim_times = st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(9998, 12, 30))


@settings(max_examples=300)
@given(sim_times, st.integers(0, 12), zones, users, titles, st.one_of(st.none(), st.integers(1900, 2030)),
       st.integers(0, 10_000), st.integers(1, 5), st.sampled_from(["", "\n", "\r\n", "\r"]))
def test_any_simulator_line_round_trips(ts: datetime, digits: int, zone: timedelta | None, user: int, title: str,
                                        year: int | None, minute: int, rating: int, ending: str) -> None:
    """Any line the simulator's formats write (its slugs of any title, any time precision and zone, any line
    ending) parses to the event it was written from, with the time truncated to microseconds in UTC."""
    from core.ids import slugify
    from evaluation.simulator.formats import rate_line, recommendation_line, watch_line

    movie = slugify(title, year)
    expected_ts = _truncated(ts, digits)
    stamp = _stamp(ts, digits, zone)
    lines = {
        WatchEvent(expected_ts, user, movie, minute): watch_line(ts, user, movie, minute),
        RateEvent(expected_ts, user, movie, rating): rate_line(ts, user, movie, rating),
        RecommendationEvent(expected_ts, user, "host:8082", 200, (movie,), 12.5):
            recommendation_line(ts, user, "host:8082", 200, [movie], 12.5),
    }
    for event, line in lines.items():
        line = stamp + line[line.index(","):] + ending  # the simulator's body behind any time form
        assert parse(line) == event
        assert parse(line.encode()) == event


watchish = st.builds(
    lambda t, u, m, n, end: f"{t},{u},GET /data/m/{m}/{n}.mpg{end}".encode(),
    st.sampled_from(["2026-11-25T16:04", "2026-11-25T16:04:15", "2026-11-25T16:04:15.5", "2026-02-30T00:00", "x",
                     "2026-11-25T16:04:15.122692921Z", "2026-11-25T16:04+05:30", "0001-01-01T00:00+01:00",
                     "2026-11-25T16:04:15+25:00", "2026-11-25T16:04:15.z"]),
    st.sampled_from(["0", "1000000000", "1000000001", "0042", "-1"]),
    st.one_of(slugs, st.text(alphabet=SLUG_ALPHABET + "A/ ,=é", min_size=0, max_size=260)),
    st.sampled_from(["0", "10000", "10001", "99999", ""]),
    st.sampled_from(["", "\n", "\r\n", "\r", "\n\n", " "]),
)


@settings(max_examples=400)
@given(st.one_of(watchish, events.map(lambda e: e.to_line().encode())))
def test_fast_path_agrees_with_the_general_parser(line: bytes) -> None:
    """The precompiled watch-line fast path never accepts what the general parser rejects, nor differs."""
    from data_parsing.parser import _parse

    assert parse(line) == _parse(line)
