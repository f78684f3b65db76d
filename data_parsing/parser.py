"""Pure parser for the simulator's log lines: `parse(line) -> Event | Rejected`, never an exception.

The three line kinds (one event a line, fields separated by the first two commas):

    <time>,<userid>,GET /data/m/<movieid>/<minute>.mpg
    <time>,<userid>,GET /rate/<movieid>=<rating>
    <time>,<userid>,recommendation request <server>, status <code>, result: <id, id, ...>, <N> ms

Validation (anything else is `Rejected(reason, raw)`):

- time: ISO-8601 `YYYY-MM-DDTHH:MM[:SS[.f+]][Z|±HH[[:]MM]]`, a real calendar date; any number of fraction
  digits (none, milli, micro, nano: truncated to microseconds); a time with `Z` or an offset is converted
  to UTC, a time without one is taken as UTC already; events always carry naive UTC times;
- user id: a decimal integer 0..10^9 (digits only, no sign);
- movie id: a slug (see `SLUG_ALPHABET`), 1..250 characters, starting with a letter or a digit;
- minute: an integer 0..10,000; rating: an integer 1..5; status: an integer 0..999;
- result: 0..100 slugs separated by ", "; latency: a number >= 0 (up to 9 integer and 6 fraction digits);
- server: 1..255 characters of host names and ports (letters, digits, `. - _ : [ ] /`);
- the line: at most 4 KB (one trailing "\\n", "\\r\\n" or "\\r" is dropped first), valid UTF-8, no control
  chars.

Movie-id slug alphabet: lower-case ASCII letters, digits and the punctuation real titles carry in the
simulator's slugs, `+ - . _ ' : & ! ? ( )`. Never a comma (it separates fields and result ids), a slash
(it separates the URL path), '=' (it separates the rating), whitespace, upper case or non-ASCII letters.

Rejection reasons form the fixed vocabulary `REASONS`; they label the `parser_rejected_total` metric.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, final

MAX_LINE_BYTES = 4096
MAX_SLUG_LEN = 250
MAX_USER_ID = 10**9
MAX_MINUTE = 10_000
MAX_RESULT_IDS = 100
SLUG_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789+-._':&!?()"

REASONS = (
    "too_long",
    "invalid_utf8",
    "control_chars",
    "malformed",
    "unknown_kind",
    "bad_time",
    "bad_user",
    "bad_movie",
    "bad_minute",
    "bad_rating",
    "bad_server",
    "bad_status",
    "bad_result",
    "bad_latency",
)

_LOCAL_TIME_PATTERN = r"\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d+)?)?"
_ZONE_PATTERN = r"Z|[+-]\d\d(?::?\d\d)?"
_TIME_RE = re.compile(f"{_LOCAL_TIME_PATTERN}(?:{_ZONE_PATTERN})?")
_USER_RE = re.compile(r"\d{1,10}")
_SLUG_RE = re.compile(rf"[a-z0-9][a-z0-9+\-._':&!?()]{{0,{MAX_SLUG_LEN - 1}}}")
_MINUTE_RE = re.compile(r"\d{1,5}")
_STATUS_RE = re.compile(r"\d{1,3}")
_LATENCY_RE = re.compile(r"\d{1,9}(?:\.\d{1,6})?")
_SERVER_RE = re.compile(r"[A-Za-z0-9.\-_:\[\]/]{1,255}")
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_RECOMMENDATION_RE = re.compile(
    r"(?P<server>[^,]*), status (?P<status>[^,]*), result: (?P<result>.*), (?P<latency>[^,]*) ms"
)

# The fast path: one match for the commonest line, a well-formed watch line, as bytes (ASCII only, so it is
# valid UTF-8 without control characters, and far below 4 KB). Anything it does not match takes the general
# path, which alone decides rejections; both give the same event for every line the fast path matches.
_FAST_WATCH_RE = re.compile(
    rb"(%s)(%s)?,(\d{1,10}),GET /data/m/"
    rb"([a-z0-9][a-z0-9+\-._':&!?()]{0,%d})/(\d{1,5})\.mpg(?:\r\n|\n|\r)?"
    % (_LOCAL_TIME_PATTERN.encode(), _ZONE_PATTERN.encode(), MAX_SLUG_LEN - 1)
)
fromisoformat = datetime.fromisoformat
_WATCH_PREFIX = "GET /data/m/"
_RATE_PREFIX = "GET /rate/"
_RECOMMENDATION_PREFIX = "recommendation request "


def _format_time(ts: datetime) -> str:
    return ts.isoformat()


def to_time(text: str) -> datetime:
    """A time that matched `_TIME_RE` as a naive UTC datetime (fraction truncated to microseconds).

    ValueError when it is not a calendar date or the offset is out of range. Python's `fromisoformat`
    truncates any number of fraction digits; the regex, not it, decides which forms are accepted (it
    alone would also take week dates and compact forms)."""
    ts = datetime.fromisoformat(text)
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return ts


@final
@dataclass(frozen=True, slots=True)
class WatchEvent:
    """A user watched one minute of a movie."""

    ts: datetime
    user_id: int
    movie_id: str
    minute: int
    kind: ClassVar[str] = "watch"

    def to_line(self) -> str:
        """The log line this event parses from (canonical form)."""
        return f"{_format_time(self.ts)},{self.user_id},{_WATCH_PREFIX}{self.movie_id}/{self.minute}.mpg"


@final
@dataclass(frozen=True, slots=True)
class RateEvent:
    """A user rated a movie 1..5."""

    ts: datetime
    user_id: int
    movie_id: str
    rating: int
    kind: ClassVar[str] = "rate"

    def to_line(self) -> str:
        """The log line this event parses from (canonical form)."""
        return f"{_format_time(self.ts)},{self.user_id},{_RATE_PREFIX}{self.movie_id}={self.rating}"


@final
@dataclass(frozen=True, slots=True)
class RecommendationEvent:
    """A recommendation request the simulator made to a server, with the answer it got."""

    ts: datetime
    user_id: int
    server: str
    status: int
    movie_ids: tuple[str, ...]
    latency_ms: float
    kind: ClassVar[str] = "recommendation"

    def to_line(self) -> str:
        """The log line this event parses from (canonical form)."""
        latency = f"{self.latency_ms:.6f}".rstrip("0").rstrip(".")
        return (
            f"{_format_time(self.ts)},{self.user_id},{_RECOMMENDATION_PREFIX}{self.server}, "
            f"status {self.status}, result: {', '.join(self.movie_ids)}, {latency} ms"
        )


Event = WatchEvent | RateEvent | RecommendationEvent


@final
@dataclass(frozen=True, slots=True)
class Rejected:
    """A line that is not a valid event: `reason` is one of `REASONS`, `raw` the line as text."""

    reason: str
    raw: str
    kind: ClassVar[str] = "rejected"


def _strip_newline(line: str) -> str:
    if line.endswith("\n"):
        line = line[:-2] if line.endswith("\r\n") else line[:-1]
    elif line.endswith("\r"):
        line = line[:-1]
    return line


def _decode(line: bytes) -> str | Rejected:
    if line.endswith(b"\n"):
        line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
    elif line.endswith(b"\r"):
        line = line[:-1]
    if len(line) > MAX_LINE_BYTES:
        return Rejected("too_long", line[:MAX_LINE_BYTES].decode("utf-8", "backslashreplace"))
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return Rejected("invalid_utf8", line.decode("utf-8", "backslashreplace"))


def parse(line: str | bytes) -> Event | Rejected:
    """Parse one log line into an event, or say in one reason word why it is not one. Never raises."""
    try:
        if type(line) is bytes:
            match = _FAST_WATCH_RE.fullmatch(line)
            if match is not None:
                time_b, zone_b, user_b, movie_b, minute_b = match.groups()
                user_id, minute = int(user_b), int(minute_b)
                if user_id <= MAX_USER_ID and minute <= MAX_MINUTE:
                    try:  # a time without a zone needs no conversion
                        ts = fromisoformat(time_b.decode()) if zone_b is None else to_time((time_b + zone_b).decode())
                    except (ValueError, OverflowError):  # not a calendar date: the general path names it
                        return _parse(line)
                    return WatchEvent(ts, user_id, movie_b.decode(), minute)
        return _parse(line)
    except Exception:  # a defect here must cost one line, never the stream
        raw = line.decode("utf-8", "backslashreplace") if isinstance(line, bytes | bytearray) else str(line)
        return Rejected("malformed", raw[:MAX_LINE_BYTES])


def _parse(line: str | bytes) -> Event | Rejected:
    if isinstance(line, bytes | bytearray):
        text = _decode(bytes(line))
        if isinstance(text, Rejected):
            return text
    else:
        text = _strip_newline(line)
        if len(text) > MAX_LINE_BYTES:
            return Rejected("too_long", text[:MAX_LINE_BYTES])
        if not text.isascii():
            try:
                size = len(text.encode("utf-8"))
            except UnicodeEncodeError:  # lone surrogates: not representable as UTF-8
                return Rejected("invalid_utf8", text.encode("utf-8", "backslashreplace").decode())
            if size > MAX_LINE_BYTES:
                return Rejected("too_long", text)
    if _CONTROL_RE.search(text):
        return Rejected("control_chars", text)
    parts = text.split(",", 2)
    if len(parts) != 3:
        return Rejected("malformed", text)
    time_s, user_s, body = parts
    if not _TIME_RE.fullmatch(time_s):
        return Rejected("bad_time", text)
    try:
        ts = to_time(time_s)
    except (ValueError, OverflowError):
        return Rejected("bad_time", text)
    if not _USER_RE.fullmatch(user_s) or int(user_s) > MAX_USER_ID:
        return Rejected("bad_user", text)
    user_id = int(user_s)
    if body.startswith(_WATCH_PREFIX):
        return _watch(text, ts, user_id, body[len(_WATCH_PREFIX) :])
    if body.startswith(_RATE_PREFIX):
        return _rate(text, ts, user_id, body[len(_RATE_PREFIX) :])
    if body.startswith(_RECOMMENDATION_PREFIX):
        return _recommendation(text, ts, user_id, body[len(_RECOMMENDATION_PREFIX) :])
    return Rejected("unknown_kind", text)


def _watch(text: str, ts: datetime, user_id: int, rest: str) -> WatchEvent | Rejected:
    movie, slash, tail = rest.rpartition("/")
    if not slash or not tail.endswith(".mpg"):
        return Rejected("malformed", text)
    if not _SLUG_RE.fullmatch(movie):
        return Rejected("bad_movie", text)
    minute_s = tail[:-4]
    if not _MINUTE_RE.fullmatch(minute_s) or int(minute_s) > MAX_MINUTE:
        return Rejected("bad_minute", text)
    return WatchEvent(ts, user_id, movie, int(minute_s))


def _rate(text: str, ts: datetime, user_id: int, rest: str) -> RateEvent | Rejected:
    movie, equals, rating_s = rest.partition("=")
    if not equals:
        return Rejected("malformed", text)
    if not _SLUG_RE.fullmatch(movie):
        return Rejected("bad_movie", text)
    if len(rating_s) != 1 or rating_s not in "12345":
        return Rejected("bad_rating", text)
    return RateEvent(ts, user_id, movie, int(rating_s))


def _recommendation(text: str, ts: datetime, user_id: int, rest: str) -> RecommendationEvent | Rejected:
    match = _RECOMMENDATION_RE.fullmatch(rest)
    if match is None:
        return Rejected("malformed", text)
    server, status_s, result, latency_s = match.group("server", "status", "result", "latency")
    if not _SERVER_RE.fullmatch(server):
        return Rejected("bad_server", text)
    if not _STATUS_RE.fullmatch(status_s):
        return Rejected("bad_status", text)
    if not _LATENCY_RE.fullmatch(latency_s):
        return Rejected("bad_latency", text)
    ids = tuple(item.strip(" ") for item in result.split(",")) if result.strip(" ") else ()
    if len(ids) > MAX_RESULT_IDS or not all(_SLUG_RE.fullmatch(item) for item in ids):
        return Rejected("bad_result", text)
    return RecommendationEvent(ts, user_id, server, int(status_s), ids, float(latency_s))
